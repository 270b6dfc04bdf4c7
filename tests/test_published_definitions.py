"""A name from the literature means the published quantity.

* ``auprc`` is ERASER's AUPRC (DeYoung et al. 2020): the trapezoidal area under sklearn's
  precision-recall curve (``precision_recall_curve`` then ``auc``), one point per distinct score
  plus the end point (recall 0, precision 1); the step-wise quantity is ``average_precision``
  (sklearn's ``average_precision_score``). Both by hand and against sklearn on random cases with
  ties (sklearn is the independent implementation; those tests skip where it is not installed).
* ``token_f1`` / ``iou_f1`` rows keep their counts, and ``summarize`` adds ERASER's dataset-level
  micro and macro F1 next to the mean of per-example F1, each row saying which it is.
* ``recovery_depth`` is the depth needed to recover every planted unit (formerly, wrongly,
  ``mean_rank``); ``mean_rank`` is the mean rank of the planted units (ties: average rank).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import faithscope as fs
from faithscope.metrics import get_metric
from helpers import hand_exp, hand_item


def val(name, item, **params):
    return get_metric(name, **params).value(item)[0]


# ==================================================================== AUPRC vs AP
def test_auprc_is_erasers_trapezoidal_area_and_average_precision_is_stepwise():
    # scores [.1, .9, .3, .5], gold {1, 2}: units by score 1 (T), 3 (F), 2 (T), 0 (F);
    # points (R, P): (1/2, 1), (1/2, 1/2), (1, 2/3), (1, 1/2), from (0, 1):
    # AUPRC = 1/2 * (1 + 1) / 2 + 0 + 1/2 * (1/2 + 2/3) / 2 + 0 = 1/2 + 7/24 = 19/24 = 0.7917
    # AP    = 1/2 * 1 + 0 + 1/2 * 2/3 + 0 = 5/6 = 0.8333
    it = hand_item([0.1, 0.9, 0.3, 0.5], {1, 2})
    assert val("auprc", it) == pytest.approx(19 / 24, abs=1e-12)
    assert val("average_precision", it) == pytest.approx(5 / 6, abs=1e-12)
    assert round(val("auprc", it), 4) == 0.7917 and round(val("average_precision", it), 4) == 0.8333
    # ties are one threshold: [.5, .5, .2, .5], gold {0, 2}: .5 takes {0, 1, 3}: (1/2, 1/3);
    # .2 takes all: (1, 1/2). AUPRC = 1/2 * (1 + 1/3) / 2 + 1/2 * (1/3 + 1/2) / 2 = 13/24
    it = hand_item([0.5, 0.5, 0.2, 0.5], {0, 2})
    assert val("auprc", it) == pytest.approx(13 / 24, abs=1e-12)
    assert val("average_precision", it) == pytest.approx(5 / 12, abs=1e-12)
    # a constant score: the one point (1, 1/2) and the end point (0, 1): AUPRC 3/4, AP 1/2
    it = hand_item([0.3] * 4, {1, 3})
    assert val("auprc", it) == pytest.approx(3 / 4, abs=1e-12)
    assert val("average_precision", it) == pytest.approx(1 / 2, abs=1e-12)
    # the gold unit last: points (0, 0), (0, 0), (1, 1/3): the trapezoid from (0, 0) to
    # (1, 1/3) = 1/6 (the end point (0, 1) adds no width); by magnitude it is first: 1
    it = hand_item([-0.9, 0.1, 0.5], {0})
    assert val("auprc", it) == pytest.approx(1 / 6, abs=1e-12)
    assert val("average_precision", it) == pytest.approx(1 / 3, abs=1e-12)
    assert val("auprc", it, by="abs") == 1.0 and val("average_precision", it, by="abs") == 1.0
    # one unit, the rationale: 1; no rationale: NaN
    assert val("auprc", hand_item([0.2], {0})) == 1.0
    for name in ("auprc", "average_precision"):
        assert math.isnan(val(name, hand_item([0.1, 0.9], set())))
        assert math.isnan(val(name, hand_item([0.1, 0.9], None)))
    m = get_metric("average_precision")
    assert (m.family, m.higher_is_better, m.bounds, m.needs) == \
        ("plausibility", True, (0.0, 1.0), frozenset({"rationale"}))


def test_auprc_of_binary_selections():
    # selection {0, 3} of 5, rationale {0, 1}: points (1/2, 1/2), (1, 2/5):
    # AUPRC = 1/2 * (1 + 1/2) / 2 + 1/2 * (1/2 + 2/5) / 2 = 3/8 + 9/40 = 0.6; AP = 0.45
    it = hand_item([1, 0, 0, 1, 0], {0, 1}, binary=True)
    assert val("auprc", it) == pytest.approx(0.6, abs=1e-12)
    assert val("average_precision", it) == pytest.approx(0.45, abs=1e-12)
    # an empty selection is a constant score: AUPRC (1 + b) / 2 with b = 2/6; AP = b
    it = hand_item([0] * 6, {0, 1}, binary=True)
    assert val("auprc", it) == pytest.approx(2 / 3, abs=1e-12)
    assert val("average_precision", it) == pytest.approx(1 / 3, abs=1e-12)


def _random_cases(n_cases=50, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        n = int(rng.integers(1, 16))
        scores = np.round(rng.normal(size=n), 1)  # one decimal: many ties
        if i % 10 == 0:
            scores = np.round(rng.normal(size=n))  # coarser: ties within the rationale too
        truth = rng.random(n) < 0.4
        if not truth.any():
            truth[rng.integers(n)] = True
        if i % 17 == 0:
            truth[:] = True  # every unit in the rationale
        yield scores, truth


def test_auprc_and_average_precision_match_sklearn_on_random_cases_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    tied = differ = 0
    for scores, truth in _random_cases():
        it = hand_item(scores, set(np.nonzero(truth)[0].tolist()))
        row = it.explanation.row(it.target).astype(np.float64)  # the scores the metric sees
        tied += len(np.unique(row)) < len(row)
        y = truth.astype(int)
        for by, s in (("value", row), ("abs", np.abs(row))):
            precision, recall, _ = metrics.precision_recall_curve(y, s)
            expected_auprc = metrics.auc(recall, precision)
            expected_ap = metrics.average_precision_score(y, s)
            assert val("auprc", it, by=by) == pytest.approx(expected_auprc, abs=1e-12), \
                (scores, truth, by)
            assert val("average_precision", it, by=by) == pytest.approx(expected_ap,
                                                                        abs=1e-12), \
                (scores, truth, by)
            differ += abs(expected_auprc - expected_ap) > 1e-6
    assert tied >= 25 and differ >= 25  # the cases exercise ties and tell the two apart


# =================================================== token / IOU F1: micro, macro, mean
def _example(ex_id: str, n: int, gold) -> fs.Example:
    """n one-token units w0 w1 ... (unit j at characters 3j .. 3j+2); ``gold``: unit indices."""
    return fs.Example(id=ex_id, text=" ".join(f"w{j}" for j in range(n)),
                      rationale=tuple((0, 3 * j, 3 * j + 2) for j in gold))


def _exp(ex_id: str, scores, *, binary=False) -> fs.Explanation:
    return dataclasses.replace(hand_exp(scores, binary=binary), example_id=ex_id)


def _summary(df, **kw):
    s = fs.summarize(df, n_boot=200, **kw)
    return s.set_index(["explainer", "metric"])


def test_token_f1_micro_macro_and_mean_of_examples():
    # k = 2 units predicted in each example.
    # a: gold {0} of 4, top-2 {0, 1}: tp 1, P 1/2, R 1, F1 2/3
    # b: gold {0, 1, 2} of 4, top-2 {0, 3}: tp 1, P 1/2, R 1/3, F1 2 * (1/6) / (5/6) = 2/5
    # mean of per-example F1 = (2/3 + 2/5) / 2 = 8/15 = 0.5333
    # micro: tp 2, predicted 4, gold 4 -> P = R = 1/2 -> F1 1/2
    # macro (ERASER token_prf instance_macro): mean of per-example F1 = 8/15; NOT the F1 of
    # mean P (1/2) and mean R (2/3), which would be 4/7 = 0.5714
    exps = [_exp("a", [0.9, 0.8, 0.1, 0.0]), _exp("b", [0.9, 0.1, 0.2, 0.8])]
    examples = [_example("a", 4, [0]), _example("b", 4, [0, 1, 2])]
    df = fs.evaluate(exps, None, metrics=[("token_f1", {"k": 2})], examples=examples)
    details = dict(zip(df.example_id, df.detail, strict=True))
    assert {k: details["a"][k] for k in ("tp", "n_pred", "n_gold")} == \
        {"tp": 1, "n_pred": 2, "n_gold": 1}
    assert {k: details["b"][k] for k in ("tp", "n_pred", "n_gold")} == \
        {"tp": 1, "n_pred": 2, "n_gold": 3}
    assert details["b"]["precision"] == 0.5 and details["b"]["recall"] == pytest.approx(1 / 3)
    s = _summary(df)
    assert s.loc[("hand", "token_f1"), "mean"] == pytest.approx(8 / 15, abs=1e-12)
    assert s.loc[("hand", "token_f1"), "aggregate"] == "mean"
    assert s.loc[("hand", "token_f1 (micro)"), "mean"] == pytest.approx(1 / 2, abs=1e-12)
    assert s.loc[("hand", "token_f1 (micro)"), "aggregate"] == "micro"
    assert s.loc[("hand", "token_f1 (macro)"), "mean"] == pytest.approx(8 / 15, abs=1e-12)
    assert s.loc[("hand", "token_f1 (macro)"), "aggregate"] == "macro"
    for m in ("token_f1 (micro)", "token_f1 (macro)"):
        r = s.loc[("hand", m)]
        assert r["n"] == 2 and r["higher_is_better"]
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
    assert not np.isclose(s["mean"].to_numpy(), 4 / 7).any()


def test_iou_f1_micro_macro_and_mean_of_examples():
    # a: gold span (0, 2) of 8, top-2 {0, 1}: one predicted span, matched: P = R = F1 = 1
    # b: gold spans (0, 2), (4, 6); top-4 {0, 1, 3, 7} (ties: earlier first) = spans (0, 2),
    #    (3, 4), (7, 8): (0, 2) matches (IOU 1), (3, 4) and (7, 8) overlap nothing:
    #    P 1/3, R 1/2, F1 2/5
    # mean of per-example F1 = (1 + 2/5) / 2 = 7/10
    # micro: matched 2 of 4 predicted, 2 of 3 gold spans -> F1(1/2, 2/3) = 4/7 = 0.5714
    # macro: mean P 2/3, mean R 3/4 -> F1 = 2 * (1/2) / (17/12) = 12/17 = 0.7059
    exps = [_exp("a", [1, 1, 0, 0, 0, 0, 0, 0]), _exp("b", [1, 1, 0, 1, 0, 0, 0, 1])]
    examples = [_example("a", 8, [0, 1]), _example("b", 8, [0, 1, 4, 5])]
    df = fs.evaluate(exps, None, metrics=["iou_f1"], examples=examples)
    d = dict(zip(df.example_id, df.detail, strict=True))["b"]
    assert {k: d[k] for k in ("matched_pred", "matched_gold", "pred_spans", "gold_spans")} == \
        {"matched_pred": 1, "matched_gold": 1, "pred_spans": 3, "gold_spans": 2}
    s = _summary(df)
    assert s.loc[("hand", "iou_f1"), "mean"] == pytest.approx(7 / 10, abs=1e-12)
    assert s.loc[("hand", "iou_f1 (micro)"), "mean"] == pytest.approx(4 / 7, abs=1e-12)
    assert s.loc[("hand", "iou_f1 (macro)"), "mean"] == pytest.approx(12 / 17, abs=1e-12)
    assert list(s.loc["hand", "aggregate"]) == ["mean", "micro", "macro"]
    # c: an empty binary selection against gold (2, 4): no predicted span, F1 0. ERASER's
    # macro precision averages over the examples that predict spans (a, b: 2/3), its macro
    # recall over all (1 + 1/2 + 0) / 3 = 1/2 -> F1(2/3, 1/2) = 4/7; micro: 2 of 4 predicted,
    # 2 of 4 gold -> 1/2; mean of per-example F1: (1 + 2/5 + 0) / 3 = 7/15
    exps.append(_exp("c", [0] * 8, binary=True))
    examples.append(_example("c", 8, [2, 3]))
    s = _summary(fs.evaluate(exps, None, metrics=["iou_f1"], examples=examples))
    assert s.loc[("hand", "iou_f1"), "mean"] == pytest.approx(7 / 15, abs=1e-12)
    assert s.loc[("hand", "iou_f1 (micro)"), "mean"] == pytest.approx(1 / 2, abs=1e-12)
    assert s.loc[("hand", "iou_f1 (macro)"), "mean"] == pytest.approx(4 / 7, abs=1e-12)
    assert s.loc[("hand", "iou_f1 (macro)"), "n"] == 3


def test_summarize_pooled_rows_from_stored_details_by_group_and_switched_off():
    exps = [_exp("a", [0.9, 0.8, 0.1, 0.0]), _exp("b", [0.9, 0.1, 0.2, 0.8]),
            _exp("x", [0.1, 0.2])]  # x: no rationale -> NaN, left out
    examples = [_example("a", 4, [0]), _example("b", 4, [0, 1, 2]), _example("x", 2, [])]
    df = fs.evaluate(exps, None, metrics=[("token_f1", {"k": 2}), "auprc"], examples=examples)
    s = fs.summarize(df, n_boot=100)
    assert list(s["metric"]) == ["auprc", "token_f1", "token_f1 (micro)", "token_f1 (macro)"]
    assert list(s["aggregate"]) == ["mean", "mean", "micro", "macro"]
    assert list(s["n"]) == [2, 2, 2, 2]
    # studies store details as JSON text: the same rows
    stored = df.assign(detail=df["detail"].map(json.dumps))
    assert fs.summarize(stored, n_boot=100).equals(s)
    # no pooled rows without the switch, without details or without "metric" in ``by``
    assert list(fs.summarize(df, n_boot=100, pooled=False)["metric"]) == ["auprc", "token_f1"]
    assert list(fs.summarize(df.drop(columns="detail"), n_boot=100)["metric"]) == \
        ["auprc", "token_f1"]
    assert "metric" not in fs.summarize(df, by=("explainer",), n_boot=100)
    # another grouping column: one pooled value per group (here per example: micro = its F1)
    per = fs.summarize(df[df.metric == "token_f1"], by=("explainer", "metric", "example_id"),
                       n_boot=100).set_index(["metric", "example_id"])["mean"]
    assert per[("token_f1 (micro)", "a")] == pytest.approx(2 / 3)
    assert per[("token_f1 (micro)", "b")] == pytest.approx(2 / 5)
    assert math.isnan(per[("token_f1", "x")]) and ("token_f1 (micro)", "x") not in per.index


# ============================================================ recovery depth, mean rank
def test_recovery_depth_is_the_old_value_and_mean_rank_is_the_mean_rank():
    # [.1, .9, .3, .5]: order 1, 3, 2, 0 (ranks: unit 1 -> 1, 3 -> 2, 2 -> 3, 0 -> 4)
    # truth {1, 2}: all recovered by depth 3 of 4 -> 0.75; mean rank (1 + 3) / 2 = 2 -> 2/4
    it = hand_item([0.1, 0.9, 0.3, 0.5], {1, 2})
    assert val("recovery_depth", it) == 0.75
    v, d = get_metric("mean_rank").value(it)
    assert v == 0.5 and d["mean_rank_units"] == 2.0 and d["n_truth"] == 2
    # truth {1, 3} = the top 2: depth 2 of 4 -> 0.5; mean rank 1.5 -> 0.375
    it = hand_item([0.1, 0.9, 0.3, 0.5], {1, 3})
    assert val("recovery_depth", it) == 0.5 and val("mean_rank", it) == 0.375
    # ties: units 0, 1, 3 share ranks 1-3 -> each ranks 2 (average); recovery_depth keeps
    # its stable order 0, 1, 3, 2 (unit 0 at depth 1, unit 3 at depth 3)
    for truth, depth in (({0}, 0.25), ({3}, 0.75)):
        it = hand_item([0.5, 0.5, 0.2, 0.5], truth)
        assert val("mean_rank", it) == 0.5
        assert val("recovery_depth", it) == depth
    # by magnitude: unit 0 (-0.9) is last signed (rank 4 -> 1.0), first by abs (1 -> 0.25)
    it = hand_item([-0.9, 0.1, 0.5, 0.2], {0})
    assert val("mean_rank", it) == 1.0 and val("mean_rank", it, by="abs") == 0.25
    assert val("recovery_depth", it) == 1.0 and val("recovery_depth", it, by="abs") == 0.25
    for name in ("mean_rank", "recovery_depth"):
        assert math.isnan(val(name, hand_item([0.1, 0.9], set())))
        assert math.isnan(val(name, hand_item([0.1, 0.9], None)))
        m = get_metric(name)
        assert (m.family, m.higher_is_better, m.bounds) == ("ground_truth", False, (0.0, 1.0))


def test_mean_rank_matches_brute_force_average_ranks():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 14))
        scores = np.round(rng.normal(size=n), 1)
        truth = rng.random(n) < 0.3
        if not truth.any():
            truth[rng.integers(n)] = True
        it = hand_item(scores, set(np.nonzero(truth)[0].tolist()))
        for by in ("value", "abs"):
            key = it.explanation.row(it.target).astype(np.float64)
            key = np.abs(key) if by == "abs" else key
            # rank of u: units scored higher, plus the middle of its tie group
            ranks = [(key > key[u]).sum() + ((key == key[u]).sum() + 1) / 2
                     for u in np.nonzero(truth)[0]]
            assert val("mean_rank", it, by=by) == pytest.approx(np.mean(ranks) / n, abs=1e-12)
