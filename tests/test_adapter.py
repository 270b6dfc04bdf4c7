"""ModelAdapter (batching, OOM back-off, encoding, token ids), input validation of the public
API, model loading from local checkpoints, and the Explanation helpers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.api import resolve_targets
from faithscope.data import Example
from faithscope.explanation import normalize
from faithscope.models import ModelLoadError
from faithscope.units import Unit
from helpers import ASSETS, INPUTS, PAIR, SENTENCES, with_batch_size

MIXED = ["a", "a gorgeous , witty and tender film about nothing much at all", "so-so",
         "the plot is thin .", "it is not, by any measure, a good film", "ok"]


# ------------------------------------------------------------------------------ batching
def _blocks(adapter, texts):
    """Blocks of 1-3 rows that share a length (the contract of ModelAdapter.logits)."""
    out = []
    for k, t in enumerate(texts):
        ids = adapter.encode(t).ids
        out.append(np.repeat(ids[None], 1 + k % 3, axis=0))
    return out


@pytest.mark.parametrize("model", ["bert", "roberta", "llama"])
def test_logits_in_input_order_for_mixed_lengths(adapters, model):
    adapter = with_batch_size(adapters[model], 2)
    blocks = _blocks(adapter, MIXED)
    out = adapter.logits(blocks)
    assert [o.shape for o in out] == [(len(b), adapter.num_labels) for b in blocks]
    assert adapter.stats.forward_rows == sum(len(b) for b in blocks)
    assert adapter.stats.chunks == -(-sum(len(b) for b in blocks) // 2)
    for b, o in zip(blocks, out):
        alone = adapters[model].logits([b[:1]])[0][0]
        for row in o:  # repeated rows agree, and match an unbatched run
            np.testing.assert_allclose(row, alone, atol=1e-5, rtol=0)
    # different inputs really give different logits (so the order check means something)
    firsts = np.stack([o[0] for o in out])
    assert len(np.unique(firsts.round(4), axis=0)) == len(MIXED)


def test_logits_with_token_type_ids(bert_adapter):
    enc = bert_adapter.encode(*PAIR)
    with_types = bert_adapter.logits([enc.ids[None]], [enc.type_ids[None]])[0]
    without = bert_adapter.logits([enc.ids[None]])[0]
    assert not np.allclose(with_types, without)
    np.testing.assert_allclose(bert_adapter.predict_proba([enc])[0],
                               np.exp(with_types[0]) / np.exp(with_types[0]).sum(), atol=1e-6)


def test_interpolated_logits_at_alpha_one_are_the_logits(bert_adapter):
    encs = [bert_adapter.encode(t) for t in SENTENCES]
    inter = bert_adapter.interpolated_logits(encs, alphas=(1.0,), baseline="pad")
    for enc, lg in zip(encs, inter):
        np.testing.assert_allclose(lg[0], bert_adapter.logits([enc.ids[None]])[0][0],
                                   atol=1e-5)


def test_plain_tensor_output_and_config_free_labels(linear_adapter):
    assert linear_adapter.labels == ("LABEL_0", "LABEL_1")
    assert linear_adapter.pooling == "first"
    out = linear_adapter.logits([linear_adapter.encode("a film").ids[None]])[0]
    assert out.shape == (1, 2) and out.dtype == np.float32


# ------------------------------------------------------------------------------ OOM
def _oom_when_more_than(adapter, monkeypatch, limit, error):
    original = adapter.forward
    seen = []

    def forward(inputs, **kw):
        rows = inputs["input_ids"].shape[0]
        seen.append(rows)
        if rows > limit:
            raise error
        return original(inputs, **kw)

    monkeypatch.setattr(adapter, "forward", forward)
    return seen


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
], ids=["OutOfMemoryError", "RuntimeError"])
def test_oom_back_off_gives_the_same_results(bert_adapter, monkeypatch, error):
    specs = [("lime", {"n_samples": 40}), ("integrated_gradients", {"n_steps": 6}),
             "attention_rollout"]
    reference_64 = fs.explain(with_batch_size(bert_adapter, 64), INPUTS, specs, target="all")
    reference_2 = fs.explain(with_batch_size(bert_adapter, 2), INPUTS, specs, target="all")
    adapter = with_batch_size(bert_adapter, 64)
    seen = _oom_when_more_than(adapter, monkeypatch, 3, error)
    out = fs.explain(adapter, INPUTS, specs, target="all")
    assert adapter.stats.oom_retries > 0
    assert max(seen) > 3 and adapter._batch <= 3
    # 64 -> 32 -> 16 -> 8 -> 4 -> 2: afterwards it chunks exactly like max_batch_size=2
    assert adapter.stats.oom_retries == 5
    for a, b, c in zip(out, reference_2, reference_64):
        assert np.array_equal(a.scores, b.scores)
        assert np.allclose(a.scores, c.scores, atol=1e-5, rtol=0)
    # no rows were lost or run twice after a failure
    fresh = with_batch_size(bert_adapter, 2)
    fs.explain(fresh, INPUTS, specs, target="all")
    assert adapter.stats.forward_rows == fresh.stats.forward_rows
    assert adapter.stats.backward_rows == fresh.stats.backward_rows


def test_oom_at_batch_size_one_propagates(bert_adapter, monkeypatch):
    adapter = with_batch_size(bert_adapter, 4)
    _oom_when_more_than(adapter, monkeypatch, 0, torch.cuda.OutOfMemoryError("out of memory"))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        adapter.logits([adapter.encode("a film").ids[None]])
    assert adapter.stats.oom_retries == 2  # 4 -> 2 -> 1, then it gives up


@pytest.mark.parametrize("error", [ValueError("boom"), RuntimeError("shape mismatch")])
def test_other_errors_propagate(bert_adapter, monkeypatch, error):
    adapter = with_batch_size(bert_adapter, 64)
    _oom_when_more_than(adapter, monkeypatch, 0, error)
    with pytest.raises(type(error), match=str(error)):
        fs.explain(adapter, INPUTS, "leave_one_out")
    assert adapter.stats.oom_retries == 0 and adapter._batch == 64


# ------------------------------------------------------------------------------ token ids
def test_token_id_fallbacks(bert_adapter, llama_adapter, linear_adapter):
    tok = bert_adapter.tokenizer
    assert bert_adapter.token_id("mask") == tok.mask_token_id == 103
    assert bert_adapter.token_id("unk") == 100 and bert_adapter.token_id("pad") == 0
    # SentencePiece (stories260K) has no mask and no pad token: mask -> unk; pad -> eos, which
    # the adapter installed as the pad token
    sp = llama_adapter.tokenizer
    assert sp.mask_token_id is None
    assert llama_adapter.token_id("mask") == sp.unk_token_id == 0
    assert llama_adapter.token_id("pad") == sp.eos_token_id == 2
    assert llama_adapter.model.config.pad_token_id == 2


class _BareTokenizer:
    """Just enough of a tokenizer for the adapter's constructor."""

    def __init__(self, **ids):
        for name in ("pad", "eos", "unk", "mask"):
            setattr(self, f"{name}_token_id", ids.get(name))
        self.model_max_length = 16


