"""Stability of explanations across training seeds, separated from the explainer's own randomness.

Models fine-tuned from the same checkpoint with different seeds reach similar accuracy but can
explain the same input differently, so one explanation of one model is a sample from a
distribution (Bogaert et al. 2024, "Explanation sensitivity to the randomness of large language
models"). Given the explanations of every seed (``{seed: [Explanation, ...]}``) this module
measures:

* agreement between every pair of runs on every example: Spearman's rho, Kendall's tau-b and the
  Jaccard index of the top-k units (:func:`pairwise_agreement`), summarised as distributions
  (mean, spread, quantiles) per explainer (:func:`summarize_agreement`);
* the same agreement between *repeats of a stochastic explainer on one model* (sampling seeds
  only): the explainer's own noise floor (``source="within_model"``) against which the
  between-seed agreement (``source="between_seeds"``) is read;
* per-unit distributions across seeds (mean, standard deviation, quantiles, also of L1-normalised
  scores) for uncertainty bands (:func:`unit_distribution`);
* whether explanation agreement goes with prediction agreement: each pair row records whether the
  two runs predict the same label and whether all seeds agree on the example.

Explanations are compared on the *same target* in every run: ``targets`` maps each example
id to the class whose row is compared (a study compares the gold label by default, see
:class:`faithscope.studies.analyses.SeedStability`); each pair row names it (``target``). A run
whose explanation has no row for that class is refused rather than compared on another class.
Without ``targets`` the first row of each explanation is compared and the ``target`` column
says ``"first row"`` (runs that predict different classes then compare different classes:
``same_target`` is False on those pairs).

Example
-------
>>> import numpy as np
>>> from faithscope.metrics.stability import pairwise_agreement
>>> from faithscope.explanation import Explanation
>>> from faithscope.units import Unit
>>> units = (Unit("a", 0, 1, tokens=(1,)), Unit("fine", 2, 6, tokens=(2,)),
...          Unit("film", 7, 11, tokens=(3,)))
>>> def exp(scores, seed):
...     return Explanation(example_id="e0", text="a fine film", pair=None, units=units,
...                        scores=np.array([scores], dtype=np.float32), targets=(1,),
...                        target_labels=("pos",), probs=np.array([.2, .8], dtype=np.float32),
...                        explainer="lime", params={}, seed=seed)
>>> df = pairwise_agreement({0: [exp([0.1, 0.9, 0.3], 0)], 1: [exp([0.0, 0.8, 0.5], 1)]}, k=1)
>>> df[["explainer", "run_a", "run_b", "spearman", "kendall", "jaccard"]].values.tolist()
[['lime', 0, 1, 1.0, 1.0, 1.0]]
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..explanation import Explanation
from .analysis import similarity

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

MEASURES = ("spearman", "kendall", "jaccard")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def agreement(a: np.ndarray, b: np.ndarray, k: int, by: str = "value"
              ) -> tuple[float, float, float]:
    """Spearman rho, Kendall tau-b and top-k Jaccard of two score vectors over the same units
    (signed scores with ``by="value"``, magnitudes with ``"abs"``); rank correlations are NaN
    when either vector is constant."""
    return (similarity(a, b, "spearman", by=by), similarity(a, b, "kendall", by=by),
            similarity(a, b, "jaccard", k=k, by=by))


def _index(runs: Mapping[Any, Sequence[Explanation]]
           ) -> dict[tuple[str, str], dict[Any, Explanation]]:
    out: dict[tuple[str, str], dict[Any, Explanation]] = {}
    for run, exps in runs.items():
        for e in exps:
            out.setdefault((e.explainer, e.example_id), {})[run] = e
    return out


def _row_of(e: Explanation, target: int | None, run: Any) -> tuple[np.ndarray, int]:
    """The score row compared for ``e`` and the class it explains."""
    if target is None:
        return e.scores[0], int(e.targets[0])
    if target not in e.targets:
        raise ValueError(f"{e.explainer} on {e.example_id}: run {run} has no explanation of "
                         f"class {target} (it explains {list(e.targets)}); explain that target "
                         "in every run")
    return e.row(target), int(target)


def pairwise_agreement(runs: Mapping[Any, Sequence[Explanation]], *, k: int = 5,
                       source: str = "between_seeds", by: str = "value",
                       targets: Mapping[str, int] | None = None) -> pd.DataFrame:
    """One row per (explainer, example, pair of runs) with the three agreement measures.

    ``runs`` maps a run id (a training seed, or a sampling seed for ``within_model``) to its
    explanations; examples are matched by ``example_id`` and explainer name. ``targets``
    (example id -> class) picks the row compared in every run (see the module docstring).
    """
    rows = []
    for (explainer, example_id), by_run in sorted(_index(runs).items(), key=lambda kv: kv[0]):
        ids = sorted(by_run, key=str)
        preds = {r: by_run[r].predicted for r in ids}
        unanimous = len(set(preds.values())) == 1
        want = None if targets is None else int(targets[example_id])
        for ra, rb in itertools.combinations(ids, 2):
            ea, eb = by_run[ra], by_run[rb]
            if len(ea.units) != len(eb.units):
                raise ValueError(f"{explainer} on {example_id}: runs {ra} and {rb} have different "
                                 "units; compare explanations of one granularity")
            (sa, ta), (sb, tb) = _row_of(ea, want, ra), _row_of(eb, want, rb)
            rho, tau, jac = agreement(sa, sb, k, by)
            rows.append({"explainer": explainer, "example_id": example_id, "source": source,
                         "run_a": ra, "run_b": rb, "spearman": rho, "kendall": tau,
                         "jaccard": jac, "k": min(k, len(ea.units)), "n_units": len(ea.units),
                         "target": "first row" if want is None else str(want),
                         "target_a": ta, "target_b": tb, "same_target": ta == tb,
                         "pred_a": preds[ra], "pred_b": preds[rb],
                         "same_prediction": preds[ra] == preds[rb], "unanimous": unanimous})
    return pd.DataFrame(rows, columns=["explainer", "example_id", "source", "run_a", "run_b",
                                       *MEASURES, "k", "n_units", "target", "target_a",
                                       "target_b", "same_target", "pred_a", "pred_b",
                                       "same_prediction", "unanimous"])


def summarize_agreement(pairs: pd.DataFrame, by: Sequence[str] = ("explainer", "source")
                        ) -> pd.DataFrame:
    """Distribution of each measure per group: n, mean, std and the quantiles 5-25-50-75-95 %."""
    out = []
    for key, g in pairs.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for measure in MEASURES:
            v = g[measure].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            row = dict(zip(by, key, strict=True))
            row.update({"measure": measure, "n": len(v),
                        "mean": float(v.mean()) if len(v) else float("nan"),
                        "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan")})
            qs = np.quantile(v, QUANTILES) if len(v) else [float("nan")] * len(QUANTILES)
            row.update({f"q{int(q * 100):02d}": float(x) for q, x in zip(QUANTILES, qs,
                                                                          strict=True)})
            out.append(row)
    return pd.DataFrame(out)


def unit_distribution(runs: Mapping[Any, Sequence[Explanation]],
                      targets: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Per (explainer, example, unit): each unit's score across runs, raw and L1-normalised.

    Columns: ``mean``, ``std``, ``min``, ``max``, ``q05``, ``q95`` of the raw scores,
    ``mean_l1``/``std_l1`` of scores divided by each explanation's L1 norm (comparable across
    runs whose outputs differ in scale), ``n_runs`` and ``top1_share`` (fraction of runs in which
    the unit has the highest score).
    """
    rows = []
    for (explainer, example_id), by_run in sorted(_index(runs).items(), key=lambda kv: kv[0]):
        exps = [by_run[r] for r in sorted(by_run, key=str)]
        want = None if targets is None else int(targets[example_id])
        s = np.stack([_row_of(e, want, r)[0].astype(np.float64)
                      for r, e in zip(sorted(by_run, key=str), exps, strict=True)])
        norm = np.abs(s).sum(1, keepdims=True)
        sl = np.divide(s, norm, out=np.zeros_like(s), where=norm > 0)
        top = np.bincount(s.argmax(1), minlength=s.shape[1]) / len(s)
        q05, q95 = np.quantile(s, [0.05, 0.95], axis=0)
        for u, unit in enumerate(exps[0].units):
            rows.append({"explainer": explainer, "example_id": example_id, "unit": u,
                         "text": unit.text, "n_runs": len(exps), "mean": s[:, u].mean(),
                         "std": s[:, u].std(ddof=1) if len(s) > 1 else 0.0,
                         "min": s[:, u].min(), "max": s[:, u].max(), "q05": q05[u],
                         "q95": q95[u], "mean_l1": sl[:, u].mean(),
                         "std_l1": sl[:, u].std(ddof=1) if len(s) > 1 else 0.0,
                         "top1_share": top[u]})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class StabilityResult:
    """Tables of :func:`seed_stability`; ``summary``/``by_prediction`` derive from ``pairs``."""

    pairs: pd.DataFrame
    units: pd.DataFrame
    accuracy: pd.DataFrame

    @property
    def summary(self) -> pd.DataFrame:
        return summarize_agreement(self.pairs, ("explainer", "source"))

    @property
    def by_prediction(self) -> pd.DataFrame:
        between = self.pairs[self.pairs["source"] == "between_seeds"]
        return summarize_agreement(between, ("explainer", "unanimous"))


