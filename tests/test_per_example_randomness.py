"""Per-example randomness: an example's explanation and its metric values do not depend on the
other examples of a call, nor on their order (studies evaluate per shard).

* every registered metric that samples (``SAMPLING_METRICS``: the sensitivity metrics draw noise
  or a unit to delete, the randomization checks draw random weights) gives an example the same
  value alone, beside other examples, and in another order;
* every stochastic explainer (``stochastic = True``) does the same for its scores
  (tests/test_conformance.py checks batch-*size* invariance, the same call chunked differently;
  this is batch *composition*);
* the embedding noise of the sensitivity metrics is checked from what the model actually reads
  (a probe explainer records the word embeddings), without the implementation's noise function:
  keyed by (seed, example id, sample, token id), bounded by the radius, uniform, and the
  metric's value on the linear model follows from the observed noise by hand.

Exact equality needs an adapter that runs one row at a time (``max_batch_size=1``): with larger
chunks the padding of a row depends on its neighbours and float32 results move in the 7th digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.data import Example
from faithscope.explainers.base import Explainer
from faithscope.metrics import get_metric
from faithscope.metrics.analysis import prepared_for
from faithscope.models.tiny import tiny_classifier
from faithscope.registry import explainers as explainer_registry
from faithscope.registry import metrics as metric_registry
from helpers import ASSETS, INPUTS

# every registered metric that draws random numbers (greps of src/faithscope/metrics for
# rng / random / noise / seed): noise or a deleted unit per sample, random model weights, a
# stochastic explainer re-run under another sampling seed
SAMPLING_METRICS = ["max_sensitivity", "avg_sensitivity", "max_sensitivity_word",
                    "avg_sensitivity_word", "randomization", "randomization_independent",
                    "sampling_stability"]
FAST_METRICS: dict[str, dict[str, Any]] = {m: {"n_samples": 3} for m in SAMPLING_METRICS[:4]}

STOCHASTIC = [n for n in explainer_registry.names()
              if explainer_registry.get(n).stochastic
              and not explainer_registry.get(n).needs_generation]
_CHEAP = (("lime", {"n_samples": 48}), ("kernel_shap", {"n_samples": 48}),
          ("integrated_gradients", {"n_steps": 4}))
FAST_EXPLAINERS: dict[str, dict[str, Any]] = {
    "lime": {"n_samples": 48}, "kernel_shap": {"n_samples": 48},
    "shapley_sampling": {"n_permutations": 4},
    "ensemble": {"members": _CHEAP}, "ensemble_top3": {"members": _CHEAP},
    "ensemble_all": {"members": (*_CHEAP, ("gradient", {}), ("random", {}))},
}

# A shares words with B and C ("a", "and", "the", "film", ","): under batch-wide noise per token
# id, A's perturbations changed with its neighbours
A = Example(id="A", text="a gorgeous , witty and moving film with a charming cast")
B = Example(id="B", text="the plot is thin and the acting is flat , a dull and tedious mess")
C = Example(id="C", text="never boring : the music is great and the director loved the film")


@pytest.fixture(scope="module")
def one_row():
    """The tiny classifier running one row per forward: results are bit-exact whatever the
    batch's composition."""
    return tiny_classifier(max_batch_size=1)


@pytest.fixture(scope="module")
def batched():
    return tiny_classifier()


def _numbers(detail: dict[str, Any]) -> dict[str, np.ndarray]:
    """The numeric entries of a metric's detail, as float arrays (None -> NaN)."""
    out = {}
    for k, v in detail.items():
        if isinstance(v, bool | str) or v is None:
            continue
        if isinstance(v, int | float):
            out[k] = np.array([v], dtype=np.float64)
        elif isinstance(v, list | tuple) and all(isinstance(x, int | float) or x is None
                                                 for x in v):
            out[k] = np.array([math.nan if x is None else x for x in v], dtype=np.float64)
    return out


def _rows_of(df, example_id: str) -> list[tuple[float, dict[str, np.ndarray]]]:
    g = df[df.example_id == example_id]
    return [(float(v), _numbers(d)) for v, d in zip(g["value"], g["detail"], strict=True)]


def _assert_same(a, b, *, rtol: float = 0.0) -> None:
    assert len(a) == len(b)
    for (va, da), (vb, db) in zip(a, b, strict=True):
        np.testing.assert_allclose(va, vb, rtol=rtol, atol=0, equal_nan=True)
        assert da.keys() == db.keys()
        for k in da:
            np.testing.assert_allclose(da[k], db[k], rtol=rtol, atol=0, equal_nan=True,
                                       err_msg=k)


