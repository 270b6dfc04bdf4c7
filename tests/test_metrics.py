"""Correctness of the metrics and of evaluate()/summarize().

* model-free metrics (gt_overlap, recovery_depth, token_f1, iou_f1, average_precision) on
  hand-built
  explanations whose values are worked out by hand in the comments;
* removal metrics: their masks and their arithmetic on hand-chosen probabilities, then the whole
  pipeline (``faithscope.evaluate``) on the tiny BERT against an independent reference
  implementation of the ERASER formulas that edits token ids itself and calls the HF model;
* deletion/insertion curves on the linear bag-of-embeddings model, whose probabilities are known
  in closed form;
* the evaluate()/summarize() contract and input errors.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch

import faithscope as fs
import faithscope.data as fs_data
from faithscope.evaluate import COLUMNS, bootstrap_ci
from faithscope.metrics import FAMILIES, EvalItem, get_metric, n_top
from faithscope.registry import metrics as METRICS
from helpers import PAIR, hand_exp, hand_item

NAN = float("nan")


# ============================================================== hand-built explanations
def val(name, item, **params):
    return get_metric(name, **params).value(item)[0]


def mask_of(n, on):
    m = np.zeros(n, dtype=bool)
    m[list(on)] = True
    return m


# Every registered metric must have a hand-computed test below (add it here when you do).
# mean_rank, auprc, average_precision, recovery_depth: also tests/test_published_definitions.py
HAND_TESTED = {"gt_overlap", "mean_rank", "recovery_depth", "token_f1", "iou_f1", "auprc",
               "average_precision", "comprehensiveness",
               "sufficiency", "aopc_comprehensiveness", "aopc_sufficiency", "flip_rate",
               "deletion_curve", "insertion_curve", "perturbation_curve",
               # binary explanations: test_binary_explanations (coverage; every metric on a
               # selection), test_perturbation_curve (fraction_of words / tokens / units)
               "coverage",
               # analyses: hand-computed tests in test_sanity, test_robustness, test_attacks
               "randomization", "randomization_independent", "max_sensitivity",
               "avg_sensitivity", "max_sensitivity_word", "avg_sensitivity_word",
               "explanation_attack", "explanation_attack_constrained",
               # test_sampling_stability_by_hand below
               "sampling_stability"}


def test_every_registered_metric_has_a_hand_computed_test():
    assert set(METRICS.names()) == HAND_TESTED


# ================================================================ ground-truth metrics
def test_gt_overlap_and_recovery_depth_perfect():
    # scores [0.1, 0.9, 0.3, 0.5] rank units 1, 3, 2, 0; truth {1, 3} = the top 2
    it = hand_item([0.1, 0.9, 0.3, 0.5], {1, 3})
    assert val("gt_overlap", it) == 1.0
    assert val("recovery_depth", it) == 0.5  # all of truth by depth 2 of 4
    m = get_metric("gt_overlap").value(it)[1]
    assert m == {"n_truth": 2}
    assert get_metric("recovery_depth").value(it)[1] == {"n_units": 4}


def test_gt_overlap_half():
    # scores [0.9, 0.8, 0.1, 0.2] rank 0, 1, 3, 2; truth {0, 2}: top-2 {0, 1} holds 1 of 2
    it = hand_item([0.9, 0.8, 0.1, 0.2], {0, 2})
    assert val("gt_overlap", it) == 0.5
    assert val("recovery_depth", it) == 1.0  # unit 2 is last: depth 4 of 4


def test_ground_truth_ties_earlier_unit_wins():
    # all scores equal: stable order 0, 1, 2, 3
    assert val("gt_overlap", hand_item([0.5] * 4, {0})) == 1.0
    assert val("recovery_depth", hand_item([0.5] * 4, {0})) == 0.25
    assert val("gt_overlap", hand_item([0.5] * 4, {3})) == 0.0
    assert val("recovery_depth", hand_item([0.5] * 4, {3})) == 1.0
    # a tie between units 1 and 2 at the top: 1 comes first
    assert val("gt_overlap", hand_item([0.0, 0.7, 0.7, 0.1], {1})) == 1.0
    assert val("gt_overlap", hand_item([0.0, 0.7, 0.7, 0.1], {2})) == 0.0
    assert val("recovery_depth", hand_item([0.0, 0.7, 0.7, 0.1], {2})) == 0.5


def test_ground_truth_by_abs():
    # signed: order 2, 3, 1, 0 -> unit 0 last; abs: order 0, 2, 3, 1 -> unit 0 first
    it = hand_item([-0.9, 0.1, 0.5, 0.2], {0})
    assert val("gt_overlap", it) == 0.0
    assert val("recovery_depth", it) == 1.0
    assert val("gt_overlap", it, by="abs") == 1.0
    assert val("recovery_depth", it, by="abs") == 0.25


def test_ground_truth_uses_the_explained_target_row():
    # two targets; row of class 0 ranks unit 0 first, row of class 1 ranks unit 2 first
    scores = [[0.9, 0.1, 0.0], [0.0, 0.1, 0.9]]
    assert val("gt_overlap", hand_item(scores, {2}, targets=(0, 1), target=1)) == 1.0
    assert val("gt_overlap", hand_item(scores, {2}, targets=(0, 1), target=0)) == 0.0


def test_ground_truth_edge_cases():
    # empty truth and no reference -> NaN
    for name in ("gt_overlap", "recovery_depth"):
        assert math.isnan(val(name, hand_item([0.1, 0.9], set())))
        assert math.isnan(val(name, hand_item([0.1, 0.9], None)))
    # one word that is the truth: perfect, depth 1 of 1
    assert val("gt_overlap", hand_item([0.3], {0})) == 1.0
    assert val("recovery_depth", hand_item([0.3], {0})) == 1.0
    # truth = every unit: trivially perfect, depth n / n
    assert val("gt_overlap", hand_item([0.3, 0.1, 0.2], {0, 1, 2})) == 1.0
    assert val("recovery_depth", hand_item([0.3, 0.1, 0.2], {0, 1, 2})) == 1.0


# ================================================================= plausibility metrics
def test_token_f1_default_k_is_rationale_size():
    # scores [0.1, 0.9, 0.3, 0.5], rationale {1, 2}: top-2 = {1, 3}: tp 1, P = R = 1/2
    it = hand_item([0.1, 0.9, 0.3, 0.5], {1, 2})
    v, d = get_metric("token_f1").value(it)
    assert v == pytest.approx(0.5, abs=1e-12)
    assert d["precision"] == 0.5 and d["recall"] == 0.5 and d["k"] == 2


def test_token_f1_explicit_k():
    it = hand_item([0.1, 0.9, 0.3, 0.5], {1, 2})  # ranking 1, 3, 2, 0
    # k=1: {1}: P 1, R 1/2 -> F1 = 2 * 1 * 0.5 / 1.5 = 2/3
    assert val("token_f1", it, k=1) == pytest.approx(2 / 3, abs=1e-12)
    # k=3: {1, 3, 2}: P 2/3, R 1 -> F1 = 2 * (2/3) / (5/3) = 0.8
    assert val("token_f1", it, k=3) == pytest.approx(0.8, abs=1e-12)
    # k=10 > 4 units: every unit: P 1/2, R 1 -> 2/3, and k is clipped to 4
    v, d = get_metric("token_f1", k=10).value(it)
    assert v == pytest.approx(2 / 3, abs=1e-12)
    assert d["k"] == 4 and d["precision"] == 0.5 and d["recall"] == 1.0


def test_token_f1_ties_abs_and_edges():
    # ties: stable order 0, 1, 2, 3
    assert val("token_f1", hand_item([0.0] * 4, {0, 1})) == 1.0
    assert val("token_f1", hand_item([0.0] * 4, {2, 3})) == 0.0
    # by: signed top-1 is unit 2 (0.5), abs top-1 is unit 0 (|-0.9|)
    it = hand_item([-0.9, 0.1, 0.5], {0})
    assert val("token_f1", it) == 0.0
    assert val("token_f1", it, by="abs") == 1.0
    # empty / missing rationale -> NaN; one word -> 1
    assert math.isnan(val("token_f1", hand_item([0.1, 0.9], set())))
    assert math.isnan(val("token_f1", hand_item([0.1, 0.9], None)))
    assert val("token_f1", hand_item([0.3], {0})) == 1.0
    assert val("token_f1", hand_item([-0.3], {0}), k=5) == 1.0


def _iou_item(n, gold, pred):
    """n units; gold rationale = units in range gold; the top scores are the units in pred."""
    scores = np.zeros(n)
    scores[list(pred)] = 1.0
    return hand_item(scores, set(gold))


def test_iou_f1_partial_overlap_exactly_half_matches():
    # gold span (0, 6), predicted top-6 = (2, 8): intersection 4, union 8 -> IOU 0.5 -> match
    it = _iou_item(10, range(0, 6), range(2, 8))
    v, d = get_metric("iou_f1").value(it)
    assert v == 1.0
    assert d == {"precision": 1.0, "recall": 1.0, "pred_spans": 1, "gold_spans": 1,
                 "matched_pred": 1, "matched_gold": 1}


def test_iou_f1_partial_overlap_below_half_does_not_match():
    # gold (0, 75) and predicted (26, 100): intersection 49, union 100 -> IOU 0.49 -> no match
    it = _iou_item(100, range(0, 75), range(26, 100))
    assert val("iou_f1", it, k=74) == 0.0
    # predicted (25, 100): intersection 50, union 100 -> IOU 0.5 -> match
    it = _iou_item(100, range(0, 75), range(25, 100))
    assert val("iou_f1", it, k=75) == 1.0
    # contained: gold (0, 100), a 49-unit span inside -> 0.49; a 50-unit one -> 0.5
    assert val("iou_f1", _iou_item(100, range(100), range(49)), k=49) == 0.0
    assert val("iou_f1", _iou_item(100, range(100), range(50)), k=50) == 1.0


def test_iou_f1_several_spans():
    # gold spans (0, 2) and (5, 7); predicted top-4 = {0, 1, 3, 4} = spans (0, 2), (3, 5):
    # (0, 2) matches (IOU 1), (3, 5) overlaps nothing -> P 1/2, R 1/2, F1 1/2
    it = _iou_item(8, [0, 1, 5, 6], [0, 1, 3, 4])
    v, d = get_metric("iou_f1").value(it)
    assert v == pytest.approx(0.5, abs=1e-12)
    assert d["pred_spans"] == 2 and d["gold_spans"] == 2
    # predicted {0, 1, 2, 6}: (0, 3) vs (0, 2) IOU 2/3; (6, 7) vs (5, 7) IOU 1/2 -> all match
    assert val("iou_f1", _iou_item(8, [0, 1, 5, 6], [0, 1, 2, 6])) == 1.0
    # a custom stricter threshold: (6, 7) vs (5, 7) = 0.5 < 0.6 -> P = R = 1/2
    assert val("iou_f1", _iou_item(8, [0, 1, 5, 6], [0, 1, 2, 6]), threshold=0.6) == \
        pytest.approx(0.5, abs=1e-12)


def test_iou_f1_edges():
    # k > length: every unit is predicted: span (0, 4) vs gold (1, 3): IOU 2/4 -> match
    assert val("iou_f1", hand_item([0.1, 0.9, 0.3, 0.5], {1, 2}), k=10) == 1.0
    # ties: all equal -> the first |gold| units -> (0, 2) vs gold (2, 4): no match
    assert val("iou_f1", hand_item([0.0] * 4, {2, 3})) == 0.0
    assert val("iou_f1", hand_item([0.0] * 4, {0, 1})) == 1.0
    # abs vs signed
    it = hand_item([-0.9, 0.1, 0.5], {0})
    assert val("iou_f1", it) == 0.0
    assert val("iou_f1", it, by="abs") == 1.0
    assert math.isnan(val("iou_f1", hand_item([0.1, 0.9], set())))
    assert math.isnan(val("iou_f1", hand_item([0.1, 0.9], None)))
    assert val("iou_f1", hand_item([0.4], {0})) == 1.0


def manual_average_precision(scores, truth) -> float:
    """AP by thresholds: for each distinct score t (high to low), precision and recall of
    {score >= t}; AP = sum (R_t - R_prev) * P_t."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    ap, prev_r = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        sel = scores >= t
        tp = int((sel & truth).sum())
        p, r = tp / int(sel.sum()), tp / int(truth.sum())
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def test_average_precision_hand_values():
    assert val("average_precision", hand_item([0.9, 0.1, 0.8], {0})) == 1.0
    # sorted: 1 (T, .9), 3 (F, .5), 2 (T, .3), 0 (F, .1)
    # thresholds: .9 P 1 R 1/2; .5 P 1/2 R 1/2; .3 P 2/3 R 1; .1 P 1/2 R 1
    # AP = 1/2 * 1 + 0 + 1/2 * 2/3 + 0 = 5/6
    assert val("average_precision", hand_item([0.1, 0.9, 0.3, 0.5], {1, 2})) == \
        pytest.approx(5 / 6, abs=1e-7)
    # ties: scores [.5, .5, .2, .5], truth {0, 2}: threshold .5 takes {0, 1, 3}: P 1/3, R 1/2;
    # threshold .2 takes all: P 1/2, R 1 -> AP = 1/2 * 1/3 + 1/2 * 1/2 = 5/12
    # (breaking the tie by position would wrongly give 1/2 * 1 + 1/2 * 1/2 = 3/4)
    assert val("average_precision", hand_item([0.5, 0.5, 0.2, 0.5], {0, 2})) == \
        pytest.approx(5 / 12, abs=1e-7)
    # all tied: one threshold, P = 2/4, R = 1 -> 1/2
    assert val("average_precision", hand_item([0.3] * 4, {1, 3})) == pytest.approx(0.5, abs=1e-12)


