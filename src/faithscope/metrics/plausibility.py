"""Plausibility: agreement of an explanation with a human rationale (a mask over units).

* token_f1: F1 of the top-k units (k = rationale size by default) against the rationale.
* iou_f1: ERASER's span-level F1: the top-k units form contiguous predicted spans; a predicted
  span matches a gold span when their IOU >= 0.5; F1 of matched predicted / gold spans.
* auprc: area under the precision-recall curve of the soft scores (average precision).
* coverage: 1 if a binary explanation selects any unit of the text, else 0 (its mean: the share
  of answers that select anything); NaN for rankings. Needs no rationale.

Values are per example (instance-level) and averaged by the evaluator. Examples without a
rationale (or with an empty one) get NaN and are left out of the averages.

Binary explanations (``Explanation.binary``, e.g. ``self_explanation``) are scored as sets:
token_f1 and iou_f1 compare the selected units themselves with the rationale (``k`` is ignored),
so an empty selection scores F1 = 0 wherever the rationale lies. auprc takes the 0/1 scores as
they are: two tie groups, so it interpolates between the selection's (recall, precision) and
(1, the rationale's share of units), and an empty selection scores that base rate, the average
precision of a constant score.

Reference: DeYoung et al. 2020 (ERASER), section 4.1.

Example
-------
>>> import numpy as np
>>> from faithscope.metrics.plausibility import average_precision, spans
>>> spans(np.array([True, True, False, True]))
[(0, 2), (3, 4)]
>>> average_precision(np.array([0.9, 0.1, 0.8]), np.array([True, False, False]))
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import metrics
from .base import EvalItem, Metric, selection


def spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as half-open (start, end) unit spans."""
    out, start = [], None
    for i, v in enumerate(np.asarray(mask, dtype=bool)):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(mask)))
    return out


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision: sum over distinct thresholds of (R_i - R_{i-1}) * P_i."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        return float("nan")
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], truth[order]
    tp = np.cumsum(t)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each tie group
    precision = tp[last] / (last + 1)
    recall = tp[last] / t.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True, kw_only=True)
class _Plausibility(Metric):
    family = "plausibility"
    needs = frozenset({"rationale"})
    bounds = (0.0, 1.0)
    reference = "DeYoung et al. 2020 (ERASER)"
    k: int | None = None  # None: the size of the human rationale

    def predicted(self, item: EvalItem) -> np.ndarray | None:
        """The predicted rationale: the top-k units, or a binary explanation's selection."""
        ref = item.reference
        if ref is None or not np.any(ref):
            return None
        k = int(np.sum(ref)) if self.k is None else min(self.k, item.n_units)
        return self.top_units(item, k)


@metrics.register("token_f1")
@dataclass(frozen=True, kw_only=True)
class TokenF1(_Plausibility):
    """Unit-level F1 of the top-k units against the rationale."""

    name = "token_f1"

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        pred = self.predicted(item)
        if pred is None:
            return float("nan"), {}
        ref = np.asarray(item.reference, dtype=bool)
        tp = int(np.sum(pred & ref))
        p = tp / max(int(pred.sum()), 1)
        r = tp / int(ref.sum())
        return f1(p, r), {"precision": p, "recall": r, "k": int(pred.sum())}


@metrics.register("iou_f1")
@dataclass(frozen=True, kw_only=True)
class IouF1(_Plausibility):
    """ERASER's IOU F1: spans match at IOU >= ``threshold`` (0.5)."""

    name = "iou_f1"
    threshold: float = 0.5

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        pred = self.predicted(item)
        if pred is None:
            return float("nan"), {}
        ps, gs = spans(pred), spans(np.asarray(item.reference, dtype=bool))
        matched_p = sum(any(iou(a, b) >= self.threshold for b in gs) for a in ps)
        matched_g = sum(any(iou(a, b) >= self.threshold for a in ps) for b in gs)
        p, r = matched_p / max(len(ps), 1), matched_g / len(gs)  # no span predicted: P = 0
        return f1(p, r), {"precision": p, "recall": r, "pred_spans": len(ps),
                          "gold_spans": len(gs)}


@metrics.register("auprc")
@dataclass(frozen=True, kw_only=True)
class Auprc(_Plausibility):
    """Average precision of the soft scores against the rationale."""

    name = "auprc"

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        ref = item.reference
        if ref is None or not np.any(ref):
            return float("nan"), {}
        s = item.explanation.row(item.target).astype(np.float64)
        return average_precision(np.abs(s) if self.by == "abs" else s, ref), {}


@metrics.register("coverage")
@dataclass(frozen=True, kw_only=True)
class Coverage(Metric):
    """1.0 if a binary explanation (a selection, e.g. ``self_explanation``) selects any unit of
    the text, 0.0 if it selects none; its mean over examples is the share of answers that point
    at the text at all, to read beside their F1. NaN for rankings (every attribution "covers"
    the text), so their rows drop out of the means. Needs neither model nor rationale."""

    name = "coverage"
    family = "plausibility"
    bounds = (0.0, 1.0)
    reference = "faithscope; for LLM self-explanations (Fayyaz et al. 2024)"

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        sel = selection(item)
        if sel is None:
            return float("nan"), {}
        n = int(sel.sum())
        return float(n > 0), {"selected": n, "n_units": item.n_units}
