"""Max / average sensitivity under embedding noise and word deletion, with known answers on
the linear bag-of-embeddings model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.metrics import get_metric
from faithscope.metrics.robustness import drop_unit, relative_change
from helpers import INPUTS, PAIR

SENTENCES = [
    "a gorgeous , witty and moving film with a charming cast",
    "the plot is thin and the acting is flat , a dull and tedious mess",
    "never boring : the music is great and the director loved every scene",
]


def test_drop_unit_keeps_the_other_units_tokens(bert_adapter):
    (it,) = fs.prepare(bert_adapter, [PAIR])
    u = 2
    new = drop_unit(it, u)
    assert new.n_units == it.n_units - 1
    assert len(new.enc) == len(it.enc) - len(it.units[u].tokens)
    others = [v for j, v in enumerate(it.units) if j != u]
    for old, v in zip(others, new.units):
        assert (old.text, old.part) == (v.text, v.part)
        np.testing.assert_array_equal(new.enc.ids[list(v.tokens)], it.enc.ids[list(old.tokens)])
        np.testing.assert_array_equal(new.enc.type_ids[list(v.tokens)],
                                      it.enc.type_ids[list(old.tokens)])
    assert new.enc.special.sum() == it.enc.special.sum()
    assert (new.token_unit >= 0).sum() == sum(len(v.tokens) for v in new.units)


def test_perturbed_embeddings_are_restored_exactly(bert_adapter):
    w = bert_adapter.model.get_input_embeddings().weight
    before = w.detach().clone()
    shift = {2000: np.full(w.shape[1], 0.5, np.float32), 2001: np.ones(w.shape[1], np.float32)}
    with bert_adapter.perturbed_embeddings(shift):
        np.testing.assert_allclose(w[2000].detach().numpy(), before[2000].numpy() + 0.5,
                                   atol=1e-6)
        assert torch.equal(w[1999], before[1999])
    assert torch.equal(w, before)


def test_relative_change():
    assert relative_change(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == 0
    assert relative_change(np.array([3.0, 4.0]), np.array([0.0, 0.0])) == 1
    assert relative_change(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == 1
    assert math.isnan(relative_change(np.zeros(2), np.ones(2)))


def test_word_drop_leaves_exact_linear_attributions_alone(linear_adapter):
    """On the linear model each unit's leave-one-out logit attribution is its own
    contribution: deleting another unit cannot change it, so the sensitivity is exactly 0."""
    exps = fs.explain(linear_adapter, INPUTS, ["leave_one_out"], target_fn="logit")
    df = fs.evaluate(exps, linear_adapter, random=False,
                     metrics=["max_sensitivity_word", "avg_sensitivity_word"])
    np.testing.assert_allclose(df["value"], 0.0, atol=1e-5)
    for d in df["detail"]:
        assert d["perturbation"] == "drop_unit" and d["n_used"] + d["n_flipped"] == 10


def test_sensitivity_grows_with_the_radius_and_ignores_input_free_explainers(bert_adapter):
    exps = fs.explain(bert_adapter, SENTENCES, ["gradient", "random"])
    small = fs.evaluate(exps, bert_adapter, random=False,
                        metrics=[("avg_sensitivity", {"radius": 1e-3, "n_samples": 3})])
    large = fs.evaluate(exps, bert_adapter, random=False,
                        metrics=[("avg_sensitivity", {"radius": 0.5, "n_samples": 3})])
    g_small = small[small.explainer == "gradient"]["value"].to_numpy()
    g_large = large[large.explainer == "gradient"]["value"].to_numpy()
    assert (g_small < 0.05).all() and (g_large > g_small).all()
    # the random baseline depends on the example id only: perfectly insensitive
    np.testing.assert_allclose(large[large.explainer == "random"]["value"], 0.0, atol=1e-6)


def test_max_and_mean_share_samples_and_flips_are_left_out():
    from faithscope.models.tiny import tiny_classifier

    model = tiny_classifier()  # some of its predictions sit near 0.5: noise flips them
    exps = fs.explain(model, SENTENCES, ["gradient_x_input"])
    kw = {"n_samples": 4, "radius": 3.0}
    df = fs.evaluate(exps, model, random=False, metrics=[
        ("max_sensitivity", kw), ("avg_sensitivity", kw),
        ("avg_sensitivity", {**kw, "exclude_flips": False})])
    for _, g in df.groupby("example_id"):
        d_max, d_avg, d_all = g["detail"].tolist()
        assert d_max["per_sample"] == d_avg["per_sample"] == d_all["per_sample"]
        assert g["value"].iloc[0] == d_max["max"] and g["value"].iloc[1] == d_avg["mean"]
        assert d_max["max"] >= d_max["mean"]
        assert d_avg["n_used"] == 4 - d_avg["n_flipped"] and d_all["n_used"] == 4
        assert d_all["mean"] == pytest.approx(np.mean(d_all["per_sample"]))
    assert sum(d["n_flipped"] for d in df["detail"]) > 0  # a large radius flips some
    assert set(df["family"]) == {"robustness"} and not df["higher_is_better"].any()


def test_word_drop_needs_a_unit_outside_the_top(bert_adapter):
    exps = fs.explain(bert_adapter, ["fine"], ["gradient"])
    df = fs.evaluate(exps, bert_adapter, random=False, metrics=["avg_sensitivity_word"])
    assert math.isnan(df["value"].iloc[0]) and df["detail"].iloc[0]["n_used"] == 0


@pytest.mark.parametrize("params", [{"n_samples": 0}, {"radius": 0.0}, {"fraction": 2.0}])
def test_validation(params):
    with pytest.raises(fs.InputError):
        get_metric("avg_sensitivity", **params)
