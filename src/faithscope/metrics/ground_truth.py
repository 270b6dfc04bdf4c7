"""Ground-truth metrics for data with planted features (e.g. ``sst2_planted``).

Let L be the ground-truth (planted) units among n units, and order the units by score from
the highest (``by="abs"``: by magnitude).

* gt_overlap: share of L found among the top-|L| ranked units (1.0 = the explanation's top-|L|
  is exactly L; a random ranking scores about |L|/n). Ties: the earlier unit first.
* recovery_depth: the smallest depth d of the ranking whose top d units contain all of L, as a
  fraction of n: d / n (|L|/n is perfect, 1.0 = a planted unit is last; lower is better).
  Ties: the earlier unit first. (Named ``mean_rank`` before; it is not a mean rank.)
* mean_rank: the mean over the units of L of their rank in the ordering (1 = the top unit), as
  a fraction of n: (1/|L|) sum_{u in L} rank(u) / n. Tied units share the average of the ranks
  they span (fractional ranking, ``scipy.stats.rankdata(..., method="average")``), so a tie
  neither helps nor hurts. Perfect: (|L| + 1) / (2n); a random ranking: about (n + 1) / (2n);
  lower is better. The mean rank itself (1..n) is ``detail["mean_rank_units"]``.

Reference: Hooker et al. 2019 ("ROAR") style known-feature tests; Zhou et al. 2022, "Do
Feature Attribution Methods Correctly Attribute Features?" (planted-feature protocol); Arras
et al. 2017.

Example
-------
>>> import numpy as np
>>> from faithscope.metrics.ground_truth import mean_rank_of_truth, overlap_at_truth
>>> overlap_at_truth(np.array([0.1, 0.9, 0.3]), np.array([False, True, False]))
(1.0, 0.3333333333333333)
>>> mean_rank_of_truth(np.array([0.1, 0.9, 0.3, 0.5]), np.array([False, True, True, False]))
0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import metrics
from .base import EvalItem, Metric


def _key(scores: np.ndarray, by: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    return np.abs(s) if by == "abs" else s


def overlap_at_truth(scores: np.ndarray, truth: np.ndarray, by: str = "value"
                     ) -> tuple[float, float]:
    """(gt_overlap, recovery_depth) of ``scores`` against the boolean ``truth`` mask."""
    truth = np.asarray(truth, dtype=bool)
    n, m = len(scores), int(truth.sum())
    if m == 0 or n == 0:
        return float("nan"), float("nan")
    order = np.argsort(-_key(scores, by), kind="stable")
    found = truth[order]
    overlap = float(found[:m].sum() / m)
    depth = int(np.nonzero(found)[0].max()) + 1
    return overlap, depth / n


def truth_ranks(scores: np.ndarray, truth: np.ndarray, by: str = "value") -> np.ndarray:
    """The rank (1 = highest score; ties: the average of the ranks they span) of each unit of
    ``truth``, in unit order."""
    from scipy.stats import rankdata

    ranks = rankdata(-_key(scores, by), method="average")
    return np.asarray(ranks, dtype=np.float64)[np.asarray(truth, dtype=bool)]


def mean_rank_of_truth(scores: np.ndarray, truth: np.ndarray, by: str = "value") -> float:
    """Mean rank of the ground-truth units (1 = top, ties averaged) divided by the number of
    units; NaN without ground truth."""
    truth = np.asarray(truth, dtype=bool)
    n = len(scores)
    if n == 0 or not truth.any():
        return float("nan")
    return float(truth_ranks(scores, truth, by).mean() / n)


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


    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        v = self.pair(item)[0]
        return v, {"n_truth": int(np.sum(item.reference)) if item.reference is not None else 0}


@metrics.register("recovery_depth")
@dataclass(frozen=True, kw_only=True)
class RecoveryDepth(_GroundTruth):
    """Depth of the ranking needed to recover every ground-truth unit, over the length."""

    higher_is_better = False

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        return self.pair(item)[1], {"n_units": item.n_units}


@metrics.register("mean_rank")
@dataclass(frozen=True, kw_only=True)
class MeanRank(_GroundTruth):
    """Mean rank (1 = top; ties: average rank) of the ground-truth units, over the length."""

    higher_is_better = False

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        ref = item.reference
        if ref is None or not np.any(ref) or item.n_units == 0:
            return float("nan"), {"n_units": item.n_units}
        ranks = truth_ranks(item.explanation.row(item.target), ref, self.by)
        return float(ranks.mean() / item.n_units), {
            "n_units": item.n_units, "n_truth": len(ranks),
            "mean_rank_units": float(ranks.mean())}
