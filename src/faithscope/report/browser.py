"""Explanations as report data: the explainer agreement matrix and the example browser's payload.

Agreement is the mean Spearman rank correlation between two explainers' scores (of the explained
class) on the same example, model and seed; examples where either ranking is constant are
skipped. The browser payload stores each heatmap compactly: the largest magnitude, then every
unit's score as an integer per mille of it.

Example
-------
>>> import numpy as np
>>> from faithscope.explanation import Explanation
>>> from faithscope.units import Unit
>>> units = tuple(Unit(w, i, i + 1, 0, (i,)) for i, w in enumerate("abc"))
>>> def exp(name, s):
...     return Explanation(example_id="0", text="abc", pair=None, units=units,
...         scores=np.array([s], dtype=np.float32), targets=(1,), target_labels=("pos",),
...         probs=np.array([0.3, 0.7], dtype=np.float32), explainer=name, params={})
>>> agreement_matrix([exp("a", [1, 2, 3]), exp("b", [3, 2, 1])]).round(2).values.tolist()
[[1.0, -1.0], [-1.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import rankdata

from .._lazy import lazy_import
from ..data import rationale_mask
from ..explanation import Explanation
from .data import ReportData, explainer_order

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")


def agreement_matrix(explanations: Iterable[Explanation], explainers: Sequence[str] | None = None,
                     *, with_counts: bool = False) -> Any:
    """Explainer x explainer mean Spearman correlation over shared (model, seed, example,
    target) groups; with ``with_counts`` also the number of examples behind every cell."""
    groups: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    for e in explanations:
        if len(e.units) < 2:
            continue
        key = (e.model_id, e.seed, e.example_id, e.targets[0] if e.targets else None,
               tuple((u.part, u.start, u.end) for u in e.units))
        groups.setdefault(key, {})[e.explainer] = e.row().astype(np.float64)
    names = list(explainers) if explainers is not None else explainer_order(
        {n for g in groups.values() for n in g})
    idx = {n: i for i, n in enumerate(names)}
    k = len(names)
    total, count = np.zeros((k, k)), np.zeros((k, k), dtype=np.int64)
    for g in groups.values():
        present = [n for n in names if n in g]
        ranks = np.stack([rankdata(g[n]) for n in present])
        ranks = ranks - ranks.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(ranks, axis=1)
        ok = norm > 1e-12
        if ok.sum() == 0:
            continue
        z = ranks[ok] / norm[ok, None]
        corr = np.clip(z @ z.T, -1.0, 1.0)
        ids = [idx[n] for n, good in zip(present, ok, strict=True) if good]
        total[np.ix_(ids, ids)] += corr
        count[np.ix_(ids, ids)] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    frame = pd.DataFrame(mean, index=names, columns=names)
    if with_counts:
        return frame, pd.DataFrame(count, index=names, columns=names)
    return frame


def agreement(data: ReportData) -> dict[str, dict[str, pd.DataFrame]]:
    """Agreement matrices per dataset and model (seeds pooled)."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for d in data.datasets:
        for model in data.model_order():
            exps = [e for (ds, m, _), es in sorted(data.explanations.items())
                    if ds == d.name and m == model for e in es]
            if exps:
                names = [n for n in data.explainers if any(e.explainer == n for e in exps)]
                out.setdefault(d.name, {})[model] = agreement_matrix(exps, names)
    return out


def _quantize(row: np.ndarray) -> list[Any]:
    scale = float(np.max(np.abs(row))) if row.size else 0.0
    if not np.isfinite(scale) or scale == 0.0:
        return [0.0, [0] * int(row.size)]
    q = np.rint(np.nan_to_num(row / scale) * 1000).astype(int).tolist()
    return [float(f"{scale:.4g}"), q]


def _half_widths(e: Explanation, scale: float) -> list[int]:
    """1.96 standard errors of the first target's scores, on :func:`_quantize`'s scale."""
    assert e.errors is not None
    half = 1.96 * np.nan_to_num(e.errors[0].astype(np.float64), nan=0.0)
    return np.rint(half / scale * 1000).astype(int).tolist() if scale > 0 else [0] * len(half)