def test_token_id_without_special_tokens(linear_adapter):
    tok = _BareTokenizer(eos=5)
    adapter = fs.ModelAdapter(linear_adapter.model, tok)
    assert tok.pad_token_id == 5  # eos is the pad fallback
    assert adapter.token_id("mask") == 5 and adapter.token_id("unk") == 5
    tok = _BareTokenizer()
    adapter = fs.ModelAdapter(linear_adapter.model, tok)
    assert tok.pad_token_id == 0
    tok.pad_token_id = None
    with pytest.raises(fs.InputError, match="no mask token"):
        adapter.token_id("mask")


def test_max_batch_size_must_be_positive(linear_adapter):
    with pytest.raises(fs.InputError):
        fs.ModelAdapter(linear_adapter.model, linear_adapter.tokenizer, max_batch_size=0)


# ------------------------------------------------------------------------------ encoding
@pytest.mark.parametrize("text,pair", [("", None), ("   \t", None), ("fine", ""),
                                       ("fine", "  ")])
def test_empty_text_is_an_input_error(bert_adapter, text, pair):
    with pytest.raises(fs.InputError, match="empty"):
        bert_adapter.encode(text, pair)
    with pytest.raises(fs.InputError):
        fs.explain(bert_adapter, [(text, pair) if pair is not None else text], "random")


