"""Reuse of model evaluations across the explainers of one explain call.

LIME, KernelSHAP, leave-one-out, Shapley sampling, PartitionSHAP and MExGen all score unit masks
of the same examples through :func:`~faithscope.explainers.base.score_masks`. Many of those
masks coincide: every leave-one-out mask is a KernelSHAP coalition of size ``d - 1`` (and
among LIME's samples), and LIME and KernelSHAP both sample the smallest and largest removals
most. Inside :func:`shared_scores` every scored mask's model output is kept per example and
operator, and a later explainer of the same call gets it without running the model again.

:func:`faithscope.explain` opens one scope per group of inputs
(:func:`~faithscope.explainers.base.item_groups` over all its explainers), so the memory held
stays bounded by the group, not the dataset. What an explainer computes does not change: the
masks it draws are its own (randomness is keyed per example), and a reused output is the model's
output on the same token ids, equal to a fresh one up to float32 batching noise (about 1e-6).
Each explanation records how many of its distinct masks were answered from the scope
(``info["reused"]``); ``info["forwards"]`` still counts every distinct mask it used.

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> lime, loo = fs.explain(tiny_classifier(), "a witty and moving film",
...                        ["lime", "leave_one_out"])
>>> loo.info["reused"] == loo.info["forwards"]   # every leave-one-out mask was among LIME's
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ScoreCache:
    """Model outputs (logits rows) of scored masks, per (example, operator), and per example
    the number of masks answered from the cache."""

    rows: dict[tuple[int, str], tuple[Any, dict[bytes, np.ndarray]]] = field(
        default_factory=dict)
    hits: dict[int, int] = field(default_factory=dict)

    def store(self, item: Any, operator: str) -> dict[bytes, np.ndarray]:
        # the item is held with its table, so its id cannot be reused inside the scope
        return self.rows.setdefault((id(item), operator), (item, {}))[1]

    def reused(self, item: Any) -> int:
        return self.hits.get(id(item), 0)


_ACTIVE: ContextVar[ScoreCache | None] = ContextVar("faithscope_shared_scores", default=None)


@contextmanager
def shared_scores(*, enabled: bool = True) -> Iterator[ScoreCache | None]:
    """A scope in which :func:`~faithscope.explainers.base.score_masks` keeps and reuses the
    model outputs of scored masks (see the module docstring); ``enabled=False``: none (and
    the scope yields None), also when an enclosing scope is active."""
    cache = ScoreCache() if enabled else None
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def active() -> ScoreCache | None:
    """The cache of the innermost :func:`shared_scores` scope, if any."""
    return _ACTIVE.get()