# ---------------------------------------------------------------------------- (a) metrics
def test_the_list_of_sampling_metrics_is_complete():
    """A registered metric with a seed or a number of samples draws random numbers: it must be
    checked below."""
    sampling = {n for n in metric_registry.names()
                if {"seed", "n_samples", "offset"} & {f.name for f in
                                                      fields(metric_registry.get(n))}}
    assert sampling == set(SAMPLING_METRICS)


@pytest.mark.parametrize("explainer", ["gradient_x_input", ("lime", {"n_samples": 32})])
@pytest.mark.parametrize("metric", SAMPLING_METRICS)
def test_a_metric_value_does_not_depend_on_the_other_examples(one_row, metric, explainer):
    exps = fs.explain(one_row, [A, B, C], [explainer], seed=3)
    spec = (metric, FAST_METRICS.get(metric, {}))
    together = fs.evaluate(exps, one_row, metrics=[spec], random=False)
    alone = fs.evaluate(exps[:1], one_row, metrics=[spec], random=False)
    reordered = fs.evaluate(exps[::-1], one_row, metrics=[spec], random=False)
    shards = [fs.evaluate(exps[:2], one_row, metrics=[spec], random=False),
              fs.evaluate(exps[2:], one_row, metrics=[spec], random=False)]
    for eid in "ABC":
        whole = _rows_of(together, eid)
        _assert_same(whole, _rows_of(reordered, eid))
        _assert_same(whole, _rows_of(shards[eid == "C"], eid))
    _assert_same(_rows_of(together, "A"), _rows_of(alone, "A"))


@pytest.mark.parametrize("metric", SAMPLING_METRICS[:4])
def test_a_sensitivity_does_not_depend_on_the_other_examples_in_large_batches(batched, metric):
    """With many rows per forward only float32 padding noise remains (with batch-wide noise
    per token id, A's default avg_sensitivity here was 0.364 alone and 0.383 beside B)."""
    exps = fs.explain(batched, [A, B, C], ["gradient_x_input"])
    spec = (metric, {"n_samples": 4})
    together = fs.evaluate(exps, batched, metrics=[spec], random=False)
    alone = fs.evaluate(exps[:1], batched, metrics=[spec], random=False)
    _assert_same(_rows_of(together, "A"), _rows_of(alone, "A"), rtol=1e-5)


@pytest.mark.parametrize("metric", ["avg_sensitivity", "avg_sensitivity_word"])
def test_all_examples_still_run_in_one_virtual_batch_per_sample(batched, metric, monkeypatch):
    """The adapter is called as often for three examples as for one: per sample, one rescoring
    and one explainer call for all examples."""
    calls: list[int] = []
    for name in ("logits", "embedding_gradients"):
        method = getattr(batched, name)

        def counted(*args, _method=method, **kw):
            calls.append(1)
            return _method(*args, **kw)

        monkeypatch.setattr(batched, name, counted)
    exps = fs.explain(batched, [A, B, C], ["gradient_x_input"])
    counts = []
    for part in (exps[:1], exps):
        calls.clear()
        fs.evaluate(part, batched, metrics=[(metric, {"n_samples": 3})], random=False)
        counts.append(len(calls))
    assert counts[0] == counts[1] > 0


def test_the_embedding_table_is_restored(batched):
    emb = batched.model.get_input_embeddings()
    weight, before = emb.weight, emb.weight.detach().clone()
    rows = emb.num_embeddings
    exps = fs.explain(batched, [A, B], ["gradient_x_input"])
    fs.evaluate(exps, batched, metrics=[("max_sensitivity", {"n_samples": 2})], random=False)
    assert emb.weight is weight and torch.equal(emb.weight, before)
    assert emb.num_embeddings == rows


