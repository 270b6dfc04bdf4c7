"""Explaining generative LMs: scalarizers, multi-level MExGen explanations, self-explanations."""

from .explain import GenItem, ScalarizedLM, explain_generation
from .scalarizers import Scalarizer, get_scalarizer

__all__ = ["GenItem", "ScalarizedLM", "Scalarizer", "explain_generation", "get_scalarizer"]
