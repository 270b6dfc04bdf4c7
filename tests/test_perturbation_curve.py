"""``perturbation_curve(fraction_of=...)``: the x axis counts words (default), tokens or units.

Hand computations on three units of 1, 2 and 3 words whose probability is linear in the words
kept, p = 0.2 + 0.1 * (words kept), so p(x) = 0.8 and removing w words drops p by 0.1 * w.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import faithscope as fs
from faithscope.metrics import EvalItem, get_metric, n_covering, n_top, unit_sizes
from faithscope.units import Unit

TEXTS = ("alpha", "beta gamma", "delta epsilon zeta")  # 1, 2 and 3 words: 6 in all
WORDS = np.array([1, 2, 3])


def three_units(scores, *, tokens=((1, 2, 3), (4,), (5, 6)), texts=TEXTS, binary=False
                ) -> EvalItem:
    units, pos = [], 0
    for t, tok in zip(texts, tokens, strict=True):
        units.append(Unit(t, pos, pos + len(t), 0, tuple(tok)))
        pos += len(t) + 1
    e = fs.Explanation(example_id="x", text=" ".join(texts), pair=None, units=tuple(units),
                       scores=np.asarray([scores], np.float32), targets=(1,),
                       target_labels=("1",), probs=np.array([0.2, 0.8]), explainer="hand",
                       params={}, binary=binary)
    return EvalItem(e, None, None, 1)


def linear_probs(masks, words=WORDS):
    """p(class 1) = 0.2 + 0.1 * words kept, for each mask row (True = unit kept)."""
    p = 0.2 + 0.1 * (np.asarray(masks, dtype=float) @ words)
    return np.stack([1 - p, p], axis=1)


FULL = np.array([0.2, 0.8])
SCORES = [0.5, 0.8, 0.9]  # per word: 0.5, 0.4, 0.3 -> by word: alpha, beta gamma, delta...
                          # raw: delta epsilon zeta (0.9), beta gamma (0.8), alpha (0.5)


def test_words_by_hand():
    it = three_units(SCORES)
    pc = get_metric("perturbation_curve", steps=5)  # x = .1 .2 .3 .4 .5 of 6 words
    assert pc.fraction_of == "words"
    # targets 0.6, 1.2, 1.8, 2.4, 3.0 words; in order alpha (1), beta gamma (2), delta.. (3):
    # cumulative 1, 3, 6 -> prefixes of 1, 2, 2, 2, 2 units (3 >= 3.0: reached exactly)
    removed = ~pc.masks(it)
    np.testing.assert_array_equal(removed, [[True, False, False]] + [[True, True, False]] * 4)
    v, d = pc.from_probs(it, FULL, linear_probs(pc.masks(it)))
    # drops 0.1 * (1, 3, 3, 3, 3) words -> mean 0.26
    assert v == pytest.approx(0.26, abs=1e-12)
    np.testing.assert_allclose(d["x"], [0, 1 / 6, 3 / 6, 3 / 6, 3 / 6, 3 / 6], atol=1e-12)
    np.testing.assert_allclose(d["x_target"], [0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-12)
    np.testing.assert_allclose(d["y"], [0.8, 0.7, 0.5, 0.5, 0.5, 0.5], atol=1e-12)
    assert d["fraction_of"] == "words"


def test_units_by_hand():
    it = three_units(SCORES)
    pc = get_metric("perturbation_curve", steps=5, fraction_of="units")
    # ceil(.3 .6 .9 1.2 1.5) = 1, 1, 1, 2, 2 units in raw score order: delta.. then beta gamma
    removed = ~pc.masks(it)
    np.testing.assert_array_equal(removed, [[False, False, True]] * 3
                                  + [[False, True, True]] * 2)
    v, d = pc.from_probs(it, FULL, linear_probs(pc.masks(it)))
    # drops 0.1 * (3, 3, 3, 5, 5) words -> mean 0.38, though "half the units" is 5/6 words
    assert v == pytest.approx(0.38, abs=1e-12)
    np.testing.assert_allclose(d["x"], [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3], atol=1e-12)


def test_tokens_by_hand():
    # tokens 3, 1, 2: per token 0.5/3, 0.8, 0.45 -> beta gamma (1), delta.. (2), alpha (3)
    it = three_units(SCORES)
    pc = get_metric("perturbation_curve", steps=5, fraction_of="tokens")
    # targets .6 1.2 1.8 2.4 3.0 of 6 tokens; cumulative 1, 3, 6 -> 1, 2, 2, 2, 2 units
    removed = ~pc.masks(it)
    np.testing.assert_array_equal(removed, [[False, True, False]] + [[False, True, True]] * 4)
    v, d = pc.from_probs(it, FULL, linear_probs(pc.masks(it)))
    assert v == pytest.approx(0.1 * (2 + 5 * 4) / 5, abs=1e-12)  # drops of 2, 5, 5, 5, 5 words
    np.testing.assert_allclose(d["x"], [0, 1 / 6, 3 / 6, 3 / 6, 3 / 6, 3 / 6], atol=1e-12)


def test_overshoot_and_max_fraction():
    # scores per word favour the 3-word unit first: it alone is 50 % of the words
    it = three_units([0.1, 0.2, 3.0])
    pc = get_metric("perturbation_curve", steps=2)  # x = .25, .5: 1.5 and 3 words
    np.testing.assert_array_equal(~pc.masks(it), [[False, False, True]] * 2)
    v, d = pc.from_probs(it, FULL, linear_probs(pc.masks(it)))
    np.testing.assert_allclose(d["x"], [0, 0.5, 0.5])  # the first step overshoots to 50 %
    assert v == pytest.approx(0.3)
    # up to 100 %: x = .5 (3 words: delta..), 1.0 (all)
    full = get_metric("perturbation_curve", steps=2, max_fraction=1.0)
    np.testing.assert_array_equal(~full.masks(it), [[False, False, True], [True, True, True]])


def test_by_abs_ranks_magnitude_per_word():
    # |s| per word: 0.3, 0.5, 0.2 -> beta gamma first
    it = three_units([0.3, -1.0, 0.6])
    pc = get_metric("perturbation_curve", steps=1, max_fraction=0.1, by="abs")  # 0.6 word
    np.testing.assert_array_equal(~pc.masks(it), [[False, True, False]])
    signed = get_metric("perturbation_curve", steps=1, max_fraction=0.1)  # 0.3, -0.5, 0.2
    np.testing.assert_array_equal(~signed.masks(it), [[True, False, False]])


def test_flat_word_units_equal_units():
    texts = ("one", "two", "three", "four", "five", "six", "seven")
    scores = [0.3, -0.1, 0.9, 0.2, 0.5, 0.5, 0.0]
    it = three_units(scores, tokens=[(i + 1,) for i in range(7)], texts=texts)
    for params in ({}, {"steps": 3}, {"max_fraction": 1.0, "steps": 7}, {"by": "abs"}):
        w = get_metric("perturbation_curve", **params)
        u = get_metric("perturbation_curve", fraction_of="units", **params)
        np.testing.assert_array_equal(w.masks(it), u.masks(it))
        probs = np.tile([0.4, 0.6], (len(w.masks(it)), 1))
        assert w.from_probs(it, FULL, probs)[1]["x"] == u.from_probs(it, FULL, probs)[1]["x"]


def test_punctuation_weighs_nothing():
    # "," has no \w+ word: 0 on the x axis, ranked by its raw score
    it = three_units([0.1, 0.9, 0.5], tokens=((1,), (2,), (3,)), texts=("alpha", ",", "beta"))
    assert unit_sizes(it.explanation.units, "words").tolist() == [1, 0, 1]
    pc = get_metric("perturbation_curve", steps=2)  # x = .25, .5 of 2 words
    # order ",", beta, alpha; cumulative 0, 1, 2: 0.5 word -> 2 units, 1 word -> 2 units
    np.testing.assert_array_equal(~pc.masks(it), [[False, True, True]] * 2)
    v, d = pc.from_probs(it, FULL, np.tile([0.5, 0.5], (2, 1)))
    np.testing.assert_allclose(d["x"], [0, 0.5, 0.5])
    # a text without any word falls back to units
    none = three_units([0.1, 0.9, 0.5], tokens=((1,), (2,), (3,)), texts=("!", ",", "?"))
    np.testing.assert_array_equal(
        get_metric("perturbation_curve", steps=2).masks(none),
        get_metric("perturbation_curve", steps=2, fraction_of="units").masks(none))


def test_binary_selection_removes_the_selection_once():
    it = three_units([0, 0, 1], binary=True)
    for of in ("words", "tokens", "units"):
        pc = get_metric("perturbation_curve", fraction_of=of)
        np.testing.assert_array_equal(~pc.masks(it), [[False, False, True]])
    v, d = get_metric("perturbation_curve").from_probs(it, FULL, linear_probs([[1, 1, 0]]))
    assert v == pytest.approx(0.3) and d["x"] == [0.0, 0.5]  # 3 of 6 words, at once


def test_n_covering_and_unit_sizes():
    for n in range(1, 12):
        for f in (0.01, 0.1, 0.28, 0.5, 0.56, 0.7, 1.0):
            assert n_covering(f, np.ones(n)) == n_top(f, n)
    assert n_covering(0.5, np.array([])) == 0
    assert n_covering(0.5, np.array([0.0, 0.0])) == 2
    assert n_covering(0.5, np.array([1.0, 2.0, 3.0])) == 2  # 3 >= 3
    assert n_covering(0.51, np.array([1.0, 2.0, 3.0])) == 3
    units = (Unit("it's well-made", 0, 14, 0, (1, 2, 3, 4)), Unit(",", 15, 16, 0, (5,)))
    assert unit_sizes(units, "words").tolist() == [4, 0]  # it, s, well, made
    assert unit_sizes(units, "tokens").tolist() == [4, 1]
    assert unit_sizes(units, "units").tolist() == [1, 1]
    with pytest.raises(fs.InputError, match="tokens"):
        unit_sizes((Unit("a b", 0, 3),), "tokens")  # units of generated text carry no tokens
    with pytest.raises(fs.InputError):
        unit_sizes(units, "chars")


def test_bad_fraction_of():
    with pytest.raises(fs.InputError, match="fraction_of"):
        get_metric("perturbation_curve", fraction_of="sentences")
    assert get_metric("perturbation_curve").params()["fraction_of"] == "words"


def test_words_through_evaluate_on_bert(bert_adapter):
    """End to end: word units with punctuation (0 words) and a token count per unit."""
    text = "a gorgeous , witty film"
    e = fs.explain(bert_adapter, [text], "leave_one_out")[0]
    e = dataclasses.replace(e, scores=np.array([[0.1, 0.9, 0.8, 0.5, 0.2]], np.float32))
    df = fs.evaluate([e], bert_adapter, random=False, metrics=[
        ("perturbation_curve", {"steps": 2}),
        ("perturbation_curve", {"steps": 2, "fraction_of": "units"})])
    words, units = df.detail.iloc[0], df.detail.iloc[1]
    # words: 4 words (a gorgeous witty film); ranking gorgeous, ",", witty, film, a;
    # x = .25 (1 word): gorgeous; .5 (2 words): gorgeous , witty -> reached .25 and .5
    np.testing.assert_allclose(words["x"], [0, 0.25, 0.5])
    # units: ceil(.25 * 5) = 2 (gorgeous ,), ceil(.5 * 5) = 3 (+ witty) of 5 units
    np.testing.assert_allclose(units["x"], [0, 0.4, 0.6])
    assert words["y"][2] == pytest.approx(units["y"][2], abs=1e-6)  # the same 3 units removed