def test_average_precision_abs_and_edges():
    # signed: unit 0 (-0.9) ranks last: P at its threshold = 1/3 -> AP 1/3; abs: first -> 1
    it = hand_item([-0.9, 0.1, 0.5], {0})
    assert val("average_precision", it) == pytest.approx(1 / 3, abs=1e-7)
    assert val("average_precision", it, by="abs") == 1.0
    assert math.isnan(val("average_precision", hand_item([0.1, 0.9], set())))
    assert math.isnan(val("average_precision", hand_item([0.1, 0.9], None)))
    assert val("average_precision", hand_item([0.2], {0})) == 1.0


def test_average_precision_matches_manual_average_precision_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 15))
        scores = np.round(rng.normal(size=n), 1).astype(np.float32)  # many ties
        truth = rng.random(n) < 0.4
        if not truth.any():
            truth[rng.integers(n)] = True
        it = hand_item(scores, set(np.nonzero(truth)[0].tolist()))
        assert val("average_precision", it) == pytest.approx(
            manual_average_precision(scores, truth), abs=1e-12)
        assert val("average_precision", it, by="abs") == pytest.approx(
            manual_average_precision(np.abs(scores), truth), abs=1e-12)


# ========================================= removal metrics: masks and arithmetic by hand
# scores [0.1, 0.9, 0.3, 0.5, 0.2]: ranking 1, 3, 2, 4, 0
R5 = [0.1, 0.9, 0.3, 0.5, 0.2]
FULL = np.array([0.3, 0.7])  # p(x); the explained class is 1


