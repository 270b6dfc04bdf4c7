"""Metrics: faithfulness (removal), ground truth (planted features), plausibility, and analyses
that re-run the explainer (sanity: randomization; robustness: sensitivity; adversarial:
explanation attacks; stability: sampling_stability)."""

from .analysis import Analysis, curve_table, similarity
from .attack import ExplanationAttack, ExplanationAttackConstrained, attack, attack_table
from .base import FAMILIES, EvalItem, Metric, get_metric, n_covering, n_top, selection, unit_sizes
from .faithfulness import (
    AopcComprehensiveness,
    AopcSufficiency,
    Comprehensiveness,
    DeletionCurve,
    FlipRate,
    InsertionCurve,
    PerturbationCurve,
    Sufficiency,
)
from .ground_truth import GtOverlap, MeanRank, RecoveryDepth
from .plausibility import Auprc, AveragePrecision, Coverage, IouF1, TokenF1
from .resampling import SamplingStability
from .robustness import AvgSensitivity, AvgSensitivityWord, MaxSensitivity, MaxSensitivityWord
from .sanity import Randomization, RandomizationIndependent, randomization_steps

__all__ = [
    "FAMILIES", "Analysis", "AopcComprehensiveness", "AopcSufficiency", "Auprc",
    "AveragePrecision", "RecoveryDepth",
    "AvgSensitivity", "AvgSensitivityWord", "Comprehensiveness", "Coverage", "DeletionCurve",
    "EvalItem", "ExplanationAttack", "ExplanationAttackConstrained", "FlipRate", "GtOverlap",
    "InsertionCurve", "IouF1", "MaxSensitivity", "MaxSensitivityWord", "MeanRank", "Metric",
    "PerturbationCurve", "Randomization", "RandomizationIndependent", "SamplingStability",
    "Sufficiency", "TokenF1",
    "attack", "attack_table", "curve_table", "get_metric", "n_covering", "n_top",
    "randomization_steps", "selection", "similarity", "unit_sizes",
]
