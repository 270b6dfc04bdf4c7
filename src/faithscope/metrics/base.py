"""The metric contract: family, direction, bounds, needs, and one value per explanation.

A metric is a frozen dataclass of keyword-only hyper-parameters. Metrics that need the model
(removal metrics) do not call it: they return unit masks from :meth:`Metric.masks`, the
evaluator scores the masks of every metric and every explanation in one virtual batch through
the adapter, and :meth:`Metric.from_probs` turns the probabilities into a value. Metrics that
only compare scores with a reference mask implement :meth:`Metric.value`.

Example
-------
>>> from faithscope.metrics import get_metric
>>> m = get_metric("token_f1")
>>> (m.family, m.higher_is_better, m.bounds, sorted(m.needs))
('plausibility', True, (0.0, 1.0), ['rationale'])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from ..explanation import Explanation
from ..models.adapter import InputError
from ..registry import metrics

FAMILIES = ("faithfulness", "ground_truth", "plausibility")


@dataclass(frozen=True)
class EvalItem:
    """One explanation with what metrics may need: the gold label and a reference unit mask
    (the human rationale, or the planted ground truth), aligned to the explanation's units."""

    explanation: Explanation
    label: int | None = None
    reference: np.ndarray | None = None  # bool per unit
    target: int = 0  # class explained: explanation.targets[0]

    @property
    def n_units(self) -> int:
        return len(self.explanation.units)


@dataclass(frozen=True, kw_only=True)
class Metric:
    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    bounds: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    needs: ClassVar[frozenset[str]] = frozenset()  # subset of {"model", "rationale"}
    reference: ClassVar[str] = ""
    by: str = "value"  # rank units by signed value, or by "abs"

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self) -> None:
        if self.by not in ("value", "abs"):
            raise InputError(f"{self.name}: by must be 'value' or 'abs', got {self.by!r}")
        fraction = getattr(self, "fraction", None)
        if fraction is not None and (isinstance(fraction, bool) or not 0 < fraction <= 1):
            raise InputError(f"{self.name}: fraction must be in (0, 1], got {fraction!r}")
        k = getattr(self, "k", None)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InputError(f"{self.name}: k must be a positive integer or None, got {k!r}")

    # model-free metrics
    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    # removal metrics
    def masks(self, item: EvalItem) -> np.ndarray:
        raise NotImplementedError

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    def ranking(self, item: EvalItem) -> np.ndarray:
        """Unit indices from most to least important (ties: earlier unit first)."""
        s = item.explanation.row(item.target).astype(np.float64)
        key = np.abs(s) if self.by == "abs" else s
        return np.argsort(-key, kind="stable")


def n_top(fraction: float, n: int) -> int:
    """Units in the top ``fraction`` of ``n``: ceil(fraction * n), at least 1, at most n."""
    if n == 0:
        return 0
    return int(min(n, max(1, math.ceil(fraction * n - 1e-9))))


def top_mask(item: EvalItem, order: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros(item.n_units, dtype=bool)
    m[order[:k]] = True
    return m


def get_metric(spec: Any, **params: Any) -> Metric:
    """A metric from a registered name (with keyword hyper-parameters), a (name, params)
    pair, or an instance."""
    if isinstance(spec, Metric):
        m: Metric = dataclasses.replace(spec, **params) if params else spec
    else:
        m = metrics.build(spec, params)
    m.validate()
    return m