def test_too_long_text_warns_and_truncates(bert_adapter):
    adapter = fs.ModelAdapter(bert_adapter.model, bert_adapter.tokenizer, max_length=8)
    text = "one two three four five six seven eight nine ten"
    with pytest.warns(UserWarning, match="truncated"):
        enc = adapter.encode(text)
    assert enc.truncated and len(enc) == 8
    assert enc.sequence_ids[0] is None and enc.sequence_ids[-1] is None
    with pytest.raises(fs.InputError, match="more than"):
        adapter.encode(text, strict=True)
    with pytest.raises(fs.InputError):
        fs.explain(adapter, [text], "random", strict=True)
    with pytest.warns(UserWarning):
        e = fs.explain(adapter, [text], "leave_one_out")[0]
    # only the six words the model saw are units
    assert e.unit_texts == ["one", "two", "three", "four", "five", "six"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not adapter.encode("one two").truncated


def test_truncated_pair(bert_adapter):
    adapter = fs.ModelAdapter(bert_adapter.model, bert_adapter.tokenizer, max_length=10)
    with pytest.warns(UserWarning):
        enc = adapter.encode("one two three four five", "six seven eight nine")
    assert len(enc) == 10
    with pytest.warns(UserWarning, match="truncated"):
        e = fs.explain(adapter, [("one two three four five", "six seven eight nine")],
                       "leave_one_out")
    units = e[0].units
    assert {u.part for u in units} == {0, 1}
    assert all(u.tokens for u in units)


def test_max_length_is_inferred(bert_adapter, roberta_adapter):
    assert bert_adapter.max_length == 128  # max_position_embeddings
    assert roberta_adapter.max_length == 128  # 130 minus RoBERTa's padding offset


# ------------------------------------------------------------------------------ targets
def test_resolve_targets(roberta_adapter):
    logits = np.array([0.1, 2.0, -1.0])
    assert resolve_targets(roberta_adapter, None, logits) == (1,)
    assert resolve_targets(roberta_adapter, "predicted", logits) == (1,)
    assert resolve_targets(roberta_adapter, "all", logits) == (0, 1, 2)
    assert resolve_targets(roberta_adapter, 2, logits) == (2,)
    assert resolve_targets(roberta_adapter, np.int64(0), logits) == (0,)
    assert resolve_targets(roberta_adapter, [2, 0], logits) == (2, 0)
    assert resolve_targets(roberta_adapter, "LABEL_2", logits) == (2,)
    for bad in (3, -1, [0, 5], True, "LABEL_9", 1.0):
        with pytest.raises(fs.InputError, match="out of range"):
            resolve_targets(roberta_adapter, bad, logits)


def test_target_out_of_range_in_explain(bert_adapter):
    with pytest.raises(fs.InputError, match="out of range"):
        fs.explain(bert_adapter, SENTENCES, "random", target=2)


# ------------------------------------------------------------------------------ validation
def test_unknown_explainer_suggests_close_name(bert_adapter):
    with pytest.raises(fs.InputError, match="did you mean 'lime'"):
        fs.explain(bert_adapter, SENTENCES, "lmie")
    with pytest.raises(fs.InputError, match="unknown explainer 'zzz'"):
        fs.make_explainer("zzz")


def test_unknown_target_fn_suggests_close_name(bert_adapter):
    with pytest.raises(fs.InputError, match="did you mean 'logit'"):
        fs.explain(bert_adapter, SENTENCES, "random", target_fn="logits")


@pytest.mark.parametrize("spec", [
    ("lime", {"n_samples": 0}), ("lime", {"n_samples": -5}), ("kernel_shap", {"n_samples": 0}),
    ("shapley_sampling", {"n_permutations": -1}), ("partition_shap", {"max_evals": 0}),
    ("integrated_gradients", {"n_steps": 0}), ("lime", {"n_samples": 10.5}),
    ("lime", {"mask": "blank"}), ("integrated_gradients", {"baseline": "noise"}),
    ("integrated_gradients", {"method": "simpson"}), ("attention", {"layers": "first"}),
    ("attention", {"query": "cls"}), ("lime", {"n_sample": 10}),
])
def test_bad_hyper_parameters(bert_adapter, spec):
    with pytest.raises(fs.InputError):
        fs.make_explainer(spec)
    with pytest.raises(fs.InputError):
        fs.explain(bert_adapter, SENTENCES, [spec])


def test_bad_instance_is_validated_too():
    with pytest.raises(fs.InputError, match="n_samples must be a positive integer"):
        fs.make_explainer(fs.explainers.Lime(n_samples=0))


def test_make_explainer_forms():
    a = fs.make_explainer("lime", n_samples=7)
    b = fs.make_explainer(("lime", {"n_samples": 7}))
    c = fs.make_explainer(fs.explainers.Lime(n_samples=7))
    assert a == b == c and a.params()["n_samples"] == 7


def test_bad_granularity_and_input_type(bert_adapter):
    with pytest.raises(fs.InputError, match="granularity"):
        fs.explain(bert_adapter, SENTENCES, "random", granularity="sentence")
    with pytest.raises(fs.InputError, match="cannot explain"):
        fs.explain(bert_adapter, [42], "random")


def test_examples_keep_ids_and_are_order_invariant(bert_adapter):
    """Random draws depend on (seed, example id), not on the position in the call."""
    exs = [Example(id="first", text=SENTENCES[0]), Example(id="second", text=SENTENCES[1])]
    spec = ("lime", {"n_samples": 50})
    fwd = fs.explain(bert_adapter, exs, spec)
    rev = fs.explain(bert_adapter, exs[::-1], spec)
    assert [e.example_id for e in fwd] == ["first", "second"]
    assert [e.example_id for e in rev] == ["second", "first"]
    np.testing.assert_allclose(fwd[0].scores, rev[1].scores, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fwd[1].scores, rev[0].scores, atol=1e-6, rtol=0)


def test_single_input_and_single_explainer_forms(bert_adapter):
    one = fs.explain(bert_adapter, SENTENCES[0], "random")
    assert len(one) == 1 and one[0].text == SENTENCES[0]
    pair = fs.explain(bert_adapter, PAIR, "random")
    assert len(pair) == 1 and pair[0].pair == PAIR[1]
    # one (name, params) spec is one explainer, not a sequence of two
    spec = fs.explain(bert_adapter, SENTENCES, ("lime", {"n_samples": 20}))
    assert [e.explainer for e in spec] == ["lime", "lime"]
    assert spec[0].params["n_samples"] == 20
    assert fs.explain(bert_adapter, [], "random") == []


# ------------------------------------------------------------------------------ loading
@pytest.fixture(scope="module")
def saved_bert(tmp_path_factory, bert_adapter):
    path = tmp_path_factory.mktemp("ckpt") / "tiny-bert"
    bert_adapter.model.save_pretrained(path)
    bert_adapter.tokenizer.save_pretrained(path)
    return path


def test_load_model_round_trip(saved_bert, bert_adapter):
    adapter = fs.load_model(saved_bert, device="cpu")
    assert adapter.model_id == str(saved_bert)
    assert adapter.revision and adapter.revision.startswith("local-")
    assert adapter.model.config._attn_implementation == "sdpa"  # fused attention by default
    enc = adapter.encode(*PAIR)
    np.testing.assert_allclose(adapter.logits([enc.ids[None]], [enc.type_ids[None]])[0],
                               bert_adapter.logits([enc.ids[None]], [enc.type_ids[None]])[0],
                               atol=1e-5)
    labelled = fs.load_model(saved_bert, labels=["neg", "pos"], device="cpu")
    assert labelled.labels == ("neg", "pos")
    e = fs.explain(labelled, SENTENCES[0], "leave_one_out", target="pos")[0]
    assert e.targets == (1,) and e.target_labels == ("pos",)


def test_load_bare_decoder_adds_a_seeded_head():
    """stories260K is a LlamaForCausalLM: it gets a new, seeded classification head."""
    a = fs.load_model(ASSETS / "stories260K", num_labels=3, device="cpu", seed=1)
    b = fs.load_model(ASSETS / "stories260K", num_labels=3, device="cpu", seed=1)
    c = fs.load_model(ASSETS / "stories260K", num_labels=3, device="cpu", seed=2)
    assert a.num_labels == 3 and a.pooling == "last"
    enc = a.encode("Once upon a time there was a cat.")
    la, lb, lc = (m.logits([enc.ids[None]])[0] for m in (a, b, c))
    np.testing.assert_array_equal(la, lb)
    assert not np.allclose(la, lc)
    e = fs.explain(a, ["Once upon a time there was a cat."], ["attention_rollout",
                   ("integrated_gradients", {"n_steps": 4})], target="all")
    assert all(x.scores.shape == (3, 9) for x in e)


def test_attention_under_sdpa_switches_to_eager_temporarily():
    a = fs.load_model(ASSETS / "stories260K", num_labels=2, device="cpu",
                      attn_implementation="sdpa")
    assert a.model.config._attn_implementation == "sdpa"
    att = a.attentions([a.encode("Once upon a time")])[0]
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    assert a.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("bad", ["/nonexistent/model/dir", "./missing-model"])
def test_load_model_missing_path(bad):
    with pytest.raises(ModelLoadError, match="does not exist"):
        fs.load_model(bad)


def test_load_model_bad_dtype(saved_bert):
    with pytest.raises(fs.InputError, match="dtype"):
        fs.load_model(saved_bert, dtype="int8")


# ------------------------------------------------------------------------------ Explanation
def _explanation(scores, texts=("good", "bad", "film"), **kw):
    units, pos = [], 0
    for k, t in enumerate(texts):
        units.append(Unit(t, pos, pos + len(t), 0, (k + 1,)))
        pos += len(t) + 1
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    defaults = dict(example_id="0", text=" ".join(texts), pair=None, units=tuple(units),
                    scores=scores, targets=tuple(range(len(scores))),
                    target_labels=tuple(f"L{i}" for i in range(len(scores))),
                    probs=np.full(2, 0.5), explainer="lime", params={"n_samples": 5})
    defaults.update(kw)
    return fs.Explanation(**defaults)


def test_top_k():
    e = _explanation([[0.1, -0.9, 0.5]])
    assert e.top_k(2) == [2, 0]
    assert e.top_k(2, by="abs") == [1, 2]
    assert e.top_k(0) == [] and e.top_k(-3) == []
    assert e.top_k(10) == [2, 0, 1]
    ties = _explanation([[0.5, 0.5, 0.5]])
    assert ties.top_k(3) == [0, 1, 2]  # stable
    two = _explanation([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert two.top_k(1, target=1) == [0] and two.top_k(1) == [2]
    np.testing.assert_array_equal(two.row(1), [3.0, 2.0, 1.0])


def test_normalized_kinds():
    e = _explanation([[0.2, -0.6, 0.2], [0.0, 0.0, 0.0]])
    l1 = e.normalized("l1").scores
    np.testing.assert_allclose(l1[0], [0.2, -0.6, 0.2])
    np.testing.assert_allclose(e.normalized("max").scores[0], [1 / 3, -1, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(e.normalized("minmax").scores[0], [1, 0, 1])
    np.testing.assert_allclose(e.normalized("rank").scores[0], [0.5, 1, 0.5])
    np.testing.assert_array_equal(e.normalized("none").scores, e.scores)
    for kind in ("l1", "max", "minmax"):  # an all-zero row stays zero, no NaN
        out = e.normalized(kind)
        assert out.scores.dtype == np.float32 and np.array_equal(out.scores[1], [0, 0, 0])
        assert out.units == e.units and out.explainer == e.explainer
    np.testing.assert_allclose(np.abs(_explanation([[3, -1, 4]]).normalized().scores).sum(), 1)
    with pytest.raises(ValueError, match="normalisation"):
        normalize(e.scores, "softmax")
    assert e.scores[0, 1] == np.float32(-0.6)  # the original is unchanged


def test_repr_html_escapes():
    e = _explanation([[0.5, -0.25, 0.0]], texts=("<script>alert(1)</script>", "&", "x"),
                     target_labels=("<b>pos</b>",), explainer="lime")
    out = e._repr_html_()
    assert "<script>" not in out and "<b>pos" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out and "&amp;" in out
    assert "&lt;b&gt;pos&lt;/b&gt;" in out
    assert out.count("<span") == 3


def test_explanation_validates_shape():
    with pytest.raises(ValueError, match="targets x units"):
        _explanation(np.zeros((1, 2)))
    e = _explanation([[1, 2, 3]])
    assert e.scores.dtype == np.float32 and e.predicted == 0
    assert e.unit_texts == ["good", "bad", "film"]


def test_dict_round_trip_and_equals():
    e = _explanation([[0.1, 0.2, 0.3]], info={"delta": [np.float32(0.5)], "arr": np.arange(2)})
    d = e.to_dict()
    back = fs.Explanation.from_dict(d)
    assert back.equals(e) and e.equals(back)
    other = _explanation([[0.1, 0.2, 0.3 + 1e-3]], info=e.info)
    assert not e.equals(other) and e.equals(other, atol=1e-2)
    assert not e.equals(_explanation([[0.1, 0.2, 0.3]], info=e.info, explainer="kernel_shap"))


def test_save_load_mixed_records(tmp_path, bert_adapter):
    """Different explainers, pairs and singles, info dicts, in one file."""
    exps = fs.explain(bert_adapter, INPUTS, ["integrated_gradients", "random"], target="all")
    for suffix in (".jsonl", ".parquet"):
        path = fs.save_explanations(exps, tmp_path / "sub" / f"all{suffix}")
        assert not list(path.parent.glob("*.tmp"))
        back = fs.load_explanations(path)
        assert [b.equals(a) for a, b in zip(exps, back)] == [True] * len(exps)


def test_embedding_logits_go_through_the_chunker_and_keep_the_graph(bert_adapter):
    """Embedding-space logits (the attack metric's double backpropagation) run through the
    one chunker: chunks of the batch size, the same logits as one big chunk, gradients kept."""
    from helpers import with_batch_size

    encs = [bert_adapter.encode(t) for t in ("a good film", "a dull plot , really", "fine")]
    x, _ = bert_adapter.embedding_inputs(encs, None)
    small = with_batch_size(bert_adapter, 1)
    before = small.stats.chunks
    z = x.clone().requires_grad_(True)
    lg = small.embedding_logits(encs, z)
    assert small.stats.chunks - before == 3
    want = bert_adapter.logits([e.ids[None] for e in encs], [e.type_ids[None] for e in encs])
    np.testing.assert_allclose(lg.detach().numpy(), np.concatenate(want), atol=1e-5)
    (g,) = torch.autograd.grad(lg[:, 1].sum(), z, create_graph=True)
    assert g.requires_grad and float(g.abs().sum()) > 0
