"""Plausibility: agreement of an explanation with a human rationale (a mask over units).

Every name below is the quantity of DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate
Rationalized NLP Models" (ACL), section 4.1, as computed by their scorer
(``rationale_benchmark/metrics.py`` of github.com/jayded/eraserbenchmark):

* token_f1: F1 of the top-k units (k = rationale size by default) against the rationale,
  per example: P = tp / |predicted|, R = tp / |rationale|.
* iou_f1: ERASER's span-level ("partial match") F1: the top-k units form contiguous predicted
  spans (maximal runs); a predicted span matches when its IOU with a gold span is >= 0.5
  (``threshold``); per example P = matched predicted spans / predicted spans, R = matched gold
  spans / gold spans. (ERASER counts matched *predicted* spans in both; at any threshold
  >= 0.5 a span matches at most one span of the other side, so the two counts are equal.)
* auprc: ERASER's AUPRC, the trapezoidal area under the precision-recall curve of the soft
  scores (their ``_auprc``: sklearn's ``precision_recall_curve`` then ``auc``), see :func:`auprc`.
* average_precision: step-wise average precision (ERASER's ``average_precision``, sklearn's
  ``average_precision_score``), see :func:`average_precision`. It is NOT the AUPRC: on scores
  [.1, .9, .3, .5] with rationale {1, 2}, AUPRC = 19/24 = 0.7917 and AP = 5/6 = 0.8333.
* coverage: 1 if a binary explanation selects any unit of the text, else 0 (its mean: the share
  of answers that select anything); NaN for rankings. Needs no rationale.

Values are per example (instance-level); the evaluator's mean of token_f1 and iou_f1 is the
mean of per-example F1s. ERASER reports them pooled over the dataset: every token_f1 / iou_f1
row keeps its counts in ``detail`` and :func:`faithscope.summarize` adds ERASER's
``micro`` and ``macro`` values (:meth:`TokenF1.pooled`, :meth:`IouF1.pooled`):

* token_f1 (micro): P = sum tp / sum |predicted|, R = sum tp / sum |rationale|, F1 of those
  (ERASER ``token_prf.instance_micro``);
* token_f1 (macro): ERASER ``token_prf.instance_macro`` averages the per-example F1s, so it is
  the mean of per-example token F1 (not the F1 of mean P and mean R);
* iou_f1 (micro): P = sum matched predicted / sum predicted spans, R = sum matched gold / sum
  gold spans, F1 of those (ERASER ``iou_scores[...]["micro"]``);
* iou_f1 (macro): F1 of (mean P over the examples that predict a span, mean R over the
  examples), ERASER ``iou_scores[...]["macro"]``.

Examples without a rationale (or with an empty one) get NaN and are left out of all of these
(ERASER scores only annotated documents).

Binary explanations (``Explanation.binary``, e.g. ``self_explanation``) are scored as sets:
token_f1 and iou_f1 compare the selected units themselves with the rationale (``k`` is ignored),
so an empty selection scores F1 = 0 wherever the rationale lies. auprc and average_precision
take the 0/1 scores as they are: two tie groups, the selection's (recall, precision) and
(1, the rationale's share of units b). An empty selection is a constant score: one point
(1, b), so its AUPRC is (1 + b) / 2 (the trapezoid from sklearn's end point (0, 1)) and its
average precision is b.

Example
-------
>>> import numpy as np
>>> from faithscope.metrics.plausibility import auprc, average_precision, spans
>>> spans(np.array([True, True, False, True]))
[(0, 2), (3, 4)]
>>> s, gold = np.array([0.1, 0.9, 0.3, 0.5]), np.array([False, True, True, False])
>>> round(auprc(s, gold), 4), round(average_precision(s, gold), 4)
(0.7917, 0.8333)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

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


def _f1s(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Elementwise F1 (0 where P + R = 0)."""
    return _div(2 * p * r, p + r)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b elementwise, 0 where b = 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def pr_points(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score, from the highest to the lowest: the
    precision and recall of {units with score >= t} for each distinct t. Tied units enter
    together (one point per tie group), as in sklearn's ``precision_recall_curve``."""
    truth = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], truth[order]
    tp = np.cumsum(t)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each tie group
    return tp[last] / t.sum(), tp[last] / (last + 1)


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Step-wise average precision: AP = sum_i (R_i - R_{i-1}) * P_i over the distinct
    thresholds t_1 > t_2 > ... (ties form one threshold), R_0 = 0.

    This is sklearn's ``average_precision_score`` and ERASER's ``average_precision`` (DeYoung
    et al. 2020; their scorer drops documents whose units are all or none in the rationale,
    where AP is 1 or undefined). NaN when no unit is in the rationale."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        return float("nan")
    recall, precision = pr_points(scores, truth)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auprc(scores: np.ndarray, truth: np.ndarray) -> float:
    """ERASER's AUPRC: the trapezoidal area under the precision-recall curve,

        AUPRC = sum_i (R_i - R_{i-1}) * (P_i + P_{i-1}) / 2,

    over the points (R_i, P_i) of the distinct thresholds t_1 > t_2 > ... (ties form one
    threshold: :func:`pr_points`), starting from (R_0, P_0) = (0, 1). This is exactly sklearn's
    ``auc(recall, precision)`` of ``precision_recall_curve``: one point per distinct score and
    the point (recall 0, precision 1) appended; points past full recall add no area. DeYoung et
    al. 2020 (ERASER), section 4.1, "soft scoring" (their ``_auprc``, averaged over documents).
    NaN when no unit is in the rationale."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        return float("nan")
    recall, precision = pr_points(scores, truth)
    r, p = np.r_[0.0, recall], np.r_[1.0, precision]
    return float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2))


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


@dataclass(frozen=True, kw_only=True)
class _PooledF1(_Plausibility):
    """An F1 whose dataset-level (ERASER micro / macro) values are computed from per-example
    statistics that add up: :meth:`example_stats` of each row's detail, summed over examples
    (or weighted by a bootstrap resample), then :meth:`pooled` of the sums."""

    aggregates: ClassVar[tuple[str, ...]] = ("micro", "macro")

    @staticmethod
    def example_stats(detail: Mapping[str, Any]) -> list[float] | None:
        raise NotImplementedError

    @staticmethod
    def pooled(sums: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


@metrics.register("token_f1")
@dataclass(frozen=True, kw_only=True)
class TokenF1(_PooledF1):
    """Unit-level F1 of the top-k units against the rationale (per example; ERASER's micro and
    macro values over a dataset: :meth:`pooled`)."""


    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        pred = self.predicted(item)
        if pred is None:
            return float("nan"), {}
        ref = np.asarray(item.reference, dtype=bool)
        tp, n_pred, n_gold = int(np.sum(pred & ref)), int(pred.sum()), int(ref.sum())
        p = tp / max(n_pred, 1)  # nothing predicted: P = 0
        r = tp / n_gold
        return f1(p, r), {"precision": p, "recall": r, "k": n_pred, "tp": tp,
                          "n_pred": n_pred, "n_gold": n_gold}

    @staticmethod
    def example_stats(detail: Mapping[str, Any]) -> list[float] | None:
        """[tp, |predicted|, |rationale|, per-example F1, 1], or None without counts."""
        if not all(k in detail for k in ("tp", "n_pred", "n_gold", "precision", "recall")):
            return None
        return [float(detail["tp"]), float(detail["n_pred"]), float(detail["n_gold"]),
                f1(float(detail["precision"]), float(detail["recall"])), 1.0]

    @staticmethod
    def pooled(sums: np.ndarray) -> dict[str, np.ndarray]:
        """ERASER's token-level F1s from summed :meth:`example_stats` (last axis):
        micro = F1 of (sum tp / sum |predicted|, sum tp / sum |rationale|);
        macro = mean of the per-example F1s (ERASER's ``instance_macro`` f1)."""
        s = np.asarray(sums, dtype=np.float64)
        micro = _f1s(_div(s[..., 0], s[..., 1]), _div(s[..., 0], s[..., 2]))
        return {"micro": micro, "macro": _div(s[..., 3], s[..., 4])}


@metrics.register("iou_f1")
@dataclass(frozen=True, kw_only=True)
class IouF1(_PooledF1):
    """ERASER's IOU F1: spans match at IOU >= ``threshold`` (0.5), per example (ERASER's micro
    and macro values over a dataset: :meth:`pooled`)."""

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
                          "gold_spans": len(gs), "matched_pred": int(matched_p),
                          "matched_gold": int(matched_g)}

    @staticmethod
    def example_stats(detail: Mapping[str, Any]) -> list[float] | None:
        """[matched predicted, matched gold, predicted spans, gold spans, P if a span is
        predicted else 0, 1 if a span is predicted else 0, R, 1], or None without counts."""
        keys = ("matched_pred", "matched_gold", "pred_spans", "gold_spans", "precision",
                "recall")
        if not all(k in detail for k in keys):
            return None
        has = float(detail["pred_spans"]) > 0
        return [float(detail["matched_pred"]), float(detail["matched_gold"]),
                float(detail["pred_spans"]), float(detail["gold_spans"]),
                float(detail["precision"]) if has else 0.0, float(has),
                float(detail["recall"]), 1.0]

    @staticmethod
    def pooled(sums: np.ndarray) -> dict[str, np.ndarray]:
        """ERASER's IOU F1s from summed :meth:`example_stats` (last axis): micro = F1 of
        (sum matched predicted / sum predicted spans, sum matched gold / sum gold spans);
        macro = F1 of (mean P over the examples that predict a span, mean R)."""
        s = np.asarray(sums, dtype=np.float64)
        micro = _f1s(_div(s[..., 0], s[..., 2]), _div(s[..., 1], s[..., 3]))
        macro = _f1s(_div(s[..., 4], s[..., 5]), _div(s[..., 6], s[..., 7]))
        return {"micro": micro, "macro": macro}


