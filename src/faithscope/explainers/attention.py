"""Attention explainers: average attention received, and attention rollout.

References: Jain & Wallace 2019 and Wiegreffe & Pinter 2019 (attention as explanation);
Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers" (rollout with the residual
connection modelled as 0.5 A + 0.5 I).

Example
-------
>>> import numpy as np
>>> from faithscope.explainers.attention import rollout
>>> att = np.full((2, 1, 3, 3), 1 / 3)          # layers x heads x query x key
>>> np.allclose(rollout(att).sum(-1), 1.0)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..models.adapter import InputError, ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .base import Explainer, Prepared, pool_tokens
from .perturbation import Result


def rollout(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (query x key) from attentions (layers x heads x query x key).

    Heads are averaged, the residual stream is added as ``residual * I``, rows are re-normalised
    and the layers are multiplied from the first to the last. Rows sum to 1.
    """
    att = np.asarray(attentions, dtype=np.float64).mean(axis=1)
    n = att.shape[-1]
    out = np.eye(n)
    for layer in att:
        a = (1.0 - residual) * layer + residual * np.eye(n)
        a = a / a.sum(axis=-1, keepdims=True)
        out = a @ out
    return out


def _query_position(adapter: ModelAdapter, n: int) -> int:
    return n - 1 if adapter.pooling == "last" else 0


@explainers.register("attention")
@dataclass(frozen=True, kw_only=True)
class Attention(Explainer):
    """Attention received by each unit, averaged over heads and the chosen layers.

    ``layers="all"`` or ``"last"``; ``query="all"`` averages over every query position,
    ``query="pooled"`` reads the row of the position the classifier pools ([CLS] or last token).
    The same scores explain every target.
    """

    uses_model_internals = True
    layers: str = "all"
    query: str = "all"

    def validate(self) -> None:
        if self.layers not in ("all", "last") or self.query not in ("all", "pooled"):
            raise InputError("attention: layers must be all|last and query all|pooled")

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        atts = adapter.attentions([it.enc for it in items])
        scores = []
        for it, att in zip(items, atts, strict=True):
            a = att[-1:] if self.layers == "last" else att
            a = a.mean(axis=(0, 1))
            if self.query == "pooled":
                received = a[_query_position(adapter, a.shape[0])]
            else:
                received = a.mean(axis=0)
            tok = np.repeat(received[None], len(it.targets), axis=0)
            scores.append(pool_tokens(it, tok))
        return scores, [{"forwards": 1} for _ in items]


@explainers.register("attention_rollout")
@dataclass(frozen=True, kw_only=True)
class AttentionRollout(Explainer):
    """Rollout row of the pooled position ([CLS] for encoders, last token for decoders)."""

    uses_model_internals = True
    residual: float = 0.5

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        atts = adapter.attentions([it.enc for it in items])
        scores = []
        for it, att in zip(items, atts, strict=True):
            r = rollout(att, self.residual)
            row = r[_query_position(adapter, r.shape[0])]
            scores.append(pool_tokens(it, np.repeat(row[None], len(it.targets), axis=0)))
        return scores, [{"forwards": 1} for _ in items]
