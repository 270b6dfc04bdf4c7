"""Analyses: metrics that re-run the explainer (on a changed model or a changed input).

Sanity checks (layer randomization), input-robustness metrics (max / average sensitivity) and
attacks on explanations all need more than a stored explanation: they need the explainer itself,
run again through the model adapter. An :class:`Analysis` is a :class:`~faithscope.metrics.base.
Metric` whose ``needs`` contain ``"explainer"``. :func:`~faithscope.evaluate.evaluate` (and so
a study's metrics stage) groups explanations by explainer configuration, rebuilds the explainer
from ``Explanation.explainer`` and ``Explanation.params``, re-prepares the examples (same units,
targets and seed) and hands everything to :meth:`Analysis.analyse`, which returns one
``(value, detail)`` per explanation: ordinary tidy rows.

A per-step curve (e.g. similarity after randomizing each layer) travels in the row's detail as
``{"steps": [...], "values": [...]}``, which the report plots as a curve; :func:`curve_table`
turns such rows into one row per step with a bootstrap confidence interval over examples.

Reference: Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (similarity measures).

Example
-------
>>> import numpy as np
>>> from faithscope.metrics.analysis import similarity
>>> a, b = np.array([3.0, 1.0, 2.0, 0.5]), np.array([2.9, 0.4, 2.0, 0.2])
>>> similarity(a, b, "spearman"), similarity(a, b, "topk", k=2)
(1.0, 1.0)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..explainers.base import Explainer, Prepared
from ..explanation import Explanation, jsonable
from ..models.adapter import InputError, ModelAdapter
from .base import EvalItem, Metric

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

SIMILARITIES = ("spearman", "kendall", "topk", "jaccard")
Values = list[tuple[float, dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class Analysis(Metric):
    """A metric that runs the explainer again; see the module docstring."""

    needs = frozenset({"model", "explainer"})

    def analyse(self, adapter: ModelAdapter, explainer: Explainer,
                explanations: Sequence[Explanation], items: Sequence[Prepared]) -> Values:
        """One (value, detail) per explanation; ``items[i]`` re-prepares ``explanations[i]``."""
        raise NotImplementedError


def similarity(a: np.ndarray, b: np.ndarray, kind: str = "spearman", *, k: int = 1,
               by: str = "abs") -> float:
    """Similarity of two score vectors: Spearman or Kendall (tau-b) rank correlation, the
    share of the top-``k`` units they have in common (``topk``) or the Jaccard index of the two
    top-``k`` sets (``jaccard``). ``by="abs"`` compares magnitudes
    (Adebayo et al.'s default), ``"value"`` signed scores. NaN when undefined (fewer than two
    units, or a constant vector for the correlations)."""
    from scipy.stats import kendalltau, spearmanr

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if by == "abs":
        x, y = np.abs(x), np.abs(y)
    if x.shape != y.shape:
        raise InputError(f"cannot compare scores of shapes {x.shape} and {y.shape}")
    if kind in ("topk", "jaccard"):
        if len(x) == 0:
            return float("nan")
        k = max(1, min(int(k), len(x)))
        top_a = set(np.argsort(-x, kind="stable")[:k].tolist())
        top_b = set(np.argsort(-y, kind="stable")[:k].tolist())
        return len(top_a & top_b) / (k if kind == "topk" else len(top_a | top_b))
    if kind not in SIMILARITIES:
        raise InputError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = spearmanr(x, y)[0] if kind == "spearman" else kendalltau(x, y)[0]
    return float(r)


def prepared_for(adapter: ModelAdapter, explanations: Sequence[Explanation]) -> list[Prepared]:
    """Re-prepare the examples of explanations: same units, targets and seed."""
    from ..data.example import Example
    from ..explainers.prepare import prepare

    out: list[Prepared | None] = [None] * len(explanations)
    for gran in sorted({e.granularity for e in explanations}):
        idx = [i for i, e in enumerate(explanations) if e.granularity == gran]
        ps = prepare(adapter, [Example(id=explanations[i].example_id, text=explanations[i].text,
                                       pair=explanations[i].pair) for i in idx],
                     granularity=gran)
        for i, p in zip(idx, ps, strict=True):
            e = explanations[i]
            if p.units != e.units:
                raise InputError(f"example {e.example_id}: explanation units differ from this "
                                 "model's units (another tokenizer or granularity?)")
            out[i] = replace(p, targets=tuple(e.targets), seed=int(e.seed or 0))
    return [p for p in out if p is not None]


def rebuild(e: Explanation) -> Explainer:
    """The explainer that produced ``e``, from its name and stored hyper-parameters."""
    from ..explainers.prepare import make_explainer

    return make_explainer((e.explainer, dict(e.params)))


def run_analyses(adapter: ModelAdapter, items: Sequence[EvalItem],
                 analyses: Sequence[tuple[int, Analysis]]
                 ) -> dict[tuple[int, int], tuple[float, dict[str, Any]]]:
    """Every analysis on every explanation, grouped by explainer configuration."""
    groups: dict[tuple[str, str, str, str, int], list[int]] = {}
    for i, it in enumerate(items):
        e = it.explanation
        key = (e.explainer, json.dumps(jsonable(dict(e.params)), sort_keys=True),
               e.granularity, e.target_fn, int(e.seed or 0))
        groups.setdefault(key, []).append(i)
    out: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
    for idx in groups.values():
        exps = [items[i].explanation for i in idx]
        try:
            explainer = rebuild(exps[0])
        except InputError as err:
            names = ", ".join(m.name for _, m in analyses)
            raise InputError(f"{names} re-run the explainer of each explanation, and "
                             f"{exps[0].explainer!r} cannot be rebuilt: {err}") from None
        prepared = prepared_for(adapter, exps)
        for j, m in analyses:
            values = m.analyse(adapter, explainer, exps, prepared)
            for i, v in zip(idx, values, strict=True):
                out[(i, j)] = v
    return out


def nan_to_none(values: Sequence[float]) -> list[float | None]:
    """Floats for JSON details: NaN becomes null (strict JSON)."""
    return [None if v is None or not np.isfinite(v) else float(v) for v in values]


def curve_table(df: pd.DataFrame, *, by: Sequence[str] = ("explainer", "metric"),
                n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (group, step) of the curve rows in ``df`` (details with ``steps`` and
    ``values``): mean over examples with a percentile-bootstrap confidence interval."""
    from .stats import bootstrap_ci

    rows = []
    for key, g in df.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        details = [json.loads(d) if isinstance(d, str) else dict(d) for d in g["detail"]]
        details = [d for d in details if isinstance(d.get("steps"), list)
                   and isinstance(d.get("values"), list)]
        if not details:
            continue
        steps = details[0]["steps"]
        vals = np.array([[np.nan if v is None else v for v in d["values"]] for d in details
                         if d["steps"] == steps], dtype=np.float64)
        for s, step in enumerate(steps):
            mean, lo, hi = bootstrap_ci(vals[:, s], n_boot=n_boot, ci=ci, seed=seed)
            rows.append({**dict(zip(by, key, strict=True)), "mode": details[0].get("mode"),
                         "step_index": s, "step": step, "mean": mean, "ci_low": lo,
                         "ci_high": hi, "n": int(np.isfinite(vals[:, s]).sum())})
    return pd.DataFrame(rows, columns=[*by, "mode", "step_index", "step", "mean", "ci_low",
                                       "ci_high", "n"])