def test_n_top_is_ceil_clipped():
    assert n_top(0.2, 5) == 1
    assert n_top(0.5, 5) == 3  # ceil(2.5)
    assert n_top(0.01, 5) == 1  # at least one unit
    assert n_top(1.0, 5) == 5
    assert n_top(0.3, 10) == 3
    assert n_top(0.7, 10) == 7
    assert n_top(0.28, 25) == 7  # 0.28 * 25 = 7.000000000000001 in floating point
    assert n_top(0.56, 25) == 14  # 14.000000000000002
    assert n_top(0.5, 25) == 13
    assert n_top(0.5, 0) == 0


def test_comprehensiveness_and_sufficiency_by_hand():
    it = hand_item(R5)
    comp, suff = get_metric("comprehensiveness"), get_metric("sufficiency")
    # fraction 0.2 of 5 units -> k = 1 -> unit 1
    np.testing.assert_array_equal(comp.masks(it), [[True, False, True, True, True]])
    np.testing.assert_array_equal(suff.masks(it), [[False, True, False, False, False]])
    # fraction 0.5 -> k = ceil(2.5) = 3 -> units {1, 3, 2}
    np.testing.assert_array_equal(get_metric("comprehensiveness", fraction=0.5).masks(it),
                                  [[True, False, False, False, True]])
    np.testing.assert_array_equal(get_metric("sufficiency", fraction=0.5).masks(it),
                                  [[False, True, True, True, False]])
    # value: p_1(x) - p_1(x') = 0.7 - 0.4 = 0.3
    v, d = comp.from_probs(it, FULL, np.array([[0.6, 0.4]]))
    assert v == pytest.approx(0.3, abs=1e-12) and d["k"] == [1]
    v, _ = suff.from_probs(it, FULL, np.array([[0.2, 0.8]]))
    assert v == pytest.approx(-0.1, abs=1e-12)  # keeping the top unit raised p: negative
    # the explained class is the item's target, not the argmax: class 0 -> 0.3 - 0.6
    it0 = hand_item([R5, R5], targets=(0, 1))
    assert comp.from_probs(it0, FULL, np.array([[0.6, 0.4]]))[0] == pytest.approx(-0.3)


def test_removal_ranking_by_abs_and_one_word():
    it = hand_item([-0.9, 0.1, 0.5])  # k = ceil(0.2 * 3) = 1
    np.testing.assert_array_equal(get_metric("comprehensiveness").masks(it),
                                  [[True, True, False]])
    np.testing.assert_array_equal(get_metric("comprehensiveness", by="abs").masks(it),
                                  [[False, True, True]])
    # ties: the earlier unit is removed first
    np.testing.assert_array_equal(get_metric("comprehensiveness").masks(hand_item([0.2] * 3)),
                                  [[False, True, True]])
    one = hand_item([0.4])
    np.testing.assert_array_equal(get_metric("comprehensiveness").masks(one), [[False]])
    np.testing.assert_array_equal(get_metric("sufficiency").masks(one), [[True]])


def test_aopc_by_hand():
    it = hand_item(R5)
    # default bins 1, 5, 10, 20, 50 % of 5 units: ceil(.05 .25 .5 1 2.5) -> k 1, 1, 1, 1, 3
    top1 = [True, False, True, True, True]
    top3 = [True, False, False, False, True]
    ac, asuf = get_metric("aopc_comprehensiveness"), get_metric("aopc_sufficiency")
    np.testing.assert_array_equal(ac.masks(it), [top1] * 4 + [top3])
    np.testing.assert_array_equal(asuf.masks(it), ~np.array([top1] * 4 + [top3]))
    probs = np.array([[0.6, 0.4]] * 4 + [[0.9, 0.1]])
    v, d = ac.from_probs(it, FULL, probs)
    assert v == pytest.approx((0.3 * 4 + 0.6) / 5, abs=1e-12)  # 0.36
    assert d["k"] == [1, 1, 1, 1, 3]
    np.testing.assert_allclose(d["values"], [0.3, 0.3, 0.3, 0.3, 0.6], atol=1e-12)
    # custom bins: 40 % and 100 % -> k 2 and 5
    m = get_metric("aopc_comprehensiveness", bins=(0.4, 1.0)).masks(it)
    np.testing.assert_array_equal(m, [[True, False, True, False, True], [False] * 5])


def test_flip_rate_by_hand():
    it = hand_item(R5, {0, 4})
    fr = get_metric("flip_rate")
    np.testing.assert_array_equal(fr.masks(it), [[True, False, True, True, True]])
    v, d = fr.from_probs(it, FULL, np.array([[0.6, 0.4]]))  # argmax 1 -> 0
    assert v == 1.0 and d == {"before": 1, "after": 0, "k": 1}
    assert fr.from_probs(it, FULL, np.array([[0.4, 0.6]]))[0] == 0.0
    # rationale=True removes the reference units {0, 4}
    frr = get_metric("flip_rate", rationale=True)
    np.testing.assert_array_equal(frr.masks(it), [[False, True, True, True, False]])
    v, d = frr.from_probs(it, FULL, np.array([[0.55, 0.45]]))
    assert v == 1.0 and d["k"] == 2
    with pytest.raises(fs.InputError):
        frr.masks(hand_item(R5))  # no rationale


