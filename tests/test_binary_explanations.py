"""Binary explanations (a selected set of units, e.g. ``self_explanation``) are scored as sets.

* the flag: ``Explanation.binary`` set by ``fs.explain`` from ``Explainer.binary``, validated
  (0/1 scores), saved and loaded in every format (old files load as False);
* plausibility: token_f1 / iou_f1 compare the selected units themselves with the rationale, so
  an empty selection scores 0 even when the rationale is at the start of the text (a ranking
  of all-zero scores would fill its top-k in tie order and score 1.0); auprc and
  average_precision take the 0/1 scores as they are; ``coverage`` reports whether anything is selected;
* removal: every removal metric removes (or keeps) exactly the selection, once; an empty
  selection removes nothing (comprehensiveness 0, flip rate 0), by hand and through
  ``fs.evaluate`` on the tiny BERT;
* rankings are unchanged (the hand-computed tests of tests/test_metrics.py stay green; one
  is repeated here next to its binary twin).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import ClassVar

import numpy as np
import pytest

import faithscope as fs
from faithscope.explainers.base import Explainer
from faithscope.explainers.self_explain import SelfExplanation
from faithscope.metrics import EvalItem, get_metric, selection
from helpers import hand_exp, hand_item

FULL = np.array([0.3, 0.7])  # p(x); the explained class is 1
REMOVAL = ["comprehensiveness", "sufficiency", "aopc_comprehensiveness", "aopc_sufficiency",
           "flip_rate", "deletion_curve", "insertion_curve", "perturbation_curve"]


def sel_exp(scores, *, binary=True, targets=(1,)) -> fs.Explanation:
    """An Explanation over one-token units w0 w1 ... with the given score row(s)."""
    return hand_exp(scores, targets=targets, binary=binary)


def item_of(scores, truth=None, *, binary=True) -> EvalItem:
    return hand_item(scores, truth, binary=binary)


def val(name, item, **params):
    return get_metric(name, **params).value(item)[0]


# ====================================================================== the flag
def test_flag_comes_from_the_explainer_class(bert_adapter):
    assert SelfExplanation.binary is True and Explainer.binary is False

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class FirstWord(Explainer):  # a binary explainer: selects the first unit
        name: ClassVar[str] = "first_word"
        binary: ClassVar[bool] = True

        def attribute(self, adapter, items, target_fn):
            out = []
            for it in items:
                s = np.zeros((len(it.targets), it.n_units))
                s[:, :1] = 1.0
                out.append(s)
            return out, [{} for _ in items]

    exps = fs.explain(bert_adapter, ["a good film"], [FirstWord(), "leave_one_out"])
    assert [(e.explainer, e.binary) for e in exps] == [("first_word", True),
                                                      ("leave_one_out", False)]
    assert exps[0].selected().tolist() == [True, False, False]
    with pytest.raises(ValueError, match="not a binary"):
        exps[1].selected()


def test_flag_is_validated_and_selections_are_not_normalized():
    with pytest.raises(ValueError, match="0 .* or 1"):
        sel_exp([0.5, 1.0])
    with pytest.raises(ValueError, match="bool"):
        sel_exp([0.0, 1.0], binary=1)
    e = sel_exp([0.0, 1.0, 1.0])
    assert e.normalized("l1") is e and e.normalized("rank") is e  # a set has no scale
    assert not sel_exp([0.5, 1.0], binary=False).binary


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_save_load_round_trip_keeps_the_flag(tmp_path, suffix):
    exps = [sel_exp([0, 1, 1, 0]), sel_exp([0.2, 0.5, 0.1, 0.0], binary=False)]
    back = fs.load_explanations(fs.save_explanations(exps, tmp_path / f"e{suffix}"))
    assert [e.binary for e in back] == [True, False]
    assert all(a.equals(b) for a, b in zip(exps, back, strict=True))
    assert type(back[0].binary) is bool


def test_files_written_before_the_flag_load_as_rankings(tmp_path):
    import pyarrow.parquet as pq

    from faithscope.explanation import explanations_table

    e = sel_exp([0, 1, 0])
    d = e.to_dict()
    assert d.pop("binary") is True
    old_json = tmp_path / "old.json"
    old_json.write_text(json.dumps([d]))
    old_jsonl = tmp_path / "old.jsonl"
    old_jsonl.write_text(json.dumps(d) + "\n")
    old_parquet = tmp_path / "old.parquet"
    table = explanations_table([e])
    pq.write_table(table.drop_columns(["binary"]), old_parquet)
    for path in (old_json, old_jsonl, old_parquet):
        (back,) = fs.load_explanations(path)
        assert back.binary is False
        np.testing.assert_array_equal(back.scores, e.scores)


# ================================================================== plausibility
def test_empty_selection_cannot_score_f1_one_with_the_rationale_at_the_start():
    # rationale {0, 1}: the first two units. An empty selection (all scores 0)...
    empty = item_of([0, 0, 0, 0, 0, 0], {0, 1})
    for name in ("token_f1", "iou_f1"):
        v, d = get_metric(name).value(empty)
        assert v == 0.0, name
        assert d["precision"] == 0.0 and d["recall"] == 0.0
        assert val(name, empty, k=2) == 0.0  # k is ignored for a selection
    # ... which, read as a ranking, fills the top-2 in tie order and scores 1.0 (the old bug)
    ranking = item_of([0, 0, 0, 0, 0, 0], {0, 1}, binary=False)
    assert val("token_f1", ranking) == 1.0 and val("iou_f1", ranking) == 1.0
    assert get_metric("token_f1").value(empty)[1]["k"] == 0


def test_selection_equal_to_the_rationale_scores_one():
    it = item_of([0, 0, 1, 1, 0, 0], {2, 3})
    assert val("token_f1", it) == 1.0 and val("iou_f1", it) == 1.0
    assert val("token_f1", it, k=1) == 1.0  # k ignored: the set is the prediction
    assert val("auprc", it) == 1.0


def test_selection_is_scored_as_a_set_not_as_top_k():
    # selection {0, 1, 2} vs rationale {0, 1}: P 2/3, R 1 -> F1 = 0.8 (top-2 would give 1.0)
    it = item_of([1, 1, 1, 0, 0], {0, 1})
    v, d = get_metric("token_f1").value(it)
    assert v == pytest.approx(0.8, abs=1e-12) and d["k"] == 3
    assert val("token_f1", item_of([1, 1, 1, 0, 0], {0, 1}, binary=False)) == 1.0
    # iou: predicted span (0, 3) vs gold (0, 2): IOU 2/3 -> match
    assert val("iou_f1", it) == 1.0
    # selection {4} vs rationale {0, 1}: nothing in common
    assert val("token_f1", item_of([0, 0, 0, 0, 1], {0, 1})) == 0.0
    # selection {0, 3} vs rationale {0, 1}: P = R = 1/2 (token); spans (0,1) vs (0,2): IOU 1/2
    # matches, (3,4) does not -> P 1/2, R 1 -> 2/3
    assert val("token_f1", item_of([1, 0, 0, 1, 0], {0, 1})) == pytest.approx(0.5)
    assert val("iou_f1", item_of([1, 0, 0, 1, 0], {0, 1})) == pytest.approx(2 / 3)


def test_auprc_takes_the_selection_as_scores():
    # two tie groups: {selected} then everything. Selection {0, 3}, rationale {0, 1} of 5:
    # threshold 1: P 1/2, R 1/2; threshold 0: P 2/5, R 1 -> AP = 1/4 + 1/5 = 0.45; ERASER's
    # AUPRC, trapezoids from (R 0, P 1): (1 + 1/2)/4 + (1/2 + 2/5)/4 = 0.6
    item = item_of([1, 0, 0, 1, 0], {0, 1})
    assert val("average_precision", item) == pytest.approx(0.45, abs=1e-12)
    assert val("auprc", item) == pytest.approx(0.6, abs=1e-12)
    # an empty selection is a constant score: AP = the rationale's share of the units (2/6);
    # AUPRC: one trapezoid from (0, 1) to (1, 1/3) = 2/3
    empty = item_of([0] * 6, {0, 1})
    assert val("average_precision", empty) == pytest.approx(1 / 3, abs=1e-12)
    assert val("auprc", empty) == pytest.approx(2 / 3, abs=1e-12)
    assert math.isnan(val("auprc", item_of([1, 0], set())))


def test_coverage():
    m = get_metric("coverage")
    assert (m.family, m.higher_is_better, m.bounds, m.needs) == \
        ("plausibility", True, (0.0, 1.0), frozenset())
    v, d = m.value(item_of([0, 1, 1, 0]))
    assert v == 1.0 and d == {"selected": 2, "n_units": 4}
    v, d = m.value(item_of([0, 0, 0, 0]))
    assert v == 0.0 and d == {"selected": 0, "n_units": 4}
    assert math.isnan(m.value(item_of([0.1, 0.9, 0.0, 0.0], binary=False))[0])  # a ranking
    assert m.value(item_of([1]))[0] == 1.0
    # coverage of several answers: the mean over examples, beside F1 in the summary
    exps = [dataclasses.replace(sel_exp(s), example_id=str(i))
            for i, s in enumerate(([1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]))]
    exps.append(dataclasses.replace(sel_exp([0.3, 0.1, 0.2], binary=False), explainer="rank"))
    examples = [fs.Example(id=str(i), text="w0 w1 w2", rationale=((0, 0, 2),))
                for i in range(4)] + [fs.Example(id="x", text="w0 w1 w2",
                                                  rationale=((0, 0, 2),))]
    df = fs.evaluate(exps, None, metrics=["coverage", "token_f1"], examples=examples)
    s = fs.summarize(df, n_boot=50).set_index(["explainer", "metric"])
    assert s.loc[("hand", "coverage"), "mean"] == 0.5 and s.loc[("hand", "coverage"), "n"] == 4
    assert s.loc[("hand", "token_f1"), "mean"] == pytest.approx(0.25)  # 1, 0, 0, 0
    assert s.loc[("rank", "coverage"), "n"] == 0  # NaN for rankings: left out
    assert s.loc[("rank", "token_f1"), "mean"] == 1.0


# ========================================================== removal metrics by hand
def test_every_removal_metric_removes_exactly_the_selection():
    it = item_of([0, 1, 0, 1, 0])  # selection {1, 3}
    without = np.array([[True, False, True, False, True]])
    for name in REMOVAL:
        for params in ({}, {"fraction": 0.2}, {"bins": (0.1, 0.5, 1.0)}, {"steps": 4},
                       {"max_fraction": 0.2}, {"by": "abs"}):
            try:
                m = get_metric(name, **params)
            except fs.InputError:  # a hyper-parameter this metric does not have
                continue
            mk = m.masks(it)
            if name == "insertion_curve":
                np.testing.assert_array_equal(mk, np.vstack([np.zeros((1, 5), bool), ~without]))
            elif m.keep_top:
                np.testing.assert_array_equal(mk, ~without, err_msg=name)
            else:
                np.testing.assert_array_equal(mk, without, err_msg=name)


def test_removal_values_of_a_selection_by_hand():
    it = item_of([0, 1, 0, 1, 0])  # selection {1, 3}: 2 of 5 units
    without = np.array([[0.6, 0.4]])  # p(x without the selection)
    v, d = get_metric("aopc_comprehensiveness").from_probs(it, FULL, without)
    assert v == pytest.approx(0.3) and d["k"] == [2]  # = comprehensiveness of the selection
    v, d = get_metric("flip_rate").from_probs(it, FULL, without)
    assert v == 1.0 and d["k"] == 2
    v, d = get_metric("deletion_curve").from_probs(it, FULL, without)
    np.testing.assert_allclose(d["x"], [0, 0.4])
    assert v == pytest.approx((0.7 + 0.4) / 2)  # two points: the mean
    v, d = get_metric("perturbation_curve").from_probs(it, FULL, without)
    assert v == pytest.approx(0.3) and "x_target" not in d  # one drop: comprehensiveness
    np.testing.assert_allclose(d["x"], [0, 0.4])  # the selection holds 2 of the 5 words
    v, d = get_metric("insertion_curve").from_probs(it, FULL, np.array([[0.8, 0.2], [0.4,
                                                                                      0.6]]))
    np.testing.assert_allclose(d["x"], [0, 0.4])
    assert v == pytest.approx((0.2 + 0.6) / 2)


def test_an_empty_selection_removes_nothing_by_hand():
    it = item_of([0, 0, 0, 0, 0])
    nothing = np.ones((1, 5), dtype=bool)
    for name in REMOVAL:
        m = get_metric(name)
        mk = m.masks(it)
        if name == "insertion_curve":
            np.testing.assert_array_equal(mk, ~np.vstack([nothing, nothing]))
        else:
            np.testing.assert_array_equal(mk, nothing if not m.keep_top else ~nothing, name)
    same = FULL[None, :]
    assert get_metric("comprehensiveness").from_probs(it, FULL, same) == (0.0, {
        "k": [0], "values": [0.0], "convention": "eraser"})
    assert get_metric("flip_rate").from_probs(it, FULL, same)[0] == 0.0
    assert get_metric("flip_rate").from_probs(it, FULL, same)[1]["k"] == 0
    v, d = get_metric("deletion_curve").from_probs(it, FULL, same)
    assert v == pytest.approx(0.7) and d["x"] == [0.0, 0.0]  # flat at p(x)


# ==================================================== through evaluate on the tiny BERT
TEXT = "the plot is thin but the cast is very good"  # 10 word units


@pytest.fixture(scope="module")
def loo(bert_adapter):
    return fs.explain(bert_adapter, [fs.Example(id="t", text=TEXT)], "leave_one_out")[0]


def test_empty_selection_removes_nothing_on_bert(bert_adapter, loo):
    empty = dataclasses.replace(loo, explainer="empty", binary=True,
                                scores=np.zeros_like(loo.scores))
    as_ranking = dataclasses.replace(empty, explainer="zeros", binary=False)
    df = fs.evaluate([empty, as_ranking], bert_adapter,
                     metrics=["comprehensiveness", "aopc_comprehensiveness", "flip_rate",
                              "deletion_curve", "perturbation_curve"], random=False)
    got = df.set_index(["explainer", "metric"])["value"]
    for name in ("comprehensiveness", "aopc_comprehensiveness", "flip_rate",
                 "perturbation_curve"):
        assert got[("empty", name)] == pytest.approx(0.0, abs=1e-6), name
    p = float(loo.probs[loo.targets[0]])
    assert got[("empty", "deletion_curve")] == pytest.approx(p, abs=1e-6)
    # read as a ranking, the same zeros remove the first units: a change
    assert got[("zeros", "comprehensiveness")] != pytest.approx(0.0, abs=1e-4)


def test_selection_equals_the_ranking_whose_top_k_it_is(bert_adapter, loo):
    """A selection of 4 units scores like a ranking whose top 40 % are those units."""
    picked = [1, 3, 8, 9]
    s = np.zeros_like(loo.scores)
    s[0, picked] = 1.0
    chosen = dataclasses.replace(loo, explainer="chosen", binary=True, scores=s)
    ranked = dataclasses.replace(loo, explainer="ranked", binary=False,
                                 scores=s + np.linspace(0.0, 0.01, 10, dtype=np.float32))
    names = [("comprehensiveness", {"fraction": 0.4}), ("sufficiency", {"fraction": 0.4}),
             ("flip_rate", {"fraction": 0.4})]
    df = fs.evaluate([chosen, ranked], bert_adapter, metrics=names, random=False)
    a, b = df[df.explainer == "chosen"], df[df.explainer == "ranked"]
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), atol=1e-6)
    # whatever fraction or bins the metric asks for, the selection is what is removed
    df2 = fs.evaluate([chosen], bert_adapter, random=False,
                      metrics=["comprehensiveness", "aopc_comprehensiveness",
                               ("aopc_comprehensiveness", {"bins": (0.1, 0.9)})])
    np.testing.assert_allclose(df2.value.to_numpy(), a.value.to_numpy()[0], atol=1e-6)
    assert all(d["k"] == [4] for d in df2.detail)


def test_rankings_are_scored_as_before():
    # tests/test_metrics.py::test_token_f1_default_k_is_rationale_size and
    # ::test_comprehensiveness_and_sufficiency_by_hand, on rankings (binary False)
    it = item_of([0.1, 0.9, 0.3, 0.5], {1, 2}, binary=False)
    assert selection(it) is None
    # top-2 {1, 3}: token P = R = 1/2; spans (1, 2) and (3, 4) vs gold (1, 3): IOU 1/2 and 0
    assert val("token_f1", it) == pytest.approx(0.5)
    assert val("iou_f1", it) == pytest.approx(2 / 3)
    r5 = item_of([0.1, 0.9, 0.3, 0.5, 0.2], binary=False)
    np.testing.assert_array_equal(get_metric("comprehensiveness").masks(r5),
                                  [[True, False, True, True, True]])
    np.testing.assert_array_equal(get_metric("aopc_comprehensiveness").masks(r5),
                                  [[True, False, True, True, True]] * 4
                                  + [[True, False, False, False, True]])
