"""Ensemble explainers: normalised averages of members, presets, stored hyper-parameters."""

from __future__ import annotations

import numpy as np
import pytest

import faithscope as fs
from faithscope.explainers.ensemble import ALL, TOP3, member_spec, normalize_scores
from faithscope.explanation import normalize
from helpers import INPUTS

LIME = ("lime", {"n_samples": 64})


@pytest.mark.parametrize("normalization", ["abs", "l1", "rank"])
@pytest.mark.parametrize("member", ["gradient_x_input", LIME])
def test_ensemble_of_one_equals_the_member_after_normalisation(bert_adapter, member,
                                                               normalization):
    alone = fs.explain(bert_adapter, INPUTS, [member], target="all", seed=3)
    ens = fs.explain(bert_adapter, INPUTS,
                     [fs.explainers.Ensemble(members=(member,), normalization=normalization)],
                     target="all", seed=3)
    for a, e in zip(alone, ens):
        expected = {"abs": np.abs(normalize(a.scores, "l1")),
                    "l1": normalize(a.scores, "l1"),
                    "rank": normalize(a.scores, "rank")}[normalization]
        np.testing.assert_allclose(e.scores, expected, atol=1e-6, rtol=0)
        if normalization == "abs":
            np.testing.assert_allclose(e.scores.sum(1), 1.0, atol=1e-5)
            assert (e.scores >= 0).all()


def test_ensemble_is_the_weighted_mean_of_normalised_members(roberta_adapter):
    members = ("gradient", LIME, "attention")
    weights = (1.0, 2.0, 1.0)
    parts = fs.explain(roberta_adapter, INPUTS, list(members), seed=1)
    ens = fs.explain(roberta_adapter, INPUTS[:1], [fs.explainers.Ensemble(
        members=members, weights=weights)], seed=1)[0]
    first = [p for p in parts if p.example_id == "0"]
    expected = sum(w * np.abs(normalize(p.scores, "l1"))
                   for w, p in zip(weights, first)) / sum(weights)
    np.testing.assert_allclose(ens.scores, expected, atol=1e-6)
    assert ens.info["members"] == ["gradient", "lime", "attention"]
    assert ens.info["forwards"] == sum(p.info["forwards"] for p in first)


def test_hyper_parameters_are_stored_verbatim_and_rebuild(tmp_path, llama_adapter):
    members = ("gradient", ("lime", {"n_samples": 32}), {"name": "attention",
                                                          "params": {"layers": "last"}})
    exps = fs.explain(llama_adapter, INPUTS[:2], [("ensemble", {"members": members,
                                                                 "normalization": "rank"})])
    e = exps[0]
    assert e.params == {"members": members, "normalization": "rank", "weights": None}
    loaded = fs.load_explanations(fs.save_explanations(exps, tmp_path / "e.parquet"))
    assert loaded[0].equals(e)
    rebuilt = fs.make_explainer((loaded[0].explainer, dict(loaded[0].params)))
    again = fs.explain(llama_adapter, INPUTS[:2], [rebuilt])
    for a, b in zip(exps, again):
        np.testing.assert_array_equal(a.scores, b.scores)


def test_presets_are_registered_with_their_members():
    assert fs.make_explainer("ensemble_top3").members == TOP3 == (
        "lime", "kernel_shap", "integrated_gradients")
    everything = fs.make_explainer("ensemble_all")
    assert everything.members == ALL
    # the ten classic methods: every registered one but the random baseline, the ensembles,
    # and the methods added later (LRP, MExGen's kernels, LLM self-explanations)
    assert set(ALL) == set(fs.registry.explainers.names()) - {
        "random", "ensemble", "ensemble_all", "ensemble_top3", "lrp", "mexgen_loo",
        "mexgen_clime", "mexgen_lshap", "self_explanation"}
    assert fs.make_explainer("ensemble").members == TOP3


def test_member_specs():
    assert member_spec("lime") == ("lime", {})
    assert member_spec(["lime", {"n_samples": 5}]) == ("lime", {"n_samples": 5})
    assert member_spec({"name": "lime", "params": {"n_samples": 5}}) == ("lime",
                                                                          {"n_samples": 5})
    with pytest.raises(fs.InputError):
        member_spec(3)
    with pytest.raises(fs.InputError, match="unknown key"):
        member_spec({"name": "lime", "n_samples": 5})


@pytest.mark.parametrize("params, match", [
    ({"members": ()}, "non-empty"),
    ({"members": "lime"}, "non-empty"),
    ({"normalization": "softmax"}, "normalization"),
    ({"weights": (1.0,)}, "weights"),
    ({"weights": (1.0, -1.0, 1.0)}, "weights"),
    ({"members": ("lme",)}, "did you mean 'lime'"),
    ({"members": (("lime", {"n_samples": 0}),)}, "n_samples"),
])
def test_validation(params, match):
    with pytest.raises(fs.InputError, match=match):
        fs.make_explainer(("ensemble", params))


def test_normalize_scores_rows():
    s = np.array([[2.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(normalize_scores(s, "abs"), [[0.5, 0.25, 0.25], [0, 0, 0]])
    np.testing.assert_allclose(normalize_scores(s, "l1"), [[0.5, -0.25, 0.25], [0, 0, 0]])


def test_ensembles_are_evaluated_like_any_explainer(bert_adapter):
    exps = fs.explain(bert_adapter, INPUTS, ["gradient", LIME, ("ensemble", {
        "members": ("gradient", LIME)})])
    df = fs.evaluate(exps, bert_adapter, metrics=["comprehensiveness", "sufficiency"])
    assert set(df["explainer"]) == {"gradient", "lime", "ensemble", "random"}
    assert df["value"].notna().all()