#: metric name -> the class whose ERASER micro / macro values :func:`faithscope.summarize` adds
POOLED: dict[str, type[_PooledF1]] = {"token_f1": TokenF1, "iou_f1": IouF1}


@dataclass(frozen=True, kw_only=True)
class _SoftScores(_Plausibility):
    """A metric of the soft scores (``by="abs"``: of their magnitudes) against the rationale."""

    def scores(self, item: EvalItem) -> np.ndarray:
        s = item.explanation.row(item.target).astype(np.float64)
        return np.abs(s) if self.by == "abs" else s


@metrics.register("auprc")
@dataclass(frozen=True, kw_only=True)
class Auprc(_SoftScores):
    """ERASER's AUPRC: trapezoidal area under the precision-recall curve of the soft scores
    against the rationale (:func:`auprc`; sklearn ``precision_recall_curve`` + ``auc``)."""


    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        ref = item.reference
        if ref is None or not np.any(ref):
            return float("nan"), {}
        return auprc(self.scores(item), ref), {}


@metrics.register("average_precision")
@dataclass(frozen=True, kw_only=True)
class AveragePrecision(_SoftScores):
    """Step-wise average precision of the soft scores against the rationale
    (:func:`average_precision`; sklearn ``average_precision_score``, ERASER's
    ``average_precision``)."""


    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        ref = item.reference
        if ref is None or not np.any(ref):
            return float("nan"), {}
        return average_precision(self.scores(item), ref), {}


@metrics.register("coverage")
@dataclass(frozen=True, kw_only=True)
class Coverage(Metric):
    """1.0 if a binary explanation (a selection, e.g. ``self_explanation``) selects any unit of
    the text, 0.0 if it selects none; its mean over examples is the share of answers that point
    at the text at all, to read beside their F1. NaN for rankings (every attribution "covers"
    the text), so their rows drop out of the means. Needs neither model nor rationale."""

    family = "plausibility"
    bounds = (0.0, 1.0)
    reference = "faithscope; for LLM self-explanations (Fayyaz et al. 2024)"

    def value(self, item: EvalItem) -> tuple[float, dict[str, Any]]:
        sel = selection(item)
        if sel is None:
            return float("nan"), {}
        n = int(sel.sum())
        return float(n > 0), {"selected": n, "n_units": item.n_units}
