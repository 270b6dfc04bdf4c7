"""Ground-truth metrics for data with planted features (e.g. ``sst2_planted``).

* gt_overlap: share of the ground-truth units L found among the top-|L| ranked units
  (1.0 = the explanation's top-|L| is exactly L; a random ranking scores about |L|/n).
* mean_rank: the smallest depth of the ranking that contains all of L, as a fraction of the
  number of units (|L|/n is perfect; lower is better).

Reference: Hooker et al. 2019 ("ROAR") style known-feature tests; Zhou et al. 2022, "Do
Feature Attribution Methods Correctly Attribute Features?" (planted-feature protocol); Arras
et al. 2017.

Example
-------
>>> import numpy as np
>>> from faithscope.metrics.ground_truth import overlap_at_truth
>>> overlap_at_truth(np.array([0.1, 0.9, 0.3]), np.array([False, True, False]))
(1.0, 0.3333333333333333)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import metrics
from .base import EvalItem, Metric


def overlap_at_truth(scores: np.ndarray, truth: np.ndarray, by: str = "value"
                     ) -> tuple[float, float]:
    """(gt_overlap, mean_rank) of ``scores`` against the boolean ``truth`` mask."""
    truth = np.asarray(truth, dtype=bool)
    n, m = len(scores), int(truth.sum())
    if m == 0 or n == 0:
        return float("nan"), float("nan")
    key = np.abs(scores) if by == "abs" else np.asarray(scores, dtype=np.float64)
    order = np.argsort(-key, kind="stable")
    found = truth[order]
    overlap = float(found[:m].sum() / m)
    depth = int(np.nonzero(found)[0].max()) + 1
    return overlap, depth / n


@dataclass(frozen=True, kw_only=True)
class _GroundTruth(Metric):
    family = "ground_truth"
    needs = frozenset({"rationale"})
    bounds = (0.0, 1.0)
    reference = "planted-feature protocol (Zhou et al. 2022)"

    def pair(self, item: EvalItem) -> tuple[float, float]:
        if item.reference is None:
            return float("nan"), float("nan")
        return overlap_at_truth(item.explanation.row(item.target), item.reference, self.by)


@metrics.register("gt_overlap")
@dataclass(frozen=True, kw_only=True)
class GtOverlap(_GroundTruth):
    """Share of the ground-truth units among the top-|L| units."""

    name = "gt_overlap"

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        v = self.pair(item)[0]
        return v, {"n_truth": int(np.sum(item.reference)) if item.reference is not None else 0}


@metrics.register("mean_rank")
@dataclass(frozen=True, kw_only=True)
class MeanRank(_GroundTruth):
    """Depth of the ranking needed to recover every ground-truth unit, over the length."""

    name = "mean_rank"
    higher_is_better = False

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        return self.pair(item)[1], {"n_units": item.n_units}