def browser_payload(data: ReportData) -> dict[str, Any]:
    """Everything the example browser needs, as plain JSON-able structures."""
    explainers = list(data.explainers)
    e_idx = {n: i for i, n in enumerate(explainers)}
    ds_idx = {d.name: i for i, d in enumerate(data.datasets)}
    models = data.model_order()
    m_idx = {m: i for i, m in enumerate(models)}
    examples: list[dict[str, Any]] = []
    ex_idx: dict[tuple[str, str], int] = {}
    gold: dict[tuple[str, str], int | None] = {}
    if not data.metrics.empty:
        first = data.metrics.drop_duplicates(["dataset", "example_id"])
        for ds, ex, y in zip(first["dataset"], first["example_id"], first["label"], strict=True):
            gold[(str(ds), str(ex))] = None if pd.isna(y) else int(y)

    def example(ds: str, e: Explanation) -> int:
        key = (ds, e.example_id)
        if key not in ex_idx:
            info = data.dataset(ds) if ds in ds_idx else None
            src = info.examples.get(e.example_id) if info else None
            y = src.label if src is not None else gold.get(key)
            ex_idx[key] = len(examples)
            examples.append({"d": ds_idx.get(ds, -1), "id": e.example_id, "text": e.text,
                             "pair": e.pair, "y": y,
                             "r": [list(s) for s in src.rationale] if src is not None
                             and src.rationale is not None else None})
        return ex_idx[key]

    runs = []  # one per dataset x model x seed; items (and so examples) in dataset order
    for (ds, model, seed), exps in sorted(data.explanations.items(),
                                          key=lambda kv: (ds_idx.get(kv[0][0], 99),
                                                          m_idx.get(kv[0][1], 99), kv[0])):
        order = {ex_id: i for i, ex_id in enumerate(data.dataset(ds).examples)} \
            if ds in ds_idx else {}
        by_ex: dict[str, list[Explanation]] = {}
        for e in exps:
            by_ex.setdefault(e.example_id, []).append(e)
        items = []
        for ex_id in sorted(by_ex, key=lambda x: (order.get(x, len(order)), x)):
            group = sorted(by_ex[ex_id], key=lambda e: e_idx.get(e.explainer, 99))
            head = group[0]
            x = example(ds, head)
            units = [(u.part, u.start, u.end) for u in head.units]
            src = data.dataset(ds).examples.get(ex_id) if ds in ds_idx else None
            ref = (np.flatnonzero(rationale_mask(head.units, src.rationale)).tolist()
                   if src is not None and src.rationale else [])
            heat: list[Any] = [None] * len(explainers)
            for e in group:
                entry = _quantize(e.row().astype(np.float64))
                entry.append(round(float(e.runtime_s), 4))
                own = [v for u in e.units for v in (u.part, u.start, u.end)]
                if [(u.part, u.start, u.end) for u in e.units] != units:
                    entry.append(own)
                if e.errors is not None and len(e.units):  # 95 % half-widths, same scale
                    if len(entry) == 3:
                        entry.append(None)
                    entry.append(_half_widths(e, float(entry[0])))
                heat[e_idx[e.explainer]] = entry
            items.append({"x": x, "u": [v for t in units for v in t], "ref": ref,
                          "p": head.predicted, "pp": round(float(head.probs.max()), 3),
                          "t": head.target_labels[0] if head.target_labels else
                          str(head.targets[0]), "e": heat})
        runs.append({"d": ds_idx.get(ds, -1), "m": m_idx.get(model, -1), "s": seed,
                     "items": items})
    return {
        "study": data.name, "explainers": explainers, "models": models,
        "datasets": [{"name": d.name, "labels": list(d.labels), "reference": d.reference,
                      "note": d.note} for d in data.datasets],
        "examples": examples, "runs": runs,
    }


__all__ = ["agreement", "agreement_matrix", "browser_payload"]
