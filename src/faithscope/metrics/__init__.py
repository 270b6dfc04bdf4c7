"""Metrics: faithfulness (removal), ground truth (planted features), plausibility."""

from .base import FAMILIES, EvalItem, Metric, get_metric, n_top
from .faithfulness import (
    AopcComprehensiveness,
    AopcSufficiency,
    Comprehensiveness,
    DeletionCurve,
    FlipRate,
    InsertionCurve,
    Sufficiency,
)
from .ground_truth import GtOverlap, MeanRank
from .plausibility import Auprc, IouF1, TokenF1

__all__ = [
    "FAMILIES", "AopcComprehensiveness", "AopcSufficiency", "Auprc", "Comprehensiveness",
    "DeletionCurve", "EvalItem", "FlipRate", "GtOverlap", "InsertionCurve", "IouF1", "MeanRank",
    "Metric", "Sufficiency", "TokenF1", "get_metric", "n_top",
]
