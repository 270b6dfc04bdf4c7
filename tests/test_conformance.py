"""Every registered explainer x three tiny models (WordPiece, byte-level BPE, SentencePiece)
x token/word granularity: output contract, determinism, batch-size invariance, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest

import faithscope as fs
from faithscope.registry import explainers as registry
from helpers import (
    INPUTS,
    PAIR,
    check_batch_invariance,
    check_round_trip,
    check_same_scores,
    check_scores,
    with_batch_size,
)

# every explainer of classifiers (self_explanation needs an LLM: see test_self_explain.py)
EXPLAINERS = [n for n in registry.names() if not registry.get(n).needs_generation]
MODELS = ["bert", "roberta", "llama"]
GRANULARITIES = ["token", "word"]

# small budgets keep the suite fast; every other explainer runs with its defaults
FAST = {
    "lime": {"n_samples": 96},
    "kernel_shap": {"n_samples": 96},
    "shapley_sampling": {"n_permutations": 6},
    "partition_shap": {"max_evals": 40},
    "integrated_gradients": {"n_steps": 8},
}
_CHEAP = (("lime", FAST["lime"]), ("kernel_shap", FAST["kernel_shap"]),
          ("integrated_gradients", FAST["integrated_gradients"]))
# ensembles run with the same small member budgets (their defaults are checked in
# test_ensemble.py); ensemble_all gets one member of each family
FAST.update({
    "ensemble": {"members": _CHEAP},
    "ensemble_top3": {"members": _CHEAP},
    "ensemble_all": {"members": (*_CHEAP, ("gradient", {}), ("attention", {}),
                                 ("partition_shap", FAST["partition_shap"]))},
})


def spec(name: str):
    return (name, FAST.get(name, {}))


def samples(name: str, d: int) -> bool:
    """Whether explainer ``name`` draws random samples for an input of ``d`` units (otherwise it
    enumerates exactly and must not depend on the seed)."""
    if name == "kernel_shap":
        return 2**d - 2 > FAST[name]["n_samples"]
    if name == "shapley_sampling":
        return math.factorial(d) > FAST[name]["n_permutations"]
    if name == "mexgen_clime":  # subsets of <= 2 units exceed the 10 d budget
        return d + math.comb(d, 2) > 10 * d
    return registry.get(name).stochastic


@pytest.fixture(scope="module")
def run(adapters):
    """run(model, granularity, explainer, seed=0, batch=64) -> explanations, memoised."""
    cache: dict = {}
    small: dict = {}

    def _run(model: str, granularity: str, name: str, *, seed: int = 0, batch: int = 64,
             fresh: bool = False):
        key = (model, granularity, name, seed, batch)
        if fresh or key not in cache:
            adapter = adapters[model]
            if batch != adapter.max_batch_size:
                if (model, batch) not in small:
                    small[model, batch] = with_batch_size(adapter, batch)
                adapter = small[model, batch]
            cache[key] = fs.explain(adapter, INPUTS, [spec(name)], granularity=granularity,
                                    target="all", seed=seed)
        return cache[key]

    return _run


grid = pytest.mark.parametrize("granularity", GRANULARITIES)
models = pytest.mark.parametrize("model", MODELS)
names = pytest.mark.parametrize("name", EXPLAINERS)


def test_registry_has_the_eleven_explainers():
    assert set(EXPLAINERS) >= {
        "lime", "kernel_shap", "shapley_sampling", "partition_shap", "leave_one_out",
        "integrated_gradients", "gradient", "gradient_x_input", "attention",
        "attention_rollout", "random", "lrp"}


@names
@models
@grid
def test_output_contract(run, adapters, name, model, granularity):
    adapter = adapters[model]
    exps = run(model, granularity, name)
    assert len(exps) == len(INPUTS)
    expected_params = fs.make_explainer(spec(name)).params()
    for k, (e, x) in enumerate(zip(exps, INPUTS)):
        text, pair = x if isinstance(x, tuple) else (x, None)
        assert isinstance(e, fs.Explanation)
        assert (e.example_id, e.text, e.pair) == (str(k), text, pair)
        if pair is not None:
            assert {u.part for u in e.units} == {0, 1}
        assert e.targets == tuple(range(adapter.num_labels))
        assert e.target_labels == adapter.labels
        check_scores(e, adapter.num_labels)
        assert e.probs.dtype == np.float32 and e.probs.shape == (adapter.num_labels,)
        assert e.probs.sum() == pytest.approx(1.0, abs=1e-5)
        # provenance
        assert e.explainer == name
        assert dict(e.params) == expected_params
        for key, value in FAST.get(name, {}).items():
            assert e.params[key] == value
        assert e.model_id == adapter.model_id
        assert e.seed == 0
        assert e.granularity == granularity and e.target_fn == "prob"
        assert {"faithscope", "torch", "transformers", "numpy", "python"} <= set(e.versions)
        assert all(isinstance(v, str) and v for v in e.versions.values())
        assert e.runtime_s >= 0
        assert isinstance(e.info, dict)
    # the probabilities are the model's on the unperturbed input
    items = fs.prepare(adapter, INPUTS, granularity=granularity, target="all")
    for e, it in zip(exps, items):
        z = np.exp(it.logits - it.logits.max())
        np.testing.assert_allclose(e.probs, z / z.sum(), atol=1e-6)
        assert e.units == it.units


@names
@models
@grid
def test_same_seed_same_scores(run, name, model, granularity):
    first = run(model, granularity, name)
    again = run(model, granularity, name, fresh=True)
    check_same_scores(first, again)


@names
@models
@grid
def test_other_seed(run, name, model, granularity):
    """Stochastic explainers change with the seed (where they sample); the rest do not."""
    base = run(model, granularity, name)
    other = run(model, granularity, name, seed=1)
    for a, b in zip(base, other):
        assert b.seed == 1
        if samples(name, len(a.units)):
            assert not np.allclose(a.scores, b.scores), f"{name} ignores the seed"
        else:
            assert np.array_equal(a.scores, b.scores)


@names
@models
@grid
def test_batch_size_invariance(run, name, model, granularity):
    big = run(model, granularity, name, batch=64)
    one = run(model, granularity, name, batch=1)
    check_batch_invariance(big, one, name)


@names
@models
@grid
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_save_load_round_trip(run, tmp_path, name, model, granularity, suffix):
    exps = run(model, granularity, name)
    check_round_trip(exps, tmp_path / f"out{suffix}")


def test_example_major_order(bert_adapter):
    names = ["random", "leave_one_out", "gradient"]
    exps = fs.explain(bert_adapter, INPUTS, names)
    assert len(exps) == len(INPUTS) * len(names)
    assert [(e.example_id, e.explainer) for e in exps] == [
        (str(k), n) for k in range(len(INPUTS)) for n in names]
    # a single explainer on its own gives the same scores as inside a multi-explainer call
    alone = fs.explain(bert_adapter, INPUTS, "leave_one_out")
    for k, e in enumerate(alone):
        assert np.array_equal(e.scores, exps[k * len(names) + 1].scores)


def test_a_tuple_of_examples_is_many_inputs_and_a_text_pair_is_one(bert_adapter):
    from faithscope.data import Example

    examples = (Example(id="a", text="a good film"), Example(id="b", text="a dull plot"))
    assert [e.example_id for e in fs.explain(bert_adapter, examples, "gradient")] == ["a", "b"]
    (pair,) = fs.explain(bert_adapter, ("a good film", "a dull plot"), "gradient")
    assert pair.pair == "a dull plot"


def test_default_target_is_the_prediction(roberta_adapter):
    exps = fs.explain(roberta_adapter, INPUTS, ["leave_one_out"])
    both = fs.explain(roberta_adapter, INPUTS, ["leave_one_out"], target="all")
    for e, a in zip(exps, both):
        assert e.targets == (e.predicted,)
        assert e.scores.shape == (1, len(e.units))
        np.testing.assert_array_equal(e.scores[0], a.row(e.predicted))
    picked = fs.explain(roberta_adapter, INPUTS[:1], ["leave_one_out"], target=[2, 0])[0]
    assert picked.targets == (2, 0)
    # one input instead of three changes the batch composition: float32 noise only
    np.testing.assert_allclose(picked.scores, both[0].scores[[2, 0]], atol=1e-6, rtol=0)


@pytest.mark.parametrize("target_fn", ["prob", "logit", "log_prob", "contrast"])
def test_target_functions(bert_adapter, target_fn):
    e = fs.explain(bert_adapter, INPUTS[:1], ["leave_one_out"], target_fn=target_fn,
                   target="all")[0]
    assert e.target_fn == target_fn and np.isfinite(e.scores).all()
    # leave-one-out by hand: f(x) - f(x with the unit's tokens -> [MASK])
    it = fs.prepare(bert_adapter, INPUTS[:1], target="all")[0]
    ids = [it.enc.ids[None]]
    for u in it.units:
        x = it.enc.ids.copy()
        x[list(u.tokens)] = bert_adapter.tokenizer.mask_token_id
        ids.append(x[None])
    lg = np.concatenate(bert_adapter.logits(ids, [it.enc.type_ids[None]] * len(ids)))
    lg = lg.astype(np.float64)
    f = {"logit": lambda z: z,
         "prob": lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True),
         "log_prob": lambda z: z - np.log(np.exp(z).sum(1, keepdims=True)),
         # with two classes, contrast(t) = logit_t - logit_other
         "contrast": lambda z: z - z[:, ::-1]}[target_fn](lg)
    np.testing.assert_allclose(e.scores, (f[0] - f[1:]).T, atol=2e-5, rtol=0)


def test_text_pairs_on_bert(bert_adapter):
    """A pair keeps its segment ids, its units split into parts, and explains differently from
    the concatenated single text."""
    e_pair = fs.explain(bert_adapter, [PAIR], ["leave_one_out", "integrated_gradients"],
                        granularity="word")
    joined = fs.explain(bert_adapter, [" ".join(PAIR)], ["leave_one_out"])[0]
    loo, ig = e_pair
    assert loo.pair == PAIR[1]
    parts = [u.part for u in loo.units]
    assert parts == sorted(parts) and parts[0] == 0 and parts[-1] == 1
    for u in loo.units:
        seg = PAIR[u.part]
        assert seg[u.start:u.end] == u.text
    enc = bert_adapter.encode(*PAIR)
    assert enc.type_ids is not None and set(enc.type_ids.tolist()) == {0, 1}
    assert len(joined.units) == len(loo.units)
    assert not np.allclose(joined.scores, loo.scores)  # token_type_ids reach the model
    # IG completeness also holds for the pair (few steps, so only roughly)
    assert abs(ig.info["delta"][0]) < 0.1 * max(abs(ig.info["f_input"][0]
                                                    - ig.info["f_baseline"][0]), 1e-3)


@names
def test_single_unit_input(bert_adapter, name):
    """d = 1: a shape-(targets, 1) result; removal-based Shapley estimators and leave-one-out
    give the whole effect f(x) - f(x without the unit) to the unit."""
    e = fs.explain(bert_adapter, ["ok"], [spec(name)], target="all")[0]
    assert e.unit_texts == ["ok"] and e.scores.shape == (2, 1)
    assert np.isfinite(e.scores).all()
    if name in ("kernel_shap", "shapley_sampling", "partition_shap", "leave_one_out"):
        enc = e.units[0].tokens
        ids = bert_adapter.encode("ok").ids
        masked = ids.copy()
        masked[list(enc)] = bert_adapter.tokenizer.mask_token_id
        lg = np.concatenate(bert_adapter.logits([ids[None], masked[None]])).astype(np.float64)
        p = np.exp(lg) / np.exp(lg).sum(1, keepdims=True)
        np.testing.assert_allclose(e.scores[:, 0], p[0] - p[1], atol=1e-6)
