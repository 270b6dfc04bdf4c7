"""LRP (conservative propagation and AttnLRP) on the tiny BERT, RoBERTa and Llama classifiers.

Known answers: with the bias-free weights these models are initialised with, conservative
propagation (``rule="cp"``) is exactly conservative: the relevances of all input positions sum to
the explained logit (tolerance 1e-4 relative, float32). AttnLRP's softmax rule absorbs relevance
by design (Achtibat et al. 2024), so its conservation is checked with the attention outputs
switched off, where every remaining rule (LN, identity, uniform gate) must conserve.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

import faithscope as fs
from faithscope.errors import InputError
from faithscope.models.lrp import lrp_rules
from faithscope.targets import get_target
from helpers import SENTENCES

LOGIT = get_target("logit")
TEXTS = SENTENCES[:4]


def relevances(adapter, rule, texts=TEXTS):
    encs = [adapter.encode(t) for t in texts]
    targets = [tuple(range(adapter.num_labels))] * len(encs)
    rel, vals = adapter.lrp_relevance(encs, targets, LOGIT, rule=rule)
    logits = np.concatenate(adapter.logits([e.ids[None] for e in encs], _types(encs)))
    return rel, vals, logits


def _types(encs):
    if encs[0].type_ids is None:
        return None
    return [e.type_ids[None] for e in encs]


def assert_conserved(rel, logits):
    sums = np.stack([r.sum(-1) for r in rel])
    np.testing.assert_allclose(sums, logits, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def gqa_llama(sp_tokenizer):
    """Grouped-query attention (4 query heads sharing 2 key/value heads)."""
    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, num_labels=2,
                      pad_token_id=sp_tokenizer.eos_token_id, initializer_range=0.3,
                      attn_implementation="eager")
    return fs.ModelAdapter(LlamaForSequenceClassification(cfg), copy.deepcopy(sp_tokenizer))


@pytest.mark.parametrize("model", ["bert", "roberta", "llama"])
def test_cp_relevance_sums_to_the_logit(adapters, model):
    adapter = adapters[model]
    assert all(float(p.detach().abs().sum()) == 0 for n, p in adapter.model.named_parameters()
               if n.endswith("bias"))  # the models are bias-free: conservation must be exact
    rel, vals, logits = relevances(adapter, "cp")
    np.testing.assert_allclose(np.stack(vals), logits, rtol=1e-5, atol=1e-5)
    assert_conserved(rel, logits)


def test_cp_conserves_with_grouped_query_attention(gqa_llama):
    rel, _, logits = relevances(gqa_llama, "cp")
    assert_conserved(rel, logits)


def _without_attention(adapter):
    model = copy.deepcopy(adapter.model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("attention.output.dense.weight", "self_attn.o_proj.weight")):
                p.zero_()
    return fs.ModelAdapter(model, adapter.tokenizer, model_id="no-attention")


@pytest.mark.parametrize("model", ["bert", "llama"])
def test_attnlrp_conserves_outside_the_softmax(adapters, model):
    adapter = _without_attention(adapters[model])
    rel, _, logits = relevances(adapter, "attnlrp")
    assert_conserved(rel, logits)
    cp, _, _ = relevances(adapter, "cp")
    if model == "bert":  # no gate: the two rule sets coincide once attention is switched off
        for a, b in zip(rel, cp):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["bert", "llama"])
def test_attnlrp_differs_from_cp_when_attention_mixes(adapters, model):
    a, _, _ = relevances(adapters[model], "attnlrp")
    b, _, _ = relevances(adapters[model], "cp")
    assert not all(np.allclose(x, y, atol=1e-3) for x, y in zip(a, b))
    assert all(np.isfinite(x).all() for x in a)


def test_biases_absorb_relevance_and_info_reports_it(bert_adapter):
    model = copy.deepcopy(bert_adapter.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    adapter = fs.ModelAdapter(model, bert_adapter.tokenizer, model_id="biased")
    exps = fs.explain(adapter, TEXTS, "lrp", target_fn="logit")
    for e in exps:
        err = np.asarray(e.info["conservation_error"])
        total = np.asarray(e.info["relevance_sum"])
        np.testing.assert_allclose(total - err, e.info["target_value"], atol=1e-9)
    assert max(abs(np.asarray(e.info["conservation_error"])).max() for e in exps) > 1e-2


@pytest.mark.parametrize("rule", ["cp", "attnlrp"])
def test_model_is_restored(adapters, rule):
    for adapter in adapters.values():
        encs = [adapter.encode(t) for t in TEXTS]
        before = adapter.logits([e.ids[None] for e in encs], _types(encs))
        fs.explain(adapter, TEXTS, fs.explainers.LRP(rule=rule))
        after = adapter.logits([e.ids[None] for e in encs], _types(encs))
        for x, y in zip(before, after):
            assert np.array_equal(x, y)
        assert not any("forward" in m.__dict__ for m in adapter.model.modules())


def test_model_is_restored_after_an_error(bert_adapter):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    mapping = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    with pytest.raises(RuntimeError, match="boom"), lrp_rules(bert_adapter.model, "attnlrp"):
        assert any("forward" in m.__dict__ for m in bert_adapter.model.modules())
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in bert_adapter.model.modules())
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == mapping


def test_other_models_are_untouched(bert_adapter, llama_adapter):
    """Attention of a model outside the block runs its own eager code while LRP is active."""
    enc = llama_adapter.encode(TEXTS[0])
    before = llama_adapter.logits([enc.ids[None]])[0]
    with lrp_rules(bert_adapter.model, "cp"), torch.no_grad():
        during = llama_adapter.logits([enc.ids[None]])[0]
    np.testing.assert_allclose(before, during, atol=1e-6)


def test_model_without_attention_interface_is_refused(linear_adapter):
    with pytest.raises(InputError, match="attention"):
        fs.explain(linear_adapter, TEXTS[0], "lrp")


def test_unknown_rule(bert_adapter):
    with pytest.raises(InputError, match="rule"):
        fs.explain(bert_adapter, TEXTS[0], fs.explainers.LRP(rule="z+"))