def test_curves_by_hand():
    it = hand_item(R5)  # ranking 1, 3, 2, 4, 0
    dc = get_metric("deletion_curve", steps=5)
    order = [1, 3, 2, 4, 0]
    tops = [mask_of(5, order[:k]) for k in range(1, 6)]
    np.testing.assert_array_equal(dc.masks(it), ~np.array(tops))
    # y = [p(x)=.7, .6, .5, .4, .2, .1] at x = 0, .2, ..., 1:
    # area = .2 * (.65 + .55 + .45 + .3 + .15) = 0.42
    probs = np.array([[1 - p, p] for p in (0.6, 0.5, 0.4, 0.2, 0.1)])
    v, d = dc.from_probs(it, FULL, probs)
    np.testing.assert_allclose(d["x"], [0, 0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-12)
    np.testing.assert_allclose(d["y"], [0.7, 0.6, 0.5, 0.4, 0.2, 0.1], atol=1e-12)
    assert v == pytest.approx(0.42, abs=1e-12)

    ic = get_metric("insertion_curve", steps=5)
    np.testing.assert_array_equal(ic.masks(it), np.array([np.zeros(5, bool)] + tops))
    # y = [.1, .3, .5, .6, .65, .7]: area = .2 * (.2 + .4 + .55 + .625 + .675) = 0.49
    probs = np.array([[1 - p, p] for p in (0.1, 0.3, 0.5, 0.6, 0.65, 0.7)])
    v, d = ic.from_probs(it, FULL, probs)
    np.testing.assert_allclose(d["x"], [0, 0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-12)
    np.testing.assert_allclose(d["y"], [0.1, 0.3, 0.5, 0.6, 0.65, 0.7], atol=1e-12)
    assert v == pytest.approx(0.49, abs=1e-12)

    # max_fraction 0.4 in 2 steps: k 1, 2 -> x [0, .2, .4], y [.7, .6, .5]
    # area = .2 * (.65 + .55) / .4 = 0.6
    dc2 = get_metric("deletion_curve", steps=2, max_fraction=0.4)
    assert dc2.masks(it).shape == (2, 5)
    v, d = dc2.from_probs(it, FULL, np.array([[0.4, 0.6], [0.5, 0.5]]))
    np.testing.assert_allclose(d["x"], [0, 0.2, 0.4], atol=1e-12)
    assert v == pytest.approx(0.6, abs=1e-12)

    # default 10 steps on 5 units: k = ceil(.5), ceil(1), ..., ceil(5) = 1,1,2,2,3,3,4,4,5,5
    m = get_metric("deletion_curve").masks(it)
    np.testing.assert_array_equal((~m).sum(1), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5])

    # perturbation curve: removals up to 50 % in 5 steps: k = ceil(.5), 1, 2, 2, 3 (of 5) ->
    # masks drop units {1}, {1}, {1, 3}, {1, 3}, {1, 3, 2}; drops of p = .7 - [.6, .6, .5, .5,
    # .4] = [.1, .1, .2, .2, .3] -> mean 0.18
    pc = get_metric("perturbation_curve", steps=5)
    np.testing.assert_array_equal((~pc.masks(it)).sum(1), [1, 1, 2, 2, 3])
    np.testing.assert_array_equal(~pc.masks(it)[4], mask_of(5, [1, 3, 2]))
    probs = np.array([[1 - p, p] for p in (0.6, 0.6, 0.5, 0.5, 0.4)])
    v, d = pc.from_probs(it, FULL, probs)
    assert v == pytest.approx(0.18, abs=1e-12)
    np.testing.assert_allclose(d["x"], [0, 0.2, 0.2, 0.4, 0.4, 0.6], atol=1e-12)


# ======================= removal metrics on the tiny BERT vs an independent reference
INPUTS_BERT = [
    fs.Example(id="one", text="unboxing", label=0),  # 1 word unit, 3 word-piece tokens
    fs.Example(id="short", text="a gorgeous, witty film", label=1),  # 5 units
    fs.Example(id="ten", text="the plot is thin but the cast is very good", label=0),
    fs.Example(id="long", label=1,  # 25 word units
               text="the film is long , slow and dull , but the cast shines in every scene "
                    "and the music carries it to a moving end"),
    fs.Example(id="pair", text=PAIR[0], pair=PAIR[1], label=1),
    # the random tiny BERT predicts class 0 on most inputs; on these two, removing the top
    # units (or the rationale) flips the prediction, so flip_rate is not trivially 0
    fs.Example(id="cast", text="a good cast", label=1),
    fs.Example(id="stuffed", text="stuffed to the brim with ideas", label=0),
    fs.Example(id="obvious", label=0,
               text="it makes me say the obvious : abandon all hope of a good movie ye who "
                    "enter here ."),
]
FERRET_BINS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _softmax64(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


class Reference:
    """ERASER formulas computed from scratch: token ids are edited here from the
    explanation's units and the Hugging Face model is called directly, one input at a time."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.cache: dict = {}

    def probs(self, exp, keep, operator="mask") -> np.ndarray:
        key = (exp.text, exp.pair, tuple(bool(k) for k in keep), operator)
        if key in self.cache:
            return self.cache[key]
        tok = self.adapter.tokenizer
        enc = tok(exp.text, exp.pair) if exp.pair is not None else tok(exp.text)
        ids = np.array(enc["input_ids"], dtype=np.int64)
        types = np.array(enc["token_type_ids"], dtype=np.int64)
        removed = sorted(t for u, k in zip(exp.units, keep, strict=True) if not k
                         for t in u.tokens)
        if operator == "mask":
            ids[removed] = tok.mask_token_id
        else:  # delete
            sel = np.ones(len(ids), dtype=bool)
            sel[removed] = False
            ids, types = ids[sel], types[sel]
        with torch.no_grad():
            out = self.adapter.model(input_ids=torch.from_numpy(ids)[None],
                                     attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     token_type_ids=torch.from_numpy(types)[None])
        logits = out.logits if hasattr(out, "logits") else out
        p = _softmax64(logits[0].double().numpy())
        self.cache[key] = p
        return p

    @staticmethod
    def order(exp, by="value"):
        s = [float(v) for v in exp.scores[0]]
        key = [abs(v) for v in s] if by == "abs" else s
        return sorted(range(len(s)), key=lambda i: (-key[i], i))

    @staticmethod
    def k(fraction: Fraction, n: int) -> int:
        return min(n, max(1, math.ceil(fraction * n)))

    def keep_without_top(self, exp, k, by="value"):
        keep = [True] * len(exp.units)
        for i in self.order(exp, by)[:k]:
            keep[i] = False
        return keep

    def keep_only_top(self, exp, k, by="value"):
        return [not v for v in self.keep_without_top(exp, k, by)]

    def value(self, exp, name, params, operator):
        y, n = exp.targets[0], len(exp.units)
        by = params.get("by", "value")
        full = self.probs(exp, [True] * n, operator)[y]

        def comp(f):
            return full - self.probs(exp, self.keep_without_top(exp, self.k(f, n), by),
                                     operator)[y]

        def suff(f):
            return full - self.probs(exp, self.keep_only_top(exp, self.k(f, n), by), operator)[y]

        frac = Fraction(str(params.get("fraction", 0.2)))
        bins = [Fraction(str(b)) for b in params.get("bins", (0.01, 0.05, 0.1, 0.2, 0.5))]
        if name == "comprehensiveness":
            return comp(frac)
        if name == "sufficiency":
            return suff(frac)
        if name == "aopc_comprehensiveness":
            return float(np.mean([comp(b) for b in bins]))
        if name == "aopc_sufficiency":
            return float(np.mean([suff(b) for b in bins]))
        if name == "flip_rate":
            before = int(np.argmax(self.probs(exp, [True] * n, operator)))
            keep = self.keep_without_top(exp, self.k(frac, n), by)
            return float(before != int(np.argmax(self.probs(exp, keep, operator))))
        if name in ("deletion_curve", "insertion_curve"):
            x, yy = self.curve(exp, name, params, operator)
            return float(np.trapezoid(yy, x) / x[-1])
        raise AssertionError(name)

    def curve(self, exp, name, params, operator):
        y, n = exp.targets[0], len(exp.units)
        steps = params.get("steps", 10)
        maxf = Fraction(str(params.get("max_fraction", 1.0)))
        ks = [self.k(maxf * Fraction(i + 1, steps), n) for i in range(steps)]
        x = [0.0] + [k / n for k in ks]
        if name == "deletion_curve":
            ys = [self.probs(exp, [True] * n, operator)[y]]
            ys += [self.probs(exp, self.keep_without_top(exp, k), operator)[y] for k in ks]
        else:
            ys = [self.probs(exp, [False] * n, operator)[y]]
            ys += [self.probs(exp, self.keep_only_top(exp, k), operator)[y] for k in ks]
        return np.array(x), np.array(ys)


@pytest.fixture(scope="module")
def bert_exps(bert_adapter):
    exps = fs.explain(bert_adapter, INPUTS_BERT,
                      ["leave_one_out", ("lime", {"n_samples": 48})], seed=0)
    # one more: explaining the class that is NOT predicted (class 1 - prediction)
    other = []
    for ex, e in zip(INPUTS_BERT, exps[::2], strict=True):
        other += fs.explain(bert_adapter, [ex], ["leave_one_out"], target=1 - e.predicted)
    return exps + [dataclasses.replace(e, explainer="loo_other") for e in other]


@pytest.fixture(scope="module")
def bert_ref(bert_adapter):
    return Reference(bert_adapter)


REMOVAL_SPECS = [
    ("comprehensiveness", {}),
    ("comprehensiveness", {"fraction": 0.5}),
    ("sufficiency", {}),
    ("sufficiency", {"fraction": 0.35}),
    ("aopc_comprehensiveness", {}),
    ("aopc_sufficiency", {}),
    ("aopc_comprehensiveness", {"bins": FERRET_BINS}),
    ("aopc_sufficiency", {"bins": FERRET_BINS}),
    ("aopc_comprehensiveness", {"by": "abs"}),
    ("aopc_sufficiency", {"bins": (0.28, 0.56)}),  # 25 units: 7 and 14 (not 8 and 15)
    ("flip_rate", {}),
    ("flip_rate", {"fraction": 0.5}),
    ("deletion_curve", {}),
    ("insertion_curve", {}),
    ("deletion_curve", {"steps": 4, "max_fraction": 0.6}),
    ("insertion_curve", {"steps": 3}),
]


def test_bert_explanations_cover_the_intended_lengths(bert_exps):
    n_units = {e.example_id: len(e.units) for e in bert_exps}
    assert n_units["one"] == 1 and len(bert_exps[0].units[0].tokens) == 3
    assert n_units["short"] == 5 and n_units["ten"] == 10 and n_units["long"] == 25
    assert {e.explainer for e in bert_exps} == {"leave_one_out", "lime", "loo_other"}


@pytest.mark.parametrize("operator", ["mask", "delete"])
@pytest.mark.parametrize(("name", "params"), REMOVAL_SPECS,
                         ids=[f"{n}-{'-'.join(map(str, p.values())) or 'default'}"[:60]
                              for n, p in REMOVAL_SPECS])
def test_removal_metrics_match_reference(bert_adapter, bert_exps, bert_ref, name, params,
                                         operator):
    df = fs.evaluate(bert_exps, bert_adapter, metrics=[(name, params)], random=False,
                     operator=operator)
    assert len(df) == len(bert_exps)
    if name == "flip_rate":  # some flips, some not
        assert 0 < df.value.sum() < len(df)
    else:  # the explanations really differ in what they remove
        assert df.value.nunique() > len(df) // 2
    for (_, row), e in zip(df.iterrows(), bert_exps, strict=True):
        assert (row["example_id"], row["explainer"], row["metric"]) == \
            (e.example_id, e.explainer, name)
        assert row["target"] == e.targets[0]
        expected = bert_ref.value(e, name, params, operator)
        assert row["value"] == pytest.approx(expected, abs=1e-6), (e.example_id, e.explainer)
        if name in ("deletion_curve", "insertion_curve"):
            x, y = bert_ref.curve(e, name, params, operator)
            np.testing.assert_allclose(row["detail"]["x"], x, atol=1e-12)
            np.testing.assert_allclose(row["detail"]["y"], y, atol=1e-6)
            assert row["value"] == pytest.approx(
                np.trapezoid(row["detail"]["y"], row["detail"]["x"]) / row["detail"]["x"][-1],
                abs=1e-12)
        if name.startswith("aopc"):
            n = len(e.units)
            bins = params.get("bins", (0.01, 0.05, 0.1, 0.2, 0.5))
            assert row["detail"]["k"] == [Reference.k(Fraction(str(b)), n) for b in bins]


def test_removal_metrics_in_one_batch_equal_one_at_a_time(bert_adapter, bert_exps):
    """All metrics scored together (deduplicated masks) give the values they give alone."""
    names = ["comprehensiveness", "sufficiency", "aopc_comprehensiveness", "aopc_sufficiency",
             "flip_rate", "deletion_curve", "insertion_curve"]
    together = fs.evaluate(bert_exps, bert_adapter, metrics=names, random=False)
    for name in names:
        alone = fs.evaluate(bert_exps, bert_adapter, metrics=[name], random=False)
        np.testing.assert_allclose(together[together.metric == name]["value"].to_numpy(),
                                   alone["value"].to_numpy(), atol=1e-6)


def test_removal_metrics_token_granularity(bert_adapter, bert_ref):
    exps = fs.explain(bert_adapter, INPUTS_BERT[:4], ["leave_one_out"], granularity="token")
    assert len(exps[0].units) == 3  # "unboxing" -> un ##box ##ing
    df = fs.evaluate(exps, bert_adapter, metrics=["aopc_comprehensiveness"], random=False)
    for (_, row), e in zip(df.iterrows(), exps, strict=True):
        assert row["granularity"] == "token"
        assert row["value"] == pytest.approx(
            bert_ref.value(e, "aopc_comprehensiveness", {}, "delete"), abs=1e-6)  # default


def test_random_baseline_rows_match_reference(bert_adapter, bert_exps, bert_ref):
    df = fs.evaluate(bert_exps[:4], bert_adapter, metrics=["comprehensiveness"], seed=3)
    rand = df[df.explainer == "random"]
    assert list(rand.example_id) == ["one", "short"]
    for _, row in rand.iterrows():
        ex = next(x for x in INPUTS_BERT if x.id == row["example_id"])
        e = fs.explain(bert_adapter, [fs.Example(ex.id, ex.text, ex.pair)], ["random"],
                       target=[row["target"]], seed=3)[0]
        assert row["value"] == pytest.approx(
            bert_ref.value(e, "comprehensiveness", {}, "delete"), abs=1e-6)  # default


# rationales: "gorgeous, witty", "very good", "oddly moving" (in the pair segment), ...
# On "a good cast", removing the rationale "cast" leaves the prediction while keeping only
# "cast" flips it; removing "ideas" flips "stuffed to the brim with ideas".
RATIONALES = {"short": (0, 2, 17), "ten": (0, 33, 42), "pair": (1, 4, 16), "one": (0, 0, 8),
              "long": (0, 12, 30), "cast": (0, 7, 11), "stuffed": (0, 25, 30), "obvious": (0, 50, 62)}


def _char_rationale_units(units, part, a, b):
    return np.array([u.part == part and u.start < b and a < u.end for u in units])


@pytest.fixture
def with_rationale_mask(monkeypatch):
    """evaluate() aligns rationales with faithscope.data.rationale_mask; another engineer is
    adding it. If it is not there yet, stand in with the documented overlap rule."""
    if not hasattr(fs_data, "rationale_mask"):
        def rationale_mask(units, rationale):
            out = np.zeros(len(units), dtype=bool)
            for p, a, b in rationale or ():
                out |= _char_rationale_units(units, p, a, b)
            return out
        monkeypatch.setattr(fs_data, "rationale_mask", rationale_mask, raising=False)


@pytest.mark.parametrize("operator", ["mask", "delete"])
def test_flip_rate_rationale_matches_reference(bert_adapter, bert_exps, bert_ref,
                                               with_rationale_mask, operator):
    spans = RATIONALES
    examples = [dataclasses.replace(ex, rationale=(spans[ex.id],)) for ex in INPUTS_BERT]
    df = fs.evaluate(bert_exps, bert_adapter, metrics=[("flip_rate", {"rationale": True})],
                     examples=examples, random=False, operator=operator)
    removing_differs_from_keeping = False
    for (_, row), e in zip(df.iterrows(), bert_exps, strict=True):
        ref = _char_rationale_units(e.units, *spans[e.example_id])
        assert ref.any()
        n = len(e.units)
        before = int(np.argmax(bert_ref.probs(e, [True] * n, operator)))
        after = int(np.argmax(bert_ref.probs(e, list(~ref), operator)))
        assert row["value"] == float(before != after), e.example_id
        kept_only = int(np.argmax(bert_ref.probs(e, list(ref), operator)))
        removing_differs_from_keeping |= after != kept_only
        assert row["detail"]["k"] == int(ref.sum())
    assert removing_differs_from_keeping  # so the test tells the two apart
    assert df.loc[df.example_id == "short", "detail"].iloc[0]["k"] == 3  # gorgeous , witty
    assert 0 < df.value.sum() < len(df)  # some rationales flip the prediction, some do not


def test_plausibility_through_evaluate(bert_adapter, bert_exps, with_rationale_mask):
    spans = RATIONALES
    examples = [dataclasses.replace(ex, rationale=(spans[ex.id],)) for ex in INPUTS_BERT]
    names = ["token_f1", "iou_f1", "auprc", "gt_overlap", "mean_rank"]
    df = fs.evaluate(bert_exps, None, metrics=names, examples=examples)
    assert len(df) == len(bert_exps) * len(names)  # no model: no random baseline
    for i, e in enumerate(bert_exps):
        ref = _char_rationale_units(e.units, *spans[e.example_id])
        item = EvalItem(e, None, ref, e.targets[0])
        for j, name in enumerate(names):
            row = df.iloc[i * len(names) + j]
            assert row["metric"] == name
            expected = get_metric(name).value(item)[0]
            assert row["value"] == pytest.approx(expected, abs=1e-12, nan_ok=True)


# ============================================ deletion/insertion curves on LinearBag
CURVE_TEXT = "a gorgeous, witty film"  # units: a | gorgeous | , | witty | film


@pytest.fixture(scope="module")
def linear_exp(linear_adapter):
    e = fs.explain(linear_adapter, CURVE_TEXT, "leave_one_out", target_fn="logit")[0]
    assert e.unit_texts == ["a", "gorgeous", ",", "witty", "film"]
    # hand-set scores: ranking gorgeous (1), witty (3), film (4), a (0), "," (2)
    return dataclasses.replace(e, scores=np.array([[0.1, 0.9, -0.3, 0.5, 0.2]], np.float32))


def _linear_probs(adapter, exp, keep_sets):
    """p(class) when only the units in each keep set are present: LinearBag's logits are
    b + sum of the token contributions of [CLS], [SEP] and the kept units ([MASK] adds 0)."""
    model = adapter.model
    ids = np.array(adapter.tokenizer(exp.text)["input_ids"])
    contrib = model.token_contributions(ids)  # tokens x classes
    unit_tok = {t for u in exp.units for t in u.tokens}
    base = model.b.detach().double().numpy() + sum(
        contrib[t] for t in range(len(ids)) if t not in unit_tok)
    out = []
    for keep in keep_sets:
        z = base + sum((contrib[t] for i in keep for t in exp.units[i].tokens),
                       np.zeros_like(base))
        out.append(_softmax64(z))
    return np.array(out)


@pytest.mark.parametrize("operator", ["mask", "delete"])
def test_curves_on_linear_bag(linear_adapter, linear_exp, operator):
    e, y_cls = linear_exp, linear_exp.targets[0]
    order = [1, 3, 4, 0, 2]
    df = fs.evaluate([e], linear_adapter, metrics=[("deletion_curve", {"steps": 5}),
                                                   ("insertion_curve", {"steps": 5})],
                     random=False, operator=operator)
    dele, ins = df.iloc[0], df.iloc[1]
    # deletion: remove the top 0, 1, ..., 5 units -> keep order[k:]
    exp_del = _linear_probs(linear_adapter, e, [order[k:] for k in range(6)])[:, y_cls]
    # insertion: keep the top 0, 1, ..., 5 units
    exp_ins = _linear_probs(linear_adapter, e, [order[:k] for k in range(6)])[:, y_cls]
    x = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    for row, y in ((dele, exp_del), (ins, exp_ins)):
        np.testing.assert_allclose(row["detail"]["x"], x, atol=1e-12)
        np.testing.assert_allclose(row["detail"]["y"], y, atol=1e-6)
        assert row["value"] == pytest.approx(np.trapezoid(y, x) / x[-1], abs=1e-6)
    # the deletion curve starts at p(x), the insertion curve ends there, and vice versa
    assert exp_del[0] == pytest.approx(exp_ins[-1]) and exp_ins[0] == pytest.approx(exp_del[-1])
    assert exp_del[0] == pytest.approx(float(e.probs[y_cls]), abs=1e-6)


def test_curve_default_steps_on_linear_bag(linear_adapter, linear_exp):
    e, y_cls = linear_exp, linear_exp.targets[0]
    order = [1, 3, 4, 0, 2]
    row = fs.evaluate([e], linear_adapter, metrics=["deletion_curve"], random=False).iloc[0]
    # 10 steps on 5 units: k = 1, 1, 2, 2, 3, 3, 4, 4, 5, 5
    ks = [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    x = [k / 5 for k in ks]
    y = _linear_probs(linear_adapter, e, [order[k:] for k in ks])[:, y_cls]
    np.testing.assert_allclose(row["detail"]["x"], x, atol=1e-12)
    np.testing.assert_allclose(row["detail"]["y"], y, atol=1e-6)
    assert row["value"] == pytest.approx(np.trapezoid(y, x), abs=1e-6)
    # the comprehensiveness of the same explanation is the drop at k = 1
    comp = fs.evaluate([e], linear_adapter, metrics=["comprehensiveness"], random=False)
    assert comp["value"].iloc[0] == pytest.approx(y[0] - y[1], abs=1e-6)


# ================================================================ evaluate() contract
@pytest.fixture(scope="module")
def contract_df(bert_adapter, bert_exps):
    exps = bert_exps  # loo_other explains the class that is not predicted
    df = fs.evaluate(exps, bert_adapter, metrics=["comprehensiveness", "sufficiency",
                                                  "gt_overlap"],
                     examples=INPUTS_BERT, seed=0)
    return exps, df


def test_evaluate_rows_and_columns(contract_df):
    exps, df = contract_df
    assert list(df.columns) == COLUMNS
    n_ex = len(INPUTS_BERT)
    assert len(df) == (len(exps) + n_ex) * 3
    assert df.groupby(["example_id", "explainer", "metric"]).size().eq(1).all()
    rand = df[df.explainer == "random"]
    assert len(rand) == n_ex * 3
    assert set(rand.example_id) == {ex.id for ex in INPUTS_BERT}
    assert set(df.explainer) == {"leave_one_out", "lime", "loo_other", "random"}
    # one row per (explanation, metric), example-major in the order given
    real = df[df.explainer != "random"]
    assert list(real.example_id[::3]) == [e.example_id for e in exps]
    assert list(real.explainer[::3]) == [e.explainer for e in exps]
    assert list(real.metric[:3]) == ["comprehensiveness", "sufficiency", "gt_overlap"]
    # metric metadata
    for name in ("comprehensiveness", "sufficiency", "gt_overlap"):
        m = get_metric(name)
        sub = df[df.metric == name]
        assert set(sub.family) == {m.family}
        assert set(sub.higher_is_better) == {m.higher_is_better}
    assert set(df.model_id) == {"tiny-bert"} and set(df.granularity) == {"word"}
    # no rationale: gt_overlap is NaN
    assert df[df.metric == "gt_overlap"]["value"].isna().all()


def test_evaluate_labels_and_correct(contract_df):
    exps, df = contract_df
    gold = {ex.id: ex.label for ex in INPUTS_BERT}
    pred = {e.example_id: e.predicted for e in exps}
    by = {(e.example_id, e.explainer): e for e in exps}
    for _, row in df.iterrows():
        e = by[(row["example_id"], "leave_one_out" if row["explainer"] == "random"
                else row["explainer"])]
        if row["explainer"] != "random":
            assert row["target"] == e.targets[0]
        assert row["label"] == gold[row["example_id"]]
        assert row["predicted"] == pred[row["example_id"]]
        # correct compares the PREDICTION with the gold label, whatever class was explained
        assert row["correct"] == (pred[row["example_id"]] == gold[row["example_id"]])
        assert row["n_units"] == len(e.units)
    assert (df.target != df.predicted).any()  # loo_other rows explain the other class
    assert df.correct.nunique() == 2  # the labels were chosen so that some are wrong


def test_evaluate_without_examples_has_no_labels(bert_adapter, bert_exps):
    df = fs.evaluate(bert_exps[:2], bert_adapter, metrics=["comprehensiveness"], random=False)
    assert len(df) == 2 and "random" not in set(df.explainer)
    assert df.label.isna().all() and df.correct.isna().all()


def test_evaluate_does_not_duplicate_a_random_explainer(bert_adapter):
    exps = fs.explain(bert_adapter, INPUTS_BERT[:2], ["random", "leave_one_out"])
    df = fs.evaluate(exps, bert_adapter, metrics=["sufficiency"])
    assert len(df) == 4 and (df.explainer == "random").sum() == 2


def test_evaluate_deterministic_under_seed(bert_adapter, bert_exps):
    exps = bert_exps[:4]
    a = fs.evaluate(exps, bert_adapter, metrics=["aopc_comprehensiveness", "flip_rate"], seed=5)
    b = fs.evaluate(exps, bert_adapter, metrics=["aopc_comprehensiveness", "flip_rate"], seed=5)
    c = fs.evaluate(exps, bert_adapter, metrics=["aopc_comprehensiveness", "flip_rate"], seed=6)
    pd.testing.assert_frame_equal(a.drop(columns="detail"), b.drop(columns="detail"))
    assert list(a.detail) == list(b.detail)
    real = a.explainer != "random"
    np.testing.assert_array_equal(a[real].value, c[real].value)
    ra = a[(a.explainer == "random") & (a.metric == "aopc_comprehensiveness")].value.to_numpy()
    rc = c[(c.explainer == "random") & (c.metric == "aopc_comprehensiveness")].value.to_numpy()
    assert not np.allclose(ra, rc)  # another seed, another random ranking


def test_metric_declarations():
    directions = {"comprehensiveness": True, "sufficiency": False,
                  "aopc_comprehensiveness": True, "aopc_sufficiency": False,
                  "flip_rate": True, "deletion_curve": False, "insertion_curve": True,
                  "perturbation_curve": True,
                  "gt_overlap": True, "mean_rank": False, "recovery_depth": False,
                  "token_f1": True, "iou_f1": True, "auprc": True, "average_precision": True,
                  "coverage": True}
    plain = [n for n in METRICS.names() if "explainer" not in get_metric(n).needs]
    assert set(directions) == set(plain)
    for name in plain:
        m = get_metric(name)
        assert m.name == name
        assert m.family in FAMILIES
        assert m.higher_is_better is directions[name], name
        lo, hi = m.bounds
        assert lo < hi and math.isfinite(lo) and math.isfinite(hi)
        assert m.needs <= {"model", "rationale"}
        assert ("model" in m.needs) == (m.family == "faithfulness")
        assert isinstance(m.reference, str) and m.reference
        assert m.params()["by"] == "value"


def test_values_lie_within_bounds(bert_adapter, bert_exps):
    removal = [n for n in METRICS.names() if get_metric(n).needs == {"model"}]
    df = fs.evaluate(bert_exps, bert_adapter, metrics=removal, seed=1)
    for name in removal:
        lo, hi = get_metric(name).bounds
        v = df[df.metric == name].value
        assert v.notna().all() and v.between(lo, hi).all(), name
    rng = np.random.default_rng(1)
    free = [n for n in METRICS.names() if "model" not in get_metric(n).needs]
    for _ in range(100):
        n = int(rng.integers(1, 12))
        truth = set(np.nonzero(rng.random(n) < 0.5)[0].tolist()) or {0}
        it = hand_item(rng.normal(size=n), truth)
        sel = hand_exp((rng.random(n) < 0.4).astype(np.float32))
        picked = EvalItem(dataclasses.replace(sel, binary=True), None, it.reference, 1)
        for name in free:
            lo, hi = get_metric(name).bounds
            for by in ("value", "abs"):
                v = val(name, it, by=by)
                if name == "coverage":  # NaN for rankings: only selections are covered
                    assert math.isnan(v)
                else:
                    assert lo <= v <= hi, name
                assert lo <= val(name, picked, by=by) <= hi, name


# ======================================================================== summarize()
def test_summarize_matches_groupby_and_ci_contains_mean(contract_df):
    _, df = contract_df
    s = fs.summarize(df, n_boot=300)
    assert list(s.columns)[:6] == ["explainer", "metric", "mean", "ci_low", "ci_high", "n"]
    assert len(s) == 4 * 3
    means = df.groupby(["explainer", "metric"]).value.mean()
    for _, r in s.iterrows():
        if r["metric"] == "gt_overlap":  # all NaN
            assert r["n"] == 0 and math.isnan(r["mean"])
            continue
        assert r["mean"] == pytest.approx(means[(r["explainer"], r["metric"])], abs=1e-12)
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
        assert r["n"] == len(INPUTS_BERT)
        assert r["higher_is_better"] == get_metric(r["metric"]).higher_is_better


def test_summarize_ci_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def frame(n):
        return pd.DataFrame({"explainer": "e", "metric": "m", "higher_is_better": True,
                             "value": rng.normal(0.3, 0.2, size=n)})

    small = fs.summarize(frame(20), n_boot=500).iloc[0]
    big = fs.summarize(frame(2000), n_boot=500).iloc[0]
    for r in (small, big):
        assert r["ci_low"] < r["mean"] < r["ci_high"]
    assert (big["ci_high"] - big["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 5
    # bootstrap_ci is deterministic under its seed and degenerates on one value
    v = rng.normal(size=50)
    assert bootstrap_ci(v, seed=1) == bootstrap_ci(v, seed=1)
    assert bootstrap_ci(np.array([0.4, NAN])) == (0.4, 0.4, 0.4)


def test_summarize_by_label(contract_df):
    _, df = contract_df
    s = fs.summarize(df[df.metric != "gt_overlap"], by=("explainer", "metric", "label"),
                     n_boot=200)
    assert list(s.columns)[:4] == ["explainer", "metric", "label", "mean"]
    assert set(s.label) == {0, 1}
    assert len(s) == 4 * 2 * 2
    for _, r in s.iterrows():
        g = df[(df.explainer == r["explainer"]) & (df.metric == r["metric"])
               & (df.label == r["label"])]
        assert r["n"] == len(g)
        assert r["mean"] == pytest.approx(g.value.mean(), abs=1e-12)


# ============================================================================ errors
def test_unknown_metric_suggests_close_name(bert_adapter, bert_exps):
    with pytest.raises(fs.InputError, match="comprehensiveness"):
        get_metric("comprehensivness")
    with pytest.raises(fs.InputError, match="did you mean 'token_f1'"):
        fs.evaluate(bert_exps[:1], bert_adapter, metrics=["token_f2"])


@pytest.mark.parametrize(("name", "params"), [
    ("token_f1", {"kk": 3}),  # unknown hyper-parameter
    ("comprehensiveness", {"by": "magnitude"}),
    ("aopc_comprehensiveness", {"bins": ()}),
    ("aopc_sufficiency", {"bins": (0.0, 0.5)}),
    ("aopc_comprehensiveness", {"bins": (0.5, 1.5)}),
    ("deletion_curve", {"steps": 0}),
    ("insertion_curve", {"max_fraction": 0.0}),
    ("insertion_curve", {"max_fraction": 1.2}),
    # values that used to be accepted silently
    ("comprehensiveness", {"fraction": 0.0}),
    ("sufficiency", {"fraction": 1.5}),
    ("flip_rate", {"fraction": -0.2}),
    ("token_f1", {"k": 0}),
    ("iou_f1", {"k": -1}),  # would select all units but the last
    ("iou_f1", {"k": 0}),  # would divide by zero predicted spans
], ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()))
def test_bad_hyper_parameters(name, params):
    with pytest.raises(fs.InputError):
        get_metric(name, **params)
    with pytest.raises(fs.InputError):
        fs.evaluate([], None, metrics=[(name, params)])


def test_other_input_errors(bert_adapter, bert_exps):
    with pytest.raises(fs.InputError):
        fs.evaluate(bert_exps[:1], None, metrics=["comprehensiveness"])  # needs the model
    with pytest.raises(fs.InputError):
        fs.evaluate(bert_exps[:1], bert_adapter, metrics=["sufficiency"], operator="blank")
    with pytest.raises(fs.InputError):  # flip_rate(rationale=True) without rationales
        fs.evaluate(bert_exps[:1], bert_adapter, metrics=[("flip_rate", {"rationale": True})],
                    random=False)
    # an explanation made with another tokenizer's units is refused
    e = bert_exps[1]
    shifted = dataclasses.replace(e, units=tuple(
        dataclasses.replace(u, tokens=tuple(t + 1 for t in u.tokens)) for u in e.units))
    with pytest.raises(fs.InputError):
        fs.evaluate([shifted], bert_adapter, metrics=["comprehensiveness"], random=False)


def test_removal_rows_record_the_operator_used_and_delete_by_default(bert_adapter, bert_exps,
                                                                     llama_adapter):
    """ERASER deletes the removed tokens: the default; the operator applied is a column of
    every removal metric's row (empty for metrics that remove nothing)."""
    df = fs.evaluate(bert_exps[:2], bert_adapter, ["comprehensiveness", "sufficiency",
                                                   "aopc_comprehensiveness"], random=False)
    assert set(df["operator"]) == {"delete"}
    masked = fs.evaluate(bert_exps[:2], bert_adapter, ["comprehensiveness"], random=False,
                         operator="mask")
    assert set(masked["operator"]) == {"mask"}
    assert not np.allclose(masked["value"], df[df.metric == "comprehensiveness"]["value"])
    # a tokenizer without a mask token: mask falls back, and the fallback is what is recorded
    exps = fs.explain(llama_adapter, ["a good film"], ["leave_one_out"])
    fallback = fs.evaluate(exps, llama_adapter, ["comprehensiveness"], random=False,
                           operator="mask")
    assert set(fallback["operator"]) <= {"unk", "pad"}
    with pytest.raises(fs.InputError, match="operator must be one of"):
        fs.evaluate(exps, llama_adapter, ["comprehensiveness"], operator="blank")


def test_sampling_stability_by_hand(bert_adapter):
    """The value is Spearman's rho between the explanation and the same explainer run with the
    sampling seed + 1 (computed here with fs.explain and scipy); deterministic: 1.0, not re-run."""
    from scipy.stats import kendalltau, spearmanr

    texts = ["a gorgeous , witty and moving film", "the plot is thin and the acting is flat"]
    spec = ("lime", {"n_samples": 40})
    first = fs.explain(bert_adapter, texts, [spec], seed=5)
    second = fs.explain(bert_adapter, texts, [spec], seed=6)
    df = fs.evaluate(first, bert_adapter, ["sampling_stability"], random=False)
    for e, again, (_, row) in zip(first, second, df.iterrows(), strict=True):
        a, b = e.scores[0].astype(float), again.scores[0].astype(float)
        assert row["value"] == pytest.approx(spearmanr(a, b)[0], abs=1e-6)
        assert row["detail"]["kendall"] == pytest.approx(kendalltau(a, b)[0], abs=1e-6)
        assert row["detail"]["seeds"] == [5, 6]
    grad = fs.explain(bert_adapter, texts, ["gradient"])
    g = fs.evaluate(grad, bert_adapter, ["sampling_stability"], random=False)
    assert (g["value"] == 1.0).all() and all(d["deterministic"] for d in g["detail"])
