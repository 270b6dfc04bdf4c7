"""The metric contract: family, direction, bounds, needs, and one value per explanation.

A metric is a frozen dataclass of keyword-only hyper-parameters. Metrics that need the model
(removal metrics) do not call it: they return unit masks from :meth:`Metric.masks`, the
evaluator scores the masks of every metric and every explanation in one virtual batch through
the adapter, and :meth:`Metric.from_probs` turns the probabilities into a value. Metrics that
only compare scores with a reference mask implement :meth:`Metric.value`.

Rankings and selections. Every metric asks for "the most important units" through
:meth:`Metric.top_units` (k units) or :meth:`Metric.top_masks` (one set per fraction), and
this is the ONE place where an explanation's kind matters. A ranking (any attribution) gives
its top ``k`` units by score, ties to the earlier unit. A *binary* explanation
(``Explanation.binary``: a selected set, e.g. ``self_explanation``) gives exactly its selected
units (:func:`selection`), whatever ``k`` or the fraction: an empty selection is an empty set
(F1 = 0, nothing removed), never "the first k units in tie order"; and removal metrics over
several fractions (AOPC, curves) see one set, the selection, instead of one per fraction.

Conventions. How a ranking is cut into "the top units of a fraction" follows one of the named
:data:`CONVENTIONS` (:meth:`Metric.top_masks`): ``"eraser"`` (the default; DeYoung et al. 2020)
takes the ceil(f * n) best units (:func:`n_top`, at least one), ties to the earlier unit;
``"ferret"`` (Attanasio et al. 2023) takes floor(f * n) units (:func:`n_floor`, possibly none),
ties to the later unit, and with ``by="value"`` only units with a positive score.

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
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from ..explanation import Explanation
from ..models.adapter import InputError
from ..registry import metrics
from ..units import Unit

FAMILIES = ("faithfulness", "ground_truth", "plausibility")
CONVENTIONS = ("eraser", "ferret")  # how removal metrics cut a ranking: Metric.top_masks


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
        convention = getattr(self, "convention", None)
        if convention is not None and convention not in CONVENTIONS:
            raise InputError(f"{self.name}: convention must be one of {CONVENTIONS}, got "
                             f"{convention!r}")

    # model-free metrics
    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    # removal metrics
    def masks(self, item: EvalItem) -> np.ndarray:
        raise NotImplementedError

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    def ranking(self, item: EvalItem, weights: np.ndarray | None = None, *,
                ties: str = "earlier") -> np.ndarray:
        """Unit indices from most to least important (ties: earlier unit first, or with
        ``ties="later"`` the later unit first). With ``weights`` (e.g. words per unit), units
        are ranked by score per weight, a weight below 1 counting as 1."""
        s = item.explanation.row(item.target).astype(np.float64)
        key = np.abs(s) if self.by == "abs" else s
        if weights is not None:
            key = key / np.maximum(np.asarray(weights, dtype=np.float64), 1.0)
        if ties == "later":  # a stable sort of the reversed keys, mapped back
            return len(key) - 1 - np.argsort(-key[::-1], kind="stable")
        return np.argsort(-key, kind="stable")

    def top_units(self, item: EvalItem, k: int) -> np.ndarray:
        """Bool mask of the ``k`` most important units; for a binary explanation, exactly
        its selected units (``k`` is ignored; the mask may be empty)."""
        sel = selection(item)
        if sel is not None:
            return sel
        return top_mask(item, self.ranking(item), k)

    def top_masks(self, item: EvalItem, fractions: Sequence[float],
                  weights: np.ndarray | None = None, *, convention: str = "eraser"
                  ) -> np.ndarray:
        """The most important units covering each fraction, as bool rows (fractions x units).

        A ranking, ``convention="eraser"``: for each fraction ``f`` the shortest prefix of
        :meth:`ranking` whose weight reaches ``f`` of the total (:func:`n_covering`; without
        ``weights`` every unit weighs 1 and this is :func:`n_top`, ceil(f * n) units, at least
        one), ties to the earlier unit. ``convention="ferret"`` (ferret's
        ``_get_id_tokens_percentage``; unit weights only): the floor(f * n) first units of
        :meth:`ranking` with ties to the later unit (:func:`n_floor`; 0 units: an empty row),
        and with ``by="value"`` only those with a positive score, so a row may hold fewer than
        floor(f * n) units, or none, and repeat the previous row; the metric decides what to
        do with empty and repeated rows. A binary explanation: ONE row, its selection,
        whatever the fractions and the convention (a selection has no order to take prefixes
        of)."""
        n = item.n_units
        sel = selection(item)
        if sel is not None:
            return sel.reshape(1, n)
        if convention == "ferret":
            if weights is not None:
                raise InputError("the ferret convention counts units, not their weights")
            order = self.ranking(item, ties="later")
            rows = np.array([top_mask(item, order, n_floor(f, n)) for f in fractions],
                            dtype=bool).reshape(len(fractions), n)
            if self.by == "value":  # ferret's only_pos (its default)
                rows &= item.explanation.row(item.target) > 0
            return rows
        if convention != "eraser":
            raise InputError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        order = self.ranking(item, weights)
        if weights is None:
            ks = [n_top(f, n) for f in fractions]
        else:
            w = np.asarray(weights, dtype=np.float64)[order]
            ks = [n_covering(f, w) for f in fractions]
        return np.array([top_mask(item, order, k) for k in ks], dtype=bool).reshape(len(ks), n)


def selection(item: EvalItem) -> np.ndarray | None:
    """The units a binary explanation selects for the explained target (a bool mask), or
    None when the explanation is a ranking (``Explanation.binary`` is False)."""
    e = item.explanation
    return e.selected(item.target) if e.binary else None


def n_top(fraction: float, n: int) -> int:
    """Units in the top ``fraction`` of ``n``: ceil(fraction * n), at least 1, at most n."""
    if n == 0:
        return 0
    return int(min(n, max(1, math.ceil(fraction * n - 1e-9))))


def n_floor(fraction: float, n: int) -> int:
    """Units in the top ``fraction`` of ``n`` in ferret's convention: floor(fraction * n), at
    most n, and 0 (an empty bin) when fraction * n < 1. Like :func:`n_top`, a product within
    1e-9 of an integer counts as that integer (0.29 * 100 = 28.999999999999996 gives 29)."""
    if n == 0:
        return 0
    return int(min(n, max(0, math.floor(fraction * n + 1e-9))))


def n_covering(fraction: float, weights: np.ndarray) -> int:
    """The shortest prefix of ``weights`` (in rank order) whose sum reaches ``fraction`` of
    the total: the smallest k >= 1 with w_1 + ... + w_k >= fraction * sum(w); with unit
    weights this is :func:`n_top`. 0 when there are no units; all when the total is 0."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0:
        return 0
    total = float(w.sum())
    if total <= 0:
        return len(w)
    k = int(np.searchsorted(np.cumsum(w), fraction * total - 1e-9, side="left")) + 1
    return int(min(len(w), max(1, k)))


_WORDS = re.compile(r"\w+")
UNIT_SIZES = ("units", "words", "tokens")


def unit_sizes(units: Sequence[Unit], of: str) -> np.ndarray:
    """Size of each unit: 1 (``"units"``), its number of words (``"words"``: matches of the
    regex ``\\w+`` in ``unit.text``; a punctuation unit has 0) or of model tokens
    (``"tokens"``: ``len(unit.tokens)``). Units of explanations of generated text carry no
    tokens: ``"tokens"`` is refused for them."""
    if of == "units":
        return np.ones(len(units))
    if of == "words":
        return np.array([len(_WORDS.findall(u.text)) for u in units], dtype=np.float64)
    if of == "tokens":
        if units and not any(u.tokens for u in units):
            raise InputError("counting tokens needs units with model tokens (explanations of "
                             "classifiers); these units have none: count 'words'")
        return np.array([len(u.tokens) for u in units], dtype=np.float64)
    raise InputError(f"unit sizes are counted in one of {UNIT_SIZES}, got {of!r}")


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