def seed_stability(by_seed: Mapping[int, Sequence[Explanation]], *,
                   repeats: Mapping[Any, Sequence[Explanation]] | None = None, k: int = 5,
                   by: str = "value", accuracy: Mapping[int, float] | None = None,
                   targets: Mapping[str, int] | None = None) -> StabilityResult:
    """Between-seed agreement, within-model agreement of ``repeats`` (one model, several
    sampling seeds of stochastic explainers), per-unit distributions and accuracy per seed.
    ``targets`` (example id -> class) makes every comparison one of the same class's
    explanations (see the module docstring).

    >>> import faithscope as fs
    >>> from faithscope.models.tiny import tiny_classifier
    >>> runs = {s: fs.explain(tiny_classifier(seed=s), ["a good film", "a dull plot"],
    ...                       "leave_one_out", seed=s) for s in (0, 1, 2)}
    >>> res = seed_stability(runs, k=2)
    >>> len(res.pairs), sorted(res.summary["measure"].unique())
    (6, ['jaccard', 'kendall', 'spearman'])
    """
    pairs = [pairwise_agreement(by_seed, k=k, source="between_seeds", by=by, targets=targets)]
    if repeats:
        pairs.append(pairwise_agreement(repeats, k=k, source="within_model", by=by,
                                        targets=targets))
    acc = pd.DataFrame([{"seed": s, "accuracy": a} for s, a in sorted((accuracy or {}).items())],
                       columns=["seed", "accuracy"])
    return StabilityResult(pd.concat(pairs, ignore_index=True),
                           unit_distribution(by_seed, targets), acc)


