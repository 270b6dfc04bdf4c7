"""Removal metrics: comprehensiveness, sufficiency, AOPC, flip rate, deletion/insertion curves.

All of them are "remove (or keep) the top-k units and rescore": each returns unit masks
(True = unit kept) and the evaluator scores every mask of every metric in one batch with the
same masking operators the explainers use. ``p`` is the probability of the explained class.

* comprehensiveness = p(x) - p(x without the top-k units)  (higher is better)
* sufficiency       = p(x) - p(only the top-k units)       (lower is better)
* aopc_*            = the mean of the above over the bins (default 1, 5, 10, 20, 50 %)

References: DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate Rationalized NLP Models";
Samek et al. 2017 (AOPC); Petsiuk et al. 2018 (deletion/insertion); Attanasio et al. 2023
(ferret).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film", "a dull mess"], ["leave_one_out"])
>>> df = fs.evaluate(exps, model, metrics=["comprehensiveness", "sufficiency"], random=False)
>>> sorted(df["metric"].unique())
['comprehensiveness', 'sufficiency']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import InputError
from ..registry import metrics
from .base import EvalItem, Metric, n_top, top_mask

ERASER_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)


@dataclass(frozen=True, kw_only=True)
class _Removal(Metric):
    family = "faithfulness"
    needs = frozenset({"model"})
    bounds = (-1.0, 1.0)
    reference = "DeYoung et al. 2020 (ERASER)"

    def fractions(self) -> tuple[float, ...]:
        raise NotImplementedError

    keep_top = False  # False: remove the top-k units; True: keep only them

    def masks(self, item: EvalItem) -> np.ndarray:
        order = self.ranking(item)
        rows = [top_mask(item, order, n_top(f, item.n_units)) for f in self.fractions()]
        m = np.array(rows, dtype=bool).reshape(len(rows), item.n_units)
        return m if self.keep_top else ~m

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        drops = full[item.target] - probs[:, item.target]
        ks = [n_top(f, item.n_units) for f in self.fractions()]
        return float(drops.mean()), {"k": ks, "values": drops.tolist()}


@metrics.register("comprehensiveness")
@dataclass(frozen=True, kw_only=True)
class Comprehensiveness(_Removal):
    """p(x) - p(x without its top ``fraction`` units); higher = more faithful."""

    name = "comprehensiveness"
    fraction: float = 0.2

    def fractions(self) -> tuple[float, ...]:
        return (self.fraction,)


@metrics.register("sufficiency")
@dataclass(frozen=True, kw_only=True)
class Sufficiency(_Removal):
    """p(x) - p(only its top ``fraction`` units); lower = more faithful."""

    name = "sufficiency"
    higher_is_better = False
    keep_top = True
    fraction: float = 0.2

    def fractions(self) -> tuple[float, ...]:
        return (self.fraction,)


@metrics.register("aopc_comprehensiveness")
@dataclass(frozen=True, kw_only=True)
class AopcComprehensiveness(_Removal):
    """Comprehensiveness averaged over ``bins`` (ERASER: 1, 5, 10, 20, 50 %)."""

    name = "aopc_comprehensiveness"
    bins: tuple[float, ...] = ERASER_BINS

    def fractions(self) -> tuple[float, ...]:
        return tuple(self.bins)

    def validate(self) -> None:
        super().validate()
        if not self.bins or any(not 0 < b <= 1 for b in self.bins):
            raise InputError(f"{self.name}: bins must be fractions in (0, 1]")


@metrics.register("aopc_sufficiency")
@dataclass(frozen=True, kw_only=True)
class AopcSufficiency(AopcComprehensiveness):
    """Sufficiency averaged over ``bins`` (ERASER: 1, 5, 10, 20, 50 %)."""

    name = "aopc_sufficiency"
    higher_is_better = False
    keep_top = True


@metrics.register("flip_rate")
@dataclass(frozen=True, kw_only=True)
class FlipRate(_Removal):
    """1 if the predicted label changes once the top ``fraction`` units are removed, else 0;
    its mean over examples is the flip rate. ``rationale=True`` removes the human rationale
    (or planted ground truth) instead of the explainer's top units."""

    name = "flip_rate"
    bounds = (0.0, 1.0)
    reference = "Fayyaz et al. 2024; Chen et al. 2023"
    fraction: float = 0.2
    rationale: bool = False

    def fractions(self) -> tuple[float, ...]:
        return (self.fraction,)

    def masks(self, item: EvalItem) -> np.ndarray:
        if not self.rationale:
            return super().masks(item)
        if item.reference is None:
            raise InputError("flip_rate(rationale=True) needs examples with a rationale")
        return ~np.asarray(item.reference, dtype=bool)[None, :]

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        before, after = int(np.argmax(full)), int(np.argmax(probs[0]))
        k = (int(np.sum(item.reference)) if self.rationale and item.reference is not None
             else n_top(self.fraction, item.n_units))
        return float(before != after), {"before": before, "after": after, "k": k}


