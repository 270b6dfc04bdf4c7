"""Explainers: each a small kernel registered under one name (see ``faithscope list``)."""

from .attention import Attention, AttentionRollout, rollout
from .base import OPERATORS, Explainer, Prepared, score_masks
from .ensemble import Ensemble, EnsembleAll, EnsembleTop3
from .gradient import Gradient, GradientXInput, IntegratedGradients
from .lrp import LRP
from .mexgen import MExGenCLIME, MExGenLOO, MExGenLSHAP
from .partition import PartitionShap, cluster_units
from .perturbation import KernelShap, LeaveOneOut, Lime, RandomExplainer
from .self_explain import SelfExplanation, parse_word_list
from .shapley_sampling import ShapleySampling

__all__ = [
    "OPERATORS", "Attention", "AttentionRollout", "Ensemble", "EnsembleAll", "EnsembleTop3",
    "Explainer", "Gradient", "GradientXInput", "IntegratedGradients", "KernelShap",
    "LRP", "LeaveOneOut", "Lime", "MExGenCLIME", "MExGenLOO", "MExGenLSHAP", "PartitionShap", "Prepared", "RandomExplainer", "SelfExplanation", "ShapleySampling",
    "cluster_units", "parse_word_list", "rollout", "score_masks",
]