def _compared(g: pd.DataFrame) -> str:
    if "target" not in g or g.empty:
        return "first row"
    names = set(g["target"].astype(str))
    if names == {"first row"}:
        return "first row (each run's own target)"
    if "target_source" in g:
        return str(g["target_source"].iloc[0])
    return "class " + ", ".join(sorted(names)) if len(names) <= 3 else "given classes"


def agreement_table(pairs: pd.DataFrame, measure: str = "spearman") -> pd.DataFrame:
    """One row per explainer: ``measure`` between seeds and within one model (mean, quartiles),
    and between seeds on examples where all seeds predict the same label vs not; ``compares``
    names the class whose explanations are compared (``gold label``, a class, or ``first row``
    of each run's own explanation)."""
    rows = []
    for explainer, g in pairs.groupby("explainer", sort=True):
        row: dict[str, Any] = {"explainer": explainer,
                               "compares": _compared(g)}
        parts = {"between": g[g["source"] == "between_seeds"],
                 "within": g[g["source"] == "within_model"]}
        parts["unanimous"] = parts["between"][parts["between"]["unanimous"].astype(bool)]
        parts["split"] = parts["between"][~parts["between"]["unanimous"].astype(bool)]
        for name, part in parts.items():
            v = part[measure].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            row[f"{name}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{name}_q25"], row[f"{name}_q75"] = (
                np.quantile(v, [0.25, 0.75]).tolist() if len(v) else [float("nan")] * 2)
            row[f"{name}_n"] = len(v)
        rows.append(row)
    return pd.DataFrame(rows)
