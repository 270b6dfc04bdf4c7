"""Adversarial attacks on explanations: differentiable explainers, the epsilon ball, class
preservation by rejection, the two objectives, reported quantities, and the analysis rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.metrics.attack import _Scorer, attack, attack_table, top_k_size
from faithscope.models.tiny import tiny_classifier
from faithscope.targets import get_target
from helpers import REVIEWS

SENTENCES = REVIEWS
EXPLAINERS = [fs.explainers.Gradient(), fs.explainers.GradientXInput(),
              fs.explainers.IntegratedGradients(n_steps=6),
              fs.explainers.IntegratedGradients(n_steps=4, baseline="zero",
                                                method="riemann_trapezoid")]
PROB = get_target("prob")


@pytest.fixture(scope="module")
def tiny():
    return tiny_classifier()


@pytest.fixture(scope="module")
def items(tiny):
    return fs.prepare(tiny, SENTENCES)


@pytest.mark.parametrize("model", ["bert", "llama"])
@pytest.mark.parametrize("explainer", EXPLAINERS, ids=lambda e: f"{e.name}-{e.params()}")
@pytest.mark.parametrize("target_fn", ["prob", "logit"])
def test_differentiable_scores_equal_the_explainers(adapters, model, explainer, target_fn):
    adapter = adapters[model]
    its = fs.prepare(adapter, SENTENCES[:3], target="all")
    fn = get_target(target_fn)
    expected, _ = explainer.attribute(adapter, its, fn)
    x, b = adapter.embedding_inputs([it.enc for it in its], getattr(explainer, "baseline", None))
    for t in range(adapter.num_labels):
        sub = [it.__class__(**{**it.__dict__, "targets": (t,) + it.targets}) for it in its]
        z = x.clone().requires_grad_(True)
        got, _ = _Scorer(adapter, explainer, sub, fn, x.shape[1])(z, b, create_graph=False)
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g.detach().numpy(), e[t], atol=2e-5, rtol=1e-4)


def test_top_k_size():
    assert [top_k_size(n) for n in (0, 1, 6, 7, 13, 14, 20, 40)] == [0, 1, 1, 1, 1, 2, 3, 6]
    assert top_k_size(10, 0.5) == 5


@pytest.mark.parametrize("explainer", EXPLAINERS[:3], ids=lambda e: e.name)
def test_the_attack_stays_in_the_epsilon_ball_on_unit_tokens(tiny, items, explainer):
    eps = 0.05
    res = attack(tiny, explainer, items, PROB, epsilon=eps, steps=25, lr=0.05,
                 optimizer="sign")
    assert len(res) == len(items)
    for r, it in zip(res, items):
        assert r.delta.shape == (len(it.enc), tiny.embedding_matrix().shape[1])
        assert np.abs(r.delta).max() <= eps + 1e-7 and r.linf <= eps + 1e-7
        assert (r.delta[it.enc.special] == 0).all()  # special tokens are never perturbed
    assert max(r.linf for r in res) == pytest.approx(eps)  # the bound binds


def test_unconstrained_attack_keeps_the_class_by_rejection(tiny, items):
    """Large signed steps flip the class of some examples when nothing stops them (the
    distance alone, beta = 0); the unconstrained attack rejects those steps and never does."""
    kw = dict(steps=30, lr=0.5, optimizer="sign")
    free = attack(tiny, fs.explainers.Gradient(), items, PROB, objective="constrained",
                  beta=0.0, **kw)
    assert not all(r.kept_prediction for r in free)
    kept = attack(tiny, fs.explainers.Gradient(), items, PROB, **kw)
    assert all(r.kept_prediction for r in kept)
    assert sum(r.rejected for r in kept) > 0
    probs = tiny.predict_proba([it.enc for it in items])
    for r, it, p in zip(kept, items, probs):  # re-check the class at the returned delta
        z = tiny.embedding_inputs([it.enc])[0] + torch.from_numpy(r.delta)[None]
        with torch.no_grad():
            logits = tiny.embedding_logits([it.enc], z)
        assert int(logits.argmax()) == int(np.argmax(p))


def test_attacks_change_explanations_and_constrained_keeps_the_probability(tiny, items):
    un = attack(tiny, fs.explainers.GradientXInput(), items, PROB, steps=40)
    con = attack(tiny, fs.explainers.GradientXInput(), items, PROB, steps=40,
                 objective="constrained")
    for res in (un, con):
        assert np.mean([r.topk_sum_change for r in res]) > 0.5
        assert np.mean([r.rank_change for r in res]) > 0.5
        for r in res:
            assert 0 <= r.rank_change <= 1 and 0 <= r.topk_intersection <= 1
            assert r.rank_change >= 1 - r.topk_intersection - 1e-12
            assert r.top_before == tuple(np.argsort(-np.abs(r.scores_before),
                                                    kind="stable")[: r.k])
    assert np.mean([r.probability_change for r in con]) < np.mean(
        [r.probability_change for r in un])


def test_reported_quantities_by_hand(tiny, items):
    (r,) = attack(tiny, fs.explainers.Gradient(), items[:1], PROB, steps=15)
    a0, a1 = np.abs(r.scores_before), np.abs(r.scores_after)
    top = list(r.top_before)
    share0, share1 = a0[top].sum() / a0.sum(), a1[top].sum() / a1.sum()
    assert r.topk_sum_change == pytest.approx((share0 - share1) / share0, rel=1e-5)
    after = list(np.argsort(-a1, kind="stable")[: r.k])
    assert list(r.top_after) == after
    assert r.rank_change == np.mean([x != y for x, y in zip(top, after)])
    p0 = tiny.predict_proba([items[0].enc])[0]
    z = tiny.embedding_inputs([items[0].enc])[0] + torch.from_numpy(r.delta)[None]
    with torch.no_grad():
        p1 = torch.softmax(tiny.embedding_logits([items[0].enc], z), -1)[0].numpy()
    c = int(np.argmax(p0))
    assert r.probability_change == pytest.approx(abs(p0[c] - p1[c]), abs=1e-5)


def test_early_stopping(tiny, items):
    """A perturbation that cannot move (epsilon tiny, saturated at once) stops after the
    patience window instead of running every step."""
    res = attack(tiny, fs.explainers.Gradient(), items[:2], PROB, epsilon=1e-3, steps=200,
                 lr=1.0, optimizer="sign", patience=5)
    assert all(r.steps < 20 for r in res)


def test_the_analysis_rows_and_table(tiny):
    exps = fs.explain(tiny, SENTENCES[:3], ["gradient", "lime"])
    df = fs.evaluate(exps, tiny, metrics=[("explanation_attack", {"steps": 10}),
                                          ("explanation_attack_constrained", {"steps": 10})])
    assert set(df["family"]) == {"adversarial"} and not df["higher_is_better"].any()
    grad = df[df.explainer == "gradient"]
    assert grad["value"].notna().all()
    for v, d, n in zip(grad["value"], grad["detail"], grad["n_units"]):
        assert v == d["rank_change"] and d["linf"] <= 2.0 and d["k"] == top_k_size(n)
    for name in ("lime", "random"):  # not differentiable in the embeddings: skipped
        rows = df[df.explainer == name]
        assert rows["value"].isna().all() and all("skipped" in d for d in rows["detail"])
    table = attack_table(df, n_boot=100)
    assert list(table["explainer"]) == ["gradient", "gradient"]
    assert sorted(table["objective"]) == ["constrained", "unconstrained"]
    un = table[table.objective == "unconstrained"].iloc[0]
    assert un["kept_prediction"] == 1.0 and un["n"] == 3
    with pytest.raises(fs.InputError, match="not differentiable"):
        attack(tiny, fs.explainers.Lime(), fs.prepare(tiny, SENTENCES[:1]), PROB)


@pytest.mark.parametrize("params", [{"epsilon": 0}, {"steps": 0}, {"top_fraction": 1.5},
                                    {"optimizer": "lbfgs"}, {"patience": 0}])
def test_validation(params):
    with pytest.raises(fs.InputError):
        fs.metrics.get_metric("explanation_attack", **params)


def test_decoder_model(llama_adapter):
    exps = fs.explain(llama_adapter, SENTENCES[:2], [("integrated_gradients", {"n_steps": 4})])
    df = fs.evaluate(exps, llama_adapter, random=False,
                     metrics=[("explanation_attack", {"steps": 8})])
    assert all(d["kept_prediction"] for d in df["detail"])
    assert not any(math.isnan(v) for v in df["value"])