@dataclass(frozen=True, kw_only=True)
class _Curve(_Removal):
    steps: int = 10
    max_fraction: float = 1.0

    def fractions(self) -> tuple[float, ...]:
        return tuple(self.max_fraction * (i + 1) / self.steps for i in range(self.steps))

    def validate(self) -> None:
        super().validate()
        if self.steps < 1 or not 0 < self.max_fraction <= 1:
            raise InputError(f"{self.name}: steps >= 1 and 0 < max_fraction <= 1")

    def curve(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([[0.0], [n_top(f, item.n_units) / max(item.n_units, 1)
                                    for f in self.fractions()]])
        y = np.concatenate([[self.start(item, full)], probs[:, item.target]])
        return x, y

    def start(self, item: EvalItem, full: np.ndarray) -> float:
        return float(full[item.target])

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        x, y = self.curve(item, full, probs)
        span = x[-1] - x[0]
        area = float(np.trapezoid(y, x) / span) if span > 0 else float(y[0])
        return area, {"x": x.tolist(), "y": y.tolist()}


@metrics.register("deletion_curve")
@dataclass(frozen=True, kw_only=True)
class DeletionCurve(_Curve):
    """Probability as the top units are removed, up to ``max_fraction``; the value is the
    normalised area under it (AUPC). Lower = the explanation finds what matters sooner."""

    name = "deletion_curve"
    higher_is_better = False
    bounds = (0.0, 1.0)
    reference = "Petsiuk et al. 2018 (RISE); Samek et al. 2017"


@metrics.register("insertion_curve")
@dataclass(frozen=True, kw_only=True)
class InsertionCurve(_Curve):
    """Probability as the top units are inserted into an empty input; normalised area.
    Higher = better. The curve starts at the fully masked input."""

    name = "insertion_curve"
    bounds = (0.0, 1.0)
    keep_top = True
    reference = "Petsiuk et al. 2018 (RISE)"

    def masks(self, item: EvalItem) -> np.ndarray:
        empty = np.zeros((1, item.n_units), dtype=bool)
        return np.vstack([empty, super().masks(item)])

    def curve(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([[0.0], [n_top(f, item.n_units) / max(item.n_units, 1)
                                    for f in self.fractions()]])
        return x, probs[:, item.target]


@metrics.register("perturbation_curve")
@dataclass(frozen=True, kw_only=True)
class PerturbationCurve(_Curve):
    """Drop of the explained quantity as the top units are removed, up to ``max_fraction``
    (default 50 %); the value is the mean drop over the steps (area under the drop curve, as
    MExGen's perturbation curves). Higher = the explanation finds what matters sooner. With a
    generative model the quantity is the scalarizer (e.g. the output's log-probability)."""

    name = "perturbation_curve"  # bounds (-1, 1) hold for probabilities, not log-probabilities
    max_fraction: float = 0.5
    reference = "Monteiro Paes et al. 2025 (MExGen); Samek et al. 2017"

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        x, y = self.curve(item, full, probs)
        drop = y[0] - y[1:]
        return float(drop.mean()), {"x": x.tolist(), "y": y.tolist()}
