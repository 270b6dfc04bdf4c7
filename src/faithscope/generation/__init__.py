"""Explaining generative LMs: targets of generated text (scalarizers), prompt units and
multi-level MExGen refinement (:mod:`.explain`, reached through :func:`faithscope.explain`),
gradients of generated text (:mod:`.gradients`)."""

from .scalarizers import Scalarizer, get_scalarizer

__all__ = ["Scalarizer", "get_scalarizer"]
