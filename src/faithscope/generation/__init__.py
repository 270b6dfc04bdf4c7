"""Explaining generative LMs: scalarizers, multi-level MExGen explanations, self-explanations."""

from .evaluate import evaluate_generation
from .explain import GenItem, ScalarizedLM, explain_generation
from .scalarizers import Scalarizer, get_scalarizer

__all__ = ["GenItem", "ScalarizedLM", "Scalarizer", "evaluate_generation", "explain_generation",
           "get_scalarizer"]