def test_a_prompted_classifier_gets_per_example_noise_too():
    """A prompted classifier decodes ids into its prompt: its examples run one at a time, each
    with its own noise, and the values still do not depend on the neighbours."""
    from faithscope.models.generative import load_generative
    from faithscope.models.prompted import PromptClassifier

    lm = load_generative(str(ASSETS / "stories260K"), max_new_tokens=4, max_batch_size=1)
    clf = PromptClassifier.from_lm(lm, template="{text} Tom felt",
                                   verbalizers={"happy": [" happy"], "sad": [" sad"]})
    weight = lm.model.get_input_embeddings().weight.detach().clone()
    texts = [Example(id="p", text="Tom got a new toy."), Example(id="q", text="Tom lost a toy.")]
    exps = fs.explain(clf, texts, "leave_one_out")
    spec = ("avg_sensitivity", {"n_samples": 2, "exclude_flips": False})
    together = fs.evaluate(exps, clf, metrics=[spec], random=False)
    alone = fs.evaluate(exps[:1], clf, metrics=[spec], random=False)
    _assert_same(_rows_of(together, "p"), _rows_of(alone, "p"))
    assert np.isfinite(together["value"]).all() and (together["value"] > 0).all()
    assert torch.equal(lm.model.get_input_embeddings().weight, weight)


# ------------------------------------------------------------------------- (b) explainers
def test_there_are_stochastic_explainers():
    assert {"lime", "kernel_shap", "shapley_sampling", "random"} <= set(STOCHASTIC)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_a_stochastic_explanation_does_not_depend_on_the_other_examples(one_row, name):
    spec = (name, FAST_EXPLAINERS.get(name, {}))
    together = fs.explain(one_row, [A, B, C], [spec], seed=5, target="all")
    alone = fs.explain(one_row, [A], [spec], seed=5, target="all")
    reordered = fs.explain(one_row, [C, B, A], [spec], seed=5, target="all")
    assert [e.example_id for e in together] == ["A", "B", "C"]
    np.testing.assert_array_equal(together[0].scores, alone[0].scores)
    for e, r in zip(together, reordered[::-1], strict=True):
        assert e.example_id == r.example_id
        np.testing.assert_array_equal(e.scores, r.scores)


# -------------------------------------------------- (c) the noise, as the model reads it
@dataclass(frozen=True, kw_only=True)
class EmbeddingProbe(Explainer):
    """Records the word embeddings the model reads for each item (per call) and returns
    constant scores: an explainer that shows the metric's perturbations."""

    name = "embedding_probe"
    calls: list = field(default_factory=list)

    def attribute(self, adapter, items, target_fn):
        emb = adapter.model.get_input_embeddings()
        with torch.no_grad():
            self.calls.append([emb(torch.as_tensor(it.enc.ids)).double().numpy()
                               for it in items])
        return [np.ones((len(it.targets), it.n_units)) for it in items], [{} for _ in items]


