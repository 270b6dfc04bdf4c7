"""The shared engine: vectorised mask de-duplication, chunks assembled from row blocks, items
explained in bounded groups (memory flat in the number of inputs, the same results), the
default ``max_batch_size`` from the device and the model's size (the CUDA branch exercised with
made-up numbers), and SDPA attention by default with the attention explainers still working.
Throughput and peak memory are measured by ``benchmarks/bench_engine.py``, not here."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.explainers.base import estimated_rows, item_groups, unique_rows
from faithscope.models import batching
from faithscope.models.adapter import InputError
from faithscope.models.batching import RowBlocks, default_batch_size, resolve_batch_size
from faithscope.models.tiny import tiny_classifier
from faithscope.registry import explainers as explainer_registry
from helpers import ASSETS, INPUTS, PAIR, SENTENCES

FAST = [("lime", {"n_samples": 40}), ("kernel_shap", {"n_samples": 40}),
        ("shapley_sampling", {"n_permutations": 4}), ("partition_shap", {"max_evals": 30}),
        "leave_one_out", ("integrated_gradients", {"n_steps": 4}), "gradient",
        "mexgen_clime", "mexgen_lshap", "random", "attention_rollout",
        ("lime", {"n_samples": 40, "mask": "delete"})]


# ------------------------------------------------------------------ unique rows
@pytest.mark.parametrize("d", [0, 1, 7, 8, 9, 64, 65, 130])
@pytest.mark.parametrize("n", [0, 1, 300])
def test_unique_rows_is_numpys_unique(d, n):
    rng = np.random.default_rng(d * 1000 + n)
    m = rng.random((n, d)) < rng.uniform(0.2, 0.8)
    m[n // 2 :] = m[: n - n // 2]  # duplicates
    got, inverse = unique_rows(m)
    want, want_inv = np.unique(m, axis=0, return_inverse=True)
    assert got.shape == want.shape and np.array_equal(got, want)
    if n:
        assert np.array_equal(inverse, want_inv.reshape(-1))


# ------------------------------------------------------------------ row blocks
def test_row_blocks_assemble_chunks_in_length_order():
    rng = np.random.default_rng(0)
    blocks = [rng.integers(5, 50, size=(k, w)) for k, w in [(3, 4), (5, 2), (1, 4), (4, 3)]]
    rb = RowBlocks(blocks, pad=0)
    rows = np.concatenate([np.pad(b, ((0, 0), (0, 4 - b.shape[1]))) for b in blocks])
    lengths = np.concatenate([[b.shape[1]] * len(b) for b in blocks])
    order = np.argsort(lengths, kind="stable")  # the adapter's plan: stable by length
    assert np.array_equal(rb.lengths, lengths[order])
    for a, b in [(0, 13), (0, 5), (4, 9), (7, 8), (12, 13)]:  # chunks across block borders
        w = int(rb.lengths[a:b].max())
        assert np.array_equal(rb.rows(a, b), rows[order][a:b, :w])
    assert np.array_equal(rb.restore(np.arange(13)[:, None]).ravel(), np.argsort(order))


def test_logits_of_mixed_blocks_match_one_row_at_a_time(bert_adapter):
    encs = [bert_adapter.encode(t) for t in SENTENCES] + [bert_adapter.encode(*PAIR)]
    blocks = [np.repeat(e.ids[None], 1 + 2 * k, 0) for k, e in enumerate(encs)]
    types = [np.broadcast_to(e.type_ids, b.shape) for e, b in zip(encs, blocks, strict=True)]
    big = fs.ModelAdapter(bert_adapter.model, bert_adapter.tokenizer, max_batch_size=4)
    got = big.logits(blocks, types)
    for e, g in zip(encs, got, strict=True):
        one = bert_adapter.logits([e.ids[None]], [e.type_ids[None]])[0]
        np.testing.assert_allclose(g, np.repeat(one, len(g), 0), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ groups of items
def test_item_groups_respect_the_row_bound():
    items = [types.SimpleNamespace(n_units=u, targets=(0,)) for u in (3, 9, 4, 20, 2)]
    exp = fs.make_explainer(("shapley_sampling", {"n_permutations": 10}))
    rows = [estimated_rows(exp, it) for it in items]
    assert rows == [40, 100, 50, 210, 30]
    groups = item_groups(exp, items, max_rows=150)
    assert groups == [slice(0, 2), slice(2, 3), slice(3, 4), slice(4, 5)]
    assert item_groups(exp, items) == [slice(0, 5)]
    assert item_groups(exp, []) == []
    for name in explainer_registry.names():  # every explainer has a positive estimate
        e = explainer_registry.build(name, {})
        assert estimated_rows(e, items[1]) >= 1


def test_grouped_explain_gives_the_same_explanations():
    """One row at a time (max_batch_size=1), so float results cannot depend on the batch."""
    adapter = tiny_classifier(max_batch_size=1)
    whole = fs.explain(adapter, INPUTS, FAST, target="all")
    apart = fs.explain(adapter, INPUTS, FAST, target="all", group_rows=1)
    assert len(whole) == len(apart) == len(INPUTS) * len(FAST)
    for a, b in zip(whole, apart, strict=True):
        assert (a.example_id, a.explainer) == (b.example_id, b.explainer)
        assert np.array_equal(a.scores, b.scores), a.explainer
        assert repr(a.info) == repr(b.info), a.explainer


def test_explainers_of_one_call_share_scored_masks(monkeypatch):
    """A mask one explainer scored is not run again for the next explainer of the call: the
    same explanations (one row at a time, so exactly), fewer model rows, and each explanation
    says how many of its masks were reused. Scopes are per group and do not leak."""
    from faithscope.explainers.reuse import active

    adapter = tiny_classifier(max_batch_size=1)
    rows: list[int] = []
    real = adapter.logits

    def counting(blocks, types=None):
        rows.append(sum(len(b) for b in blocks))
        return real(blocks, types)

    monkeypatch.setattr(adapter, "logits", counting)
    spec = [("lime", {"n_samples": 300}), ("kernel_shap", {"n_samples": 300}), "leave_one_out",
            ("mexgen_clime", {"oversampling": 3.0})]
    shared = fs.explain(adapter, SENTENCES, spec, target="all")
    n_shared, rows[:] = sum(rows), []
    alone = fs.explain(adapter, SENTENCES, spec, target="all", reuse=False)
    n_alone = sum(rows)
    assert active() is None  # no scope outlives the call
    for a, b in zip(shared, alone, strict=True):
        assert np.array_equal(a.scores, b.scores), a.explainer
        assert a.info["forwards"] == b.info["forwards"] and "reused" not in b.info
    reused = {e.explainer: 0 for e in shared}
    for e in shared:
        reused[e.explainer] += e.info["reused"]
        if e.explainer == "leave_one_out":  # all its masks are among LIME's or KernelSHAP's
            assert e.info["reused"] == e.info["forwards"]
    assert reused["lime"] == 0 and reused["kernel_shap"] > 0 and reused["mexgen_clime"] > 0
    assert n_alone - n_shared == sum(reused.values())
    # with one input per group the scopes still share within each input
    grouped = fs.explain(adapter, SENTENCES, spec, target="all", group_rows=1)
    assert [e.info["reused"] for e in grouped] == [e.info["reused"] for e in shared]


def test_analyses_re_run_explainers_in_groups(monkeypatch):
    """Layer randomization, sensitivity and sampling stability re-run the explainer group by
    group (memory bounded as in explain), with the values of one call."""
    import faithscope.explainers.base as base

    adapter = tiny_classifier(max_batch_size=1)
    exps = fs.explain(adapter, SENTENCES[:2], ("lime", {"n_samples": 20}))
    metrics = [("randomization", {"embeddings": False}), ("avg_sensitivity", {"n_samples": 2}),
               "sampling_stability"]
    whole = fs.evaluate(exps, adapter, metrics, random=False)
    from faithscope.explainers.perturbation import Lime

    sizes: list[int] = []
    real = Lime.attribute

    def spy(self, adapter, items, target_fn):
        sizes.append(len(items))
        return real(self, adapter, items, target_fn)

    monkeypatch.setattr(Lime, "attribute", spy)
    monkeypatch.setattr(base, "GROUP_ROWS", 1)  # every item a group of its own
    grouped = fs.evaluate(exps, adapter, metrics, random=False)
    assert sizes and set(sizes) == {1}
    pd_cols = ["example_id", "explainer", "metric"]
    a = whole.sort_values(pd_cols).reset_index(drop=True)
    b = grouped.sort_values(pd_cols).reset_index(drop=True)
    np.testing.assert_allclose(a["value"].to_numpy(float), b["value"].to_numpy(float),
                               atol=1e-12)


def test_grouped_explain_of_generated_text_is_the_same():
    from faithscope.models.generative import load_generative

    lm = load_generative(str(ASSETS / "stories260K"), max_new_tokens=4, max_batch_size=1)
    prompts = ["Once upon a time there was a cat.", "The dog ran home. It was late."]
    spec = [("mexgen_lshap", {}), ("mexgen_clime", {"oversampling": 2.0})]
    whole = fs.explain(lm, prompts, spec, levels=("sentence", "word"))
    apart = fs.explain(lm, prompts, spec, levels=("sentence", "word"), group_rows=1)
    for a, b in zip(whole, apart, strict=True):
        assert a.units == b.units and np.array_equal(a.scores, b.scores)


# ------------------------------------------------------------------ default batch size
def test_default_batch_size_from_made_up_devices():
    minilm = {"n_params": 11_000_000, "hidden": 384, "layers": 6}
    gib = 2**30
    # GPU: half the free memory over a row's activations, a power of two, at most 4096
    assert default_batch_size(device_type="cuda", free_bytes=79 * gib, dtype_bytes=2,
                              **minilm) == 2048
    assert default_batch_size(device_type="cuda", free_bytes=139 * gib, dtype_bytes=2,
                              **minilm) == 4096
    assert default_batch_size(device_type="cuda", free_bytes=79 * gib, **minilm) == 1024
    assert default_batch_size(device_type="cuda", free_bytes=gib // 2, dtype_bytes=2,
                              **minilm) == 16
    llama7b = {"n_params": 6_500_000_000, "hidden": 4096, "layers": 32}
    assert default_batch_size(device_type="cuda", free_bytes=66 * gib, dtype_bytes=2,
                              **llama7b) == 32
    assert default_batch_size(device_type="cuda", free_bytes=10**6, **llama7b) == 1
    # CPU: compute per chunk against its overhead, bounded by activation memory
    assert default_batch_size(device_type="cpu", **minilm) == 128
    assert default_batch_size(device_type="cpu", n_params=86_000_000, hidden=768,
                              layers=12) == 32
    assert default_batch_size(device_type="cpu", n_params=2_000, hidden=8, layers=1) == 1024
    assert default_batch_size(device_type="cpu", **llama7b) == 2
    # a GPU whose free memory is unknown is planned like a CPU
    assert default_batch_size(device_type="cuda", **minilm) == 128


def test_resolve_batch_size_on_a_cuda_model(monkeypatch):
    """The CUDA branch of the resolver, from a model whose parameters say they are on a GPU
    and a patched free-memory query."""

    class Param:
        def __init__(self, n):
            self.n, self.device = n, torch.device("cuda", 0)

        def numel(self):
            return self.n

        def element_size(self):
            return 2

    emb = types.SimpleNamespace(weight=Param(11_700_000))
    model = types.SimpleNamespace(
        parameters=lambda: iter([emb.weight, Param(11_000_000)]),
        get_input_embeddings=lambda: emb,
        config=types.SimpleNamespace(hidden_size=384, num_hidden_layers=6))
    asked = []
    monkeypatch.setattr(batching.torch.cuda, "mem_get_info",
                        lambda dev: asked.append(dev) or (79 * 2**30, 80 * 2**30))
    assert resolve_batch_size(model) == 2048
    assert asked == [torch.device("cuda", 0)]


def test_adapter_resolves_and_records_its_batch_size(bert_adapter):
    auto = fs.ModelAdapter(bert_adapter.model, bert_adapter.tokenizer)
    assert auto.auto_batch_size and auto.max_batch_size == resolve_batch_size(auto.model)
    assert auto.max_batch_size == 1024  # a tiny model on a CPU: large chunks
    fixed = fs.ModelAdapter(bert_adapter.model, bert_adapter.tokenizer, max_batch_size=7)
    assert not fixed.auto_batch_size and fixed.max_batch_size == fixed._batch == 7
    from faithscope.studies.spec import StudySpec, parse_spec

    assert StudySpec.max_batch_size is None
    base = "name: x\nmodels: [{name: m, hub: a/b}]\ndatasets: [{name: sst2}]\n" \
           "explainers: [gradient]\n"
    assert parse_spec(base).max_batch_size is None
    assert parse_spec(base + "max_batch_size: auto\n").max_batch_size is None
    assert parse_spec(base + "max_batch_size: 256\n").max_batch_size == 256


# ------------------------------------------------------------------ attention
def test_sdpa_by_default_and_the_attention_explainers_still_work(tmp_path, bert_adapter):
    path = tmp_path / "bert"
    bert_adapter.save(path)
    fused = fs.load_model(path, device="cpu")
    eager = fs.load_model(path, device="cpu", attn_implementation="eager")
    assert fused.model.config._attn_implementation == "sdpa"
    specs = ["attention", "attention_rollout", "lrp", ("integrated_gradients", {"n_steps": 8}),
             ("lime", {"n_samples": 64})]
    got = fs.explain(fused, INPUTS, specs, target="all")
    want = fs.explain(eager, INPUTS, specs, target="all")
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4, rtol=1e-4,
                                   err_msg=a.explainer)
    assert fused.model.config._attn_implementation == "sdpa"  # switched back afterwards


@pytest.mark.parametrize("which", ["bert", "roberta", "llama"])
def test_batched_encoding_equals_one_at_a_time(adapters, which):
    """encode_many (the tokenizer backend's batch encoder) gives exactly what encode gives:
    ids, type ids, offsets, sequence ids; too-long and empty inputs take encode's path."""
    adapter = adapters[which]
    inputs = [("An unboxing, frankly: it's well-conceived!", None),
              ("the plot is thin.", "yet oddly moving"), ("  spaced   out  ", None),
              ("naïve café — déjà vu", "ok")]
    if which != "roberta":  # the test BPE tokenizer (a tokenizers wrapper) cannot truncate
        inputs.append(("word " * 400, None))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        many = adapter.encode_many(inputs)
        one = [adapter.encode(t, p) for t, p in inputs]
    for a, b in zip(many, one, strict=True):
        assert np.array_equal(a.ids, b.ids) and a.offsets == b.offsets
        assert a.sequence_ids == b.sequence_ids and a.truncated == b.truncated
        assert (a.type_ids is None) == (b.type_ids is None)
        assert a.type_ids is None or np.array_equal(a.type_ids, b.type_ids)
    with pytest.raises(InputError):
        adapter.encode_many([("fine", None), ("   ", None)])