def observed_noise(adapter, examples, *, seed: int = 0, n_samples: int = 3,
                   radius: float = 0.2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per example id: (its token ids, the noise the model read: samples x tokens x hidden),
    from one max_sensitivity call on all ``examples`` together."""
    exps = fs.explain(adapter, examples, ["gradient"])
    items = prepared_for(adapter, exps)
    probe = EmbeddingProbe()
    metric = get_metric("max_sensitivity", n_samples=n_samples, seed=seed, radius=radius,
                        exclude_flips=False)
    metric.analyse(adapter, probe, exps, items)
    assert len(probe.calls) == n_samples
    w = adapter.model.get_input_embeddings().weight.detach().double().numpy()
    return {it.example_id: (it.enc.ids, np.stack([call[k] - w[it.enc.ids]
                                                  for call in probe.calls]))
            for k, it in enumerate(items)}


def _token_noise(ids: np.ndarray, noise: np.ndarray, token: int) -> np.ndarray:
    """The noise (samples x hidden) of every occurrence of ``token``: all equal, checked."""
    pos = np.flatnonzero(ids == token)
    assert len(pos)
    for p in pos[1:]:
        np.testing.assert_array_equal(noise[:, p], noise[:, pos[0]])
    return noise[:, pos[0]]


def test_the_noise_of_an_example_is_keyed_by_seed_example_sample_and_token(one_row):
    tok = one_row.tokenizer
    film, the = tok.convert_tokens_to_ids("film"), tok.convert_tokens_to_ids("the")
    text_a2 = "the film and the music"  # shares "film", "and", "the" ... with A, B, C
    together = observed_noise(one_row, [A, B, C])
    alone = observed_noise(one_row, [A])
    reordered = observed_noise(one_row, [C, A])
    for other in (alone, reordered):  # same example id and seed: the same perturbation
        np.testing.assert_array_equal(together["A"][1], other["A"][1])
    np.testing.assert_array_equal(together["C"][1], reordered["C"][1])
    # the same text under another id: other noise; another text under the same id: the same
    # noise for the tokens they share (keyed by token id, not position or neighbours)
    renamed = observed_noise(one_row, [Example(id="Z", text=A.text)])
    assert not np.allclose(renamed["Z"][1], together["A"][1])
    same_id = observed_noise(one_row, [Example(id="C", text=text_a2)])
    for token in (film, the):
        np.testing.assert_array_equal(_token_noise(*same_id["C"], token),
                                      _token_noise(*together["C"], token))
    # one word in two examples: each its own noise; samples and seeds differ too
    a_film, c_film = (_token_noise(*together[k], film) for k in "AC")
    assert not np.allclose(a_film, c_film)
    assert not np.allclose(a_film[0], a_film[1])
    reseeded = observed_noise(one_row, [A], seed=1)
    assert not np.allclose(_token_noise(*reseeded["A"], film), a_film)


def test_the_noise_is_uniform_within_the_radius_and_spares_special_tokens(one_row):
    radius = 0.2
    sigma = float(one_row.embedding_matrix().double().std())
    half = radius * sigma
    seen = observed_noise(one_row, [A, B, C], n_samples=4, radius=radius)
    special = sorted(one_row.special_ids)
    pooled = []
    for ids, noise in seen.values():
        is_special = np.isin(ids, special)
        assert is_special.sum() == 2  # [CLS] ... [SEP]
        assert (noise[:, is_special] == 0).all()
        real = noise[:, ~is_special]
        assert (np.abs(real) <= half * (1 + 1e-5)).all()
        assert (np.abs(real).max(axis=-1) > 0).all()
        for t in np.unique(ids[~is_special]):  # one vector per token id and sample
            pooled.append(_token_noise(ids, noise, int(t)).ravel() / half)
    u = np.concatenate(pooled)  # ~ Uniform(-1, 1): mean 0, standard deviation 1 / sqrt(3)
    assert len(u) > 2000
    assert abs(u.mean()) < 4 / math.sqrt(3 * len(u))
    assert u.std() == pytest.approx(1 / math.sqrt(3), rel=0.05)
    assert u.min() < -0.97 and u.max() > 0.97


def test_embedding_noise_on_the_linear_model_from_the_observed_noise(linear_adapter):
    """Gradient x input of the logit on the linear model is (E[id] + noise) . W_c per token:
    the change of each unit's score is its tokens' noise times W_c. The noise is read off the
    model (each example probed alone), the metric runs on all examples together."""
    metric = get_metric("max_sensitivity", n_samples=3, exclude_flips=False)
    exps = fs.explain(linear_adapter, INPUTS, ["gradient_x_input"], target_fn="logit")
    df = fs.evaluate(exps, linear_adapter, metrics=[metric], random=False)
    W = linear_adapter.model.W.detach().double().numpy()
    for k, (e, d) in enumerate(zip(exps, df["detail"], strict=True)):
        text = INPUTS[k] if isinstance(INPUTS[k], str) else INPUTS[k][0]
        pair = None if isinstance(INPUTS[k], str) else INPUTS[k][1]
        ((_, noise),) = observed_noise(linear_adapter, [Example(id=e.example_id, text=text,
                                                                pair=pair)]).values()
        c = e.targets[0]
        a = e.scores[0].astype(np.float64)
        per = [np.linalg.norm([sum(noise[s, t] @ W[:, c] for t in u.tokens) for u in e.units])
               / np.linalg.norm(a) for s in range(3)]
        np.testing.assert_allclose(d["per_sample"], per, rtol=1e-4)
        assert d["max"] == pytest.approx(max(per), rel=1e-4)
        assert d["mean"] == pytest.approx(np.mean(per), rel=1e-4)


def test_token_noise_is_the_documented_philox_stream():
    """The noise function against its definition, built here independently: uniform draws of
    a Philox generator with key (seed, BLAKE2b-64 of the example id) at counter
    (0, 0, sample, token id)."""
    import hashlib

    from faithscope.metrics.robustness import token_noise

    ids = [7, 2054, 7, 30000]
    got = token_noise(3, "ex-1", 2, ids, 40, 0.25)
    key = int.from_bytes(hashlib.blake2b(b"ex-1", digest_size=8).digest(), "little")
    for k, t in enumerate(ids):
        gen = np.random.Generator(np.random.Philox(key=[3, key], counter=[0, 0, 2, t]))
        np.testing.assert_array_equal(got[k], gen.uniform(-0.25, 0.25, 40).astype(np.float32))
    np.testing.assert_array_equal(token_noise(3, "ex-1", 2, ids[2:3], 40, 0.25), got[2:3])
