"""The architecture matrix: tiny random models of many Hugging Face architectures, and the
checks that faithscope runs on each (shared by tests/test_architectures.py and
scripts/support_table.py, which renders the README's support table from the same results).

Every model is built here, offline and seeded, in well under a second: hidden size 32, 2 layers,
2 heads. Each is paired with a fast tokenizer built from the vendored assets (faithscope needs
character offsets) whose special-token ids are the ones the config names:

* ``wordpiece``: a small WordPiece vocabulary (:func:`faithscope.models.tiny.tiny_vocab`:
  ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4) for the BERT family;
* ``bpe``: a byte-level BPE trained on 300 bundled SST-2 lines (``<s>`` 0, ``<pad>`` 1,
  ``</s>`` 2, ``<unk>`` 3, ``<mask>`` 4), with RoBERTa's ``<s> .. </s>`` post-processor
  (RoBERTa, XLM-RoBERTa, BART) or without specials (GPT-2, which has no pad token);
* ``sp``: the SentencePiece tokenizer of ``tests/assets/stories260K`` (``<unk>`` 0, ``<s>`` 1,
  ``</s>`` 2; no pad or mask token) for the Llama-style decoders and T5.

A cell of the matrix is one (architecture, column) pair: a column is an explainer (run through
the conformance contract, plus IG completeness and rollout rows for the explainers that have
them) or a removal operator (a pure replacement, checked against a hand-built input). A cell
is :data:`OK`, refused with a one-line :class:`~faithscope.errors.InputError` (the reason is
kept), or failed (anything else: a crash or a broken contract; the tests fail on it).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import faithscope as fs  # noqa: E402
from faithscope.errors import InputError  # noqa: E402
from faithscope.explainers import rollout, score_masks  # noqa: E402
from faithscope.explainers.base import OPERATORS  # noqa: E402
from faithscope.models.generative import GenerativeAdapter  # noqa: E402
from faithscope.registry import explainers as registry  # noqa: E402
from faithscope.targets import get_target  # noqa: E402

ASSETS = Path(__file__).parent / "assets"
INIT_RANGE = 0.2
HIDDEN, LAYERS, HEADS, FFN = 32, 2, 2, 64
MAX_POS = 64

# two short inputs (every word in the tiny WordPiece vocabulary)
TEXTS = ["a gorgeous , witty film", "the plot is thin and dull"]
PROMPTS = ["Tom had a big dog.", "Lily saw a bird."]
MAX_NEW_TOKENS = 4

# explainers of classifiers and of generated text; self_explanation needs a chat LLM
EXPLAINERS = [n for n in registry.names() if not registry.get(n).needs_generation]
COLUMNS = [*EXPLAINERS, *(f"op:{o}" for o in ("delete", "mask", "pad", "unk"))]
assert set(OPERATORS) == {"delete", "mask", "pad", "unk"}

# ensembles: cheap members of each family (their default members: tests/test_ensemble.py)
_CHEAP = (("lime", {"n_samples": 8}), ("integrated_gradients", {"n_steps": 2}))
FAST: dict[str, dict[str, Any]] = {
    "lime": {"n_samples": 24},
    "kernel_shap": {"n_samples": 24},
    "shapley_sampling": {"n_permutations": 2},
    "partition_shap": {"max_evals": 16},
    "mexgen_clime": {"oversampling": 1.0},
    "integrated_gradients": {"n_steps": 4},
    "ensemble": {"members": _CHEAP},
    "ensemble_top3": {"members": _CHEAP},
    "ensemble_all": {"members": (*_CHEAP, ("leave_one_out", {}))},
}
# IG completeness: Gauss-Legendre steps and the relative tolerance on f(x) - f(baseline)
IG_STEPS, IG_RTOL = 64, 0.03
OK = "ok"


def spec(name: str) -> tuple[str, dict[str, Any]]:
    return (name, FAST.get(name, {}))


# ------------------------------------------------------------------------------ tokenizers
def wordpiece_tokenizer(*, type_ids: bool = True) -> Any:
    from transformers import BertTokenizerFast

    from faithscope.models.tiny import tiny_vocab

    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tiny_vocab())}, do_lower_case=True)
    if not type_ids:  # DistilBERT, MPNet, ModernBERT tokenizers return no segment ids
        tok.model_input_names = ["input_ids", "attention_mask"]
    return tok


@functools.lru_cache(maxsize=1)
def _bpe_model() -> Any:
    from tokenizers import ByteLevelBPETokenizer

    rows = (ASSETS / "sst2_small.tsv").read_text(encoding="utf-8").splitlines()[1:301]
    bpe = ByteLevelBPETokenizer(trim_offsets=True)
    bpe.train_from_iterator([r.split("\t")[0].strip() for r in rows], vocab_size=600,
                            min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>",
                                                             "<mask>"], show_progress=False)
    return bpe


def bpe_tokenizer(*, specials: bool = True, type_ids: bool = True) -> Any:
    """RoBERTa-style (``<s> text </s>``, with pad and mask) or GPT-2-style (no specials added,
    no pad token)."""
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast, RobertaTokenizerFast

    bpe = copy.deepcopy(_bpe_model())
    if not specials:
        return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>")
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    tok = RobertaTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>")
    if not type_ids:
        tok.model_input_names = ["input_ids", "attention_mask"]
    return tok


def sp_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ASSETS / "stories260K")


# ---------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class Arch:
    """One row of the matrix: ``kind`` is ``classifier``, ``causal`` or ``seq2seq``."""

    name: str
    kind: str
    config: str  # transformers config class
    model: str  # transformers model class
    tokenizer: Callable[[], Any]
    kw: dict[str, Any] = field(default_factory=dict)
    # the embeddings number positions from padding_idx + 1, skipping pad ids (RoBERTa family)
    pad_positions: bool = False

    @property
    def label(self) -> str:
        return {"classifier": f"{self.name} (classifier)", "causal": f"{self.name} (causal LM)",
                "seq2seq": f"{self.name} (seq2seq LM)"}[self.kind]


_common = {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
           "intermediate_size": FFN, "max_position_embeddings": MAX_POS}
_wp = {**_common, "vocab_size": 200, "pad_token_id": 0}  # tiny_vocab has 196 entries
_bpe = {**_common, "vocab_size": 600, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
_sp = {**_common, "vocab_size": 512, "num_key_value_heads": HEADS, "bos_token_id": 1,
       "eos_token_id": 2, "pad_token_id": 2}  # no pad in stories260K: pad = eos (the adapters')
_decoders = {
    "GPT-2": ("GPT2Config", "GPT2", lambda: bpe_tokenizer(specials=False),
              {"vocab_size": 600, "n_embd": HIDDEN, "n_layer": LAYERS, "n_head": HEADS,
               "n_inner": FFN, "n_positions": MAX_POS, "bos_token_id": 0, "eos_token_id": 2,
               "pad_token_id": 2}),
    "Llama": ("LlamaConfig", "Llama", sp_tokenizer, _sp),
    "Mistral": ("MistralConfig", "Mistral", sp_tokenizer, {**_sp, "sliding_window": None}),
    "Qwen2": ("Qwen2Config", "Qwen2", sp_tokenizer, _sp),
    "Gemma": ("GemmaConfig", "Gemma", sp_tokenizer, {**_sp, "head_dim": HIDDEN // HEADS}),
    "Phi": ("PhiConfig", "Phi", sp_tokenizer, _sp),
}

ARCHS: list[Arch] = [
    Arch("BERT", "classifier", "BertConfig", "BertForSequenceClassification",
         wordpiece_tokenizer, _wp),
    Arch("RoBERTa", "classifier", "RobertaConfig", "RobertaForSequenceClassification",
         bpe_tokenizer, {**_bpe, "type_vocab_size": 1, "max_position_embeddings": MAX_POS + 2},
         pad_positions=True),
    Arch("XLM-RoBERTa", "classifier", "XLMRobertaConfig", "XLMRobertaForSequenceClassification",
         bpe_tokenizer, {**_bpe, "type_vocab_size": 1, "max_position_embeddings": MAX_POS + 2},
         pad_positions=True),
    Arch("DeBERTa-v2", "classifier", "DebertaV2Config", "DebertaV2ForSequenceClassification",
         wordpiece_tokenizer, {**_wp, "pooler_hidden_size": HIDDEN, "relative_attention": True,
                               "position_buckets": 8, "pos_att_type": ["p2c", "c2p"],
                               "max_relative_positions": -1}),
    Arch("ELECTRA", "classifier", "ElectraConfig", "ElectraForSequenceClassification",
         wordpiece_tokenizer, {**_wp, "embedding_size": 16}),
    Arch("DistilBERT", "classifier", "DistilBertConfig", "DistilBertForSequenceClassification",
         lambda: wordpiece_tokenizer(type_ids=False),
         {"vocab_size": 200, "dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS,
          "hidden_dim": FFN, "max_position_embeddings": MAX_POS, "pad_token_id": 0}),
    Arch("ALBERT", "classifier", "AlbertConfig", "AlbertForSequenceClassification",
         wordpiece_tokenizer, {**_wp, "embedding_size": 16, "bos_token_id": 2,
                               "eos_token_id": 3}),
    # MPNet's embeddings fix padding_idx = 1 (RoBERTa's special ids: <s> 0, <pad> 1, </s> 2)
    Arch("MPNet", "classifier", "MPNetConfig", "MPNetForSequenceClassification",
         lambda: bpe_tokenizer(type_ids=False),
         {**_bpe, "max_position_embeddings": MAX_POS + 2}, pad_positions=True),
    Arch("ModernBERT", "classifier", "ModernBertConfig", "ModernBertForSequenceClassification",
         lambda: wordpiece_tokenizer(type_ids=False),
         {**_wp, "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3, "bos_token_id": 2,
          "eos_token_id": 3, "global_attn_every_n_layers": 2, "local_attention": 8}),
    *[Arch(n, "classifier", c, f"{m}ForSequenceClassification", t, kw)
      for n, (c, m, t, kw) in _decoders.items()],
    *[Arch(n, "causal", c, "GPT2LMHeadModel" if m == "GPT2" else f"{m}ForCausalLM", t, kw)
      for n, (c, m, t, kw) in _decoders.items()],
    Arch("T5", "seq2seq", "T5Config", "T5ForConditionalGeneration", sp_tokenizer,
         {"vocab_size": 512, "d_model": HIDDEN, "d_kv": HIDDEN // HEADS, "d_ff": FFN,
          "num_layers": LAYERS, "num_decoder_layers": LAYERS, "num_heads": HEADS,
          "relative_attention_num_buckets": 8, "pad_token_id": 2, "eos_token_id": 2,
          "decoder_start_token_id": 2, "bos_token_id": 1}),
    Arch("BART", "seq2seq", "BartConfig", "BartForConditionalGeneration", bpe_tokenizer,
         {"vocab_size": 600, "d_model": HIDDEN, "encoder_layers": LAYERS,
          "decoder_layers": LAYERS, "encoder_attention_heads": HEADS,
          "decoder_attention_heads": HEADS, "encoder_ffn_dim": FFN, "decoder_ffn_dim": FFN,
          "max_position_embeddings": MAX_POS, "pad_token_id": 1, "bos_token_id": 0,
          "eos_token_id": 2, "decoder_start_token_id": 2, "forced_bos_token_id": None,
          "forced_eos_token_id": None}),
]
BY_LABEL = {a.label: a for a in ARCHS}


def missing_class(arch: Arch) -> str | None:
    """Why this transformers lacks the architecture (the test is skipped), else None."""
    import transformers

    absent = [c for c in (arch.config, arch.model) if not hasattr(transformers, c)]
    return (f"transformers {transformers.__version__} has no {', '.join(absent)}"
            if absent else None)


def seed_of(arch: Arch) -> int:
    return ARCHS.index(arch)


def build(arch: Arch) -> Any:
    """The seeded tiny model and its adapter (ModelAdapter or GenerativeAdapter)."""
    import transformers

    tok = arch.tokenizer()
    kw = dict(arch.kw)
    if arch.kind == "classifier":
        kw["num_labels"] = 2
    cfg = getattr(transformers, arch.config)(initializer_range=INIT_RANGE, **kw)
    cfg._attn_implementation = "eager"  # attention weights for the attention explainers
    torch.manual_seed(seed_of(arch))
    model = getattr(transformers, arch.model)(cfg)
    model_id = f"tiny-{arch.name.lower()}-{arch.kind}"
    if arch.kind == "classifier":
        return fs.ModelAdapter(model, tok, model_id=model_id, max_batch_size=64)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tok.pad_token_id or kw.get("pad_token_id")
    return GenerativeAdapter(model, tok, model_id=model_id, max_new_tokens=MAX_NEW_TOKENS,
                             max_batch_size=64, chat=False)


def check_special_ids(arch: Arch, adapter: Any) -> None:
    """The config's special-token ids are the tokenizer's."""
    cfg, tok = adapter.model.config, adapter.tokenizer
    assert cfg.pad_token_id == tok.pad_token_id, (cfg.pad_token_id, tok.pad_token_id)
    # bos / eos are the tokenizer's, or its [CLS] / [SEP] where it has none (WordPiece)
    same = {"cls": ("cls",), "sep": ("sep",), "bos": ("bos", "cls"), "eos": ("eos", "sep")}
    for name, candidates in same.items():
        have = getattr(cfg, f"{name}_token_id", None)
        want = next((getattr(tok, f"{c}_token_id") for c in candidates
                     if getattr(tok, f"{c}_token_id", None) is not None), None)
        if have is not None and want is not None:
            assert have == want, (name, have, want)
    if arch.kind == "seq2seq":
        assert cfg.decoder_start_token_id in (tok.pad_token_id, tok.eos_token_id)
    if arch.kind == "classifier":  # RoBERTa-family positions are numbered from the pad id
        pad_idx = adapter.positions_from_padding
        assert (pad_idx is not None) == arch.pad_positions
        assert pad_idx in (None, tok.pad_token_id)
    assert len(tok) <= adapter.model.get_input_embeddings().weight.shape[0]


# ------------------------------------------------------------------------------ the checks
class Refused(Exception):
    """A cell is refused: the wrapped InputError's one-line message is the reason."""


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except InputError as err:
        msg = str(err)
        assert msg and "\n" not in msg, f"not a one-line refusal: {msg!r}"
        raise Refused(msg) from err


def _check_scores(e: fs.Explanation, n_targets: int) -> None:
    from helpers import check_scores

    check_scores(e, n_targets)


def _explain(adapter: Any, name: str, inputs: list[str], **kw: Any) -> list[fs.Explanation]:
    return _call(lambda: fs.explain(adapter, inputs, [spec(name)], seed=0, **kw))


def check_explainer(arch: Arch, adapter: Any, name: str) -> None:
    """The conformance contract on two inputs: one explanation per input, (targets x units)
    finite float32 scores, the same scores again under the same seed; IG completeness and
    rollout rows where they apply."""
    from helpers import check_same_scores

    gen = arch.kind != "classifier"
    inputs = PROMPTS if gen else TEXTS
    kw: dict[str, Any] = {} if gen else {"target": "all"}
    exps = _explain(adapter, name, inputs, **kw)
    assert len(exps) == len(inputs)
    for e, text in zip(exps, inputs):
        assert e.explainer == name and e.text == text
        _check_scores(e, 1 if gen else adapter.num_labels)
        for u in e.units:
            assert text[u.start:u.end] == u.text
    check_same_scores(exps, _explain(adapter, name, inputs, **kw))
    if name == "integrated_gradients":
        if gen:
            check_lm_completeness(adapter)
        else:
            check_completeness(arch, adapter)
    if name == "attention_rollout":
        check_rollout_rows(adapter)
    if name == "lrp":
        check_lrp_forward(adapter)


def check_lrp_forward(adapter: Any) -> None:
    """LRP's rules change gradients only: under them the model computes the same logits."""
    from faithscope.models.lrp import lrp_rules

    encs = [adapter.encode(t) for t in TEXTS]
    blocks = [e.ids[None] for e in encs]
    types = None if encs[0].type_ids is None else [e.type_ids[None] for e in encs]
    plain = np.concatenate(adapter.logits(blocks, types))
    with lrp_rules(adapter.model, "cp"):
        ruled = np.concatenate(adapter.logits(blocks, types))
    np.testing.assert_allclose(ruled, plain, atol=1e-4, rtol=1e-4)


def _direct_kw(arch: Arch, adapter: Any, n: int, type_ids: Any = None) -> dict[str, Any]:
    """Inputs besides ids/embeddings for a direct call of the model on one row of ``n``
    positions: an all-ones attention mask, segment ids when the tokenizer gives them, and
    for RoBERTa-style embeddings the positions of an unpadded row."""
    kw: dict[str, Any] = {"attention_mask": torch.ones(1, n, dtype=torch.long)}
    if type_ids is not None:
        kw["token_type_ids"] = torch.as_tensor(type_ids)[None]
    if arch.pad_positions:  # the positions of an unpadded row
        kw["position_ids"] = torch.arange(1, n + 1)[None] + adapter.tokenizer.pad_token_id
    return kw


def _token(tok: Any, kind: str) -> int:
    """The id of a removal token: ``mask`` falls back to unk then pad, ``unk`` to pad."""
    order = {"mask": ("mask", "unk", "pad"), "unk": ("unk", "pad"), "pad": ("pad",)}[kind]
    return next(int(getattr(tok, f"{n}_token_id")) for n in order
                if getattr(tok, f"{n}_token_id") is not None)


def _logits(arch: Arch, adapter: Any, ids: np.ndarray, type_ids: Any = None) -> np.ndarray:
    with torch.no_grad():
        out = adapter.model(input_ids=torch.as_tensor(ids)[None],
                            **_direct_kw(arch, adapter, len(ids), type_ids))
    return out.logits[0].double().numpy()


def check_completeness(arch: Arch, adapter: Any) -> None:
    """IG (``mask`` baseline, logit target, enough steps): sum of attributions = f(x) - f(b),
    f(b) computed by calling the model on the baseline's embeddings directly (the baseline
    token on every non-special position; ``mask`` falls back to unk, then pad)."""
    exps = fs.explain(adapter, TEXTS, [("integrated_gradients",
                                        {"n_steps": IG_STEPS, "baseline": "mask"})],
                      target="all", target_fn="logit")
    for e, it in zip(exps, fs.prepare(adapter, TEXTS, target="all")):
        enc = it.enc
        emb = adapter.model.get_input_embeddings()
        base = np.where(enc.special, enc.ids, _token(adapter.tokenizer, "mask"))
        with torch.no_grad():
            z = emb(torch.as_tensor(base)[None])
            fb = adapter.model(inputs_embeds=z, **_direct_kw(arch, adapter, len(enc),
                                                                enc.type_ids)
                               ).logits[0].double().numpy()
        fx = _logits(arch, adapter, enc.ids, enc.type_ids)
        np.testing.assert_allclose(it.logits, fx, atol=1e-4)
        gap = fx - fb
        assert np.abs(gap).max() > 1e-2, "baseline too close to the input for a real check"
        total = e.scores.astype(np.float64).sum(1)
        np.testing.assert_allclose(total, gap, rtol=0,
                                   atol=IG_RTOL * max(1.0, float(np.abs(gap).max())))


def check_lm_completeness(lm: Any) -> None:
    """IG on generated text (``mask`` baseline: the unk token where there is no mask token):
    the token attributions sum to log p(y | x) - log p(y | baseline), both computed by calling
    the model directly."""
    (e,) = fs.explain(lm, PROMPTS[:1], [("integrated_gradients",
                                         {"n_steps": IG_STEPS, "baseline": "mask"})])
    (g,) = lm.generate(PROMPTS[:1])
    ids, offs = lm.prompt_encoding(PROMPTS[0])
    base = np.where(offs[:, 0] >= 0, _token(lm.tokenizer, "mask"), ids)
    emb = lm.model.get_input_embeddings()
    with torch.no_grad():
        x, b = emb(torch.as_tensor(ids)[None]), emb(torch.as_tensor(base)[None])
    fx = direct_logprobs(lm, x, g.ids).sum()
    fb = direct_logprobs(lm, b, g.ids).sum()
    # every prompt token's attribution (units leave out tokens that overlap none)
    (total,) = e.info["attribution_sum"]
    assert abs(fx - fb) > 1e-2
    assert abs(total - (fx - fb)) <= IG_RTOL * max(1.0, abs(fx - fb)), (total, fx - fb)


def direct_logprobs(lm: Any, prompt_embeds: Any, out: np.ndarray) -> np.ndarray:
    """log p(out_t | prompt, out_<t) by calling the model directly (no adapter code)."""
    model = lm.model
    out_t = torch.as_tensor(np.asarray(out, dtype=np.int64))
    emb = model.get_input_embeddings()
    with torch.no_grad():
        if lm.encoder_decoder:
            start = int(model.config.decoder_start_token_id)
            dec = torch.cat([torch.tensor([start]), out_t[:-1]])[None]
            logits = model(inputs_embeds=prompt_embeds, decoder_input_ids=dec).logits[0]
        else:
            z = torch.cat([prompt_embeds, emb(out_t[None]).to(prompt_embeds.dtype)], 1)
            n = prompt_embeds.shape[1]
            logits = model(inputs_embeds=z).logits[0, n - 1: n - 1 + len(out_t)]
        logp = torch.log_softmax(logits.double(), -1)
    return logp[torch.arange(len(out_t)), out_t].numpy()


def check_teacher_forcing(lm: Any) -> None:
    """The adapter's log-probability of its own generated output (teacher forcing) equals the
    model's, computed directly from the tokenizer's ids; and greedy decoding picked each
    output token as the model's argmax."""
    gens = lm.generate(PROMPTS)
    got = lm.output_logprobs(PROMPTS, [g.ids for g in gens])
    tok = lm.tokenizer
    for g, lp in zip(gens, got):
        assert len(g.ids) > 0
        ids = tok(g.prompt)["input_ids"]
        with torch.no_grad():
            x = lm.model.get_input_embeddings()(torch.as_tensor([ids]))
        want = direct_logprobs(lm, x, g.ids)
        np.testing.assert_allclose(lp, want, atol=1e-4)
        assert np.all(lp <= 0)


def check_rollout_rows(adapter: Any) -> None:
    """Attention weights are distributions (rows sum to 1 over the keys) and so are the rows of
    their rollout."""
    encs = [adapter.encode(t) for t in TEXTS]
    for att in _call(lambda: adapter.attentions(encs)):
        assert att.ndim == 4 and np.isfinite(att).all()
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-4)
        np.testing.assert_allclose(rollout(att).sum(-1), 1.0, atol=1e-6)


def check_operator(arch: Arch, adapter: Any, op: str) -> None:
    """Removing one unit inside the text with ``op`` gives the model's output on a hand-built
    input: the unit's tokens replaced by the operator's token (or deleted), positions those of
    an unpadded input."""
    if arch.kind != "classifier":
        return check_lm_operator(adapter, op)
    (it,) = fs.prepare(adapter, TEXTS[:1], target="all")
    j = 1  # a unit with units after it: later positions must not move
    keep = np.ones(it.n_units, dtype=bool)
    keep[j] = False
    (got,) = _call(lambda: score_masks(adapter, [it], [keep[None]], get_target("logit"),
                                       operator=op))
    toks = list(it.units[j].tokens)
    ids, types = it.enc.ids.copy(), it.enc.type_ids
    if op == "delete":
        ids = np.delete(ids, toks)
        types = None if types is None else np.delete(types, toks)
    else:
        ids[toks] = _token(adapter.tokenizer, op)
    np.testing.assert_allclose(got[0], _logits(arch, adapter, ids, types), atol=2e-5, rtol=0)
    return None


def check_lm_operator(lm: Any, op: str) -> None:
    """On generated text a removal operator edits the prompt's text: leave-one-out's score of
    a unit is log p(y | prompt) - log p(y | prompt with the unit's text removed or replaced),
    both computed directly."""
    (e,) = _explain(lm, "leave_one_out", PROMPTS[:1]) if op == "delete" else \
        _call(lambda: fs.explain(lm, PROMPTS[:1], [("leave_one_out", {"mask": op})]))
    (g,) = lm.generate(PROMPTS[:1])
    assert e.output_ids == tuple(int(t) for t in g.ids)
    used = e.info["operator"]
    replacement = {"delete": "", "unk": str(lm.tokenizer.unk_token)}[used]
    text = PROMPTS[0]

    def f(prompt: str) -> float:
        ids = lm.tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            x = lm.model.get_input_embeddings()(torch.as_tensor([ids]))
        return float(direct_logprobs(lm, x, g.ids).sum())

    from faithscope.segment import remove_spans

    full = f(text)
    for k, u in enumerate(e.units[:2]):
        want = full - f(remove_spans(text, [(u.start, u.end)], replacement))
        assert abs(float(e.scores[0, k]) - want) < 1e-4, (u.text, e.scores[0, k], want)


# --------------------------------------------------------------------------- the matrix
@dataclass
class Cell:
    status: str  # "ok", "refused" or "failed"
    reason: str = ""
    seconds: float = 0.0


_ADAPTERS: dict[str, Any] = {}
RESULTS: dict[tuple[str, str], Cell] = {}


def adapter_of(arch: Arch) -> Any:
    if arch.label not in _ADAPTERS:
        _ADAPTERS[arch.label] = build(arch)
    return _ADAPTERS[arch.label]


def run_cell(arch: Arch, column: str) -> Cell:
    """The cell's result, computed once per process."""
    key = (arch.label, column)
    if key in RESULTS:
        return RESULTS[key]
    t0 = time.perf_counter()
    try:
        adapter = adapter_of(arch)
        if column.startswith("op:"):
            check_operator(arch, adapter, column[3:])
        else:
            check_explainer(arch, adapter, column)
        cell = Cell(OK)
    except Refused as err:
        cell = Cell("refused", str(err))
    except Exception as err:  # noqa: BLE001  (a crash or a broken contract: the test fails)
        cell = Cell("failed", f"{type(err).__name__}: {err}")
    cell.seconds = time.perf_counter() - t0
    RESULTS[key] = cell
    return cell


# ----------------------------------------------------------------------------- the table
# short footnotes for the refusals, by (a regex of) their message
REASONS = [
    (r"model-internal explainers are", "on generated text only the gradient family reads model "
     "internals (attention and LRP explain classifiers)"),
    (r"reads its last non-pad token", "a decoder classifier reads its last non-pad token; "
     "replacing a unit with the pad token would move that read-out"),
    (r"on generated text mask must be", "on generated text a unit's text is deleted or "
     "replaced by the unk token; there is no pad-token replacement"),
    (r"does not go through transformers' attention interface", "LRP: the model's attention "
     "does not go through transformers' attention interface"),
]


# the attention of these classifiers is their own code, not transformers' attention interface
OWN_ATTENTION = ("DeBERTa-v2", "MPNet")


def expected_refusal(arch: Arch, column: str) -> str | None:
    """The pattern of the refusal a cell must give, or None where it must run: the matrix's
    refused cells, written out (a cell that starts or stops being refused fails its test)."""
    if arch.kind != "classifier":
        if column in ("attention", "attention_rollout", "lrp"):
            return REASONS[0][0]
        return REASONS[2][0] if column == "op:pad" else None
    if column == "op:pad" and arch.name in _decoders:
        return REASONS[1][0]
    if column == "lrp" and arch.name in OWN_ATTENTION:
        return REASONS[3][0]
    return None


def reason_text(message: str) -> str:
    for pattern, text in REASONS:
        if re.search(pattern, message):
            return text
    return re.sub(r"tiny-[\w.-]+", "the model", message)


def column_title(column: str) -> str:
    return f"`{column[3:]}` op" if column.startswith("op:") else f"`{column}`"


def table(results: dict[tuple[str, str], Cell]) -> str:
    """The markdown support table (rows: architectures; columns: explainers and removal
    operators; ✓, or ✗ with a footnote naming the refusal) of the matrix results."""
    notes: dict[str, int] = {}
    lines = ["| architecture | " + " | ".join(column_title(c) for c in COLUMNS) + " |",
             "| --- |" + " :-: |" * len(COLUMNS)]
    for arch in ARCHS:
        cells = []
        for c in COLUMNS:
            cell = results.get((arch.label, c))
            if cell is None:
                cells.append("–")
            elif cell.status == OK:
                cells.append("✓")
            elif cell.status == "refused":
                n = notes.setdefault(reason_text(cell.reason), len(notes) + 1)
                cells.append(f"✗{n}")
            else:
                cells.append("FAILED")
        lines.append(f"| {arch.label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"{n}. {text}" for text, n in notes.items()]
    return "\n".join(lines) + "\n"


def all_results() -> dict[tuple[str, str], Cell]:
    """Every cell of every architecture this transformers has (computed where missing)."""
    for arch in ARCHS:
        if missing_class(arch) is None:
            for c in COLUMNS:
                run_cell(arch, c)
    return dict(RESULTS)


START, END = "<!-- support-table:start -->", "<!-- support-table:end -->"


def readme_block(readme: str) -> str:
    a, b = readme.index(START) + len(START), readme.index(END)
    return readme[a:b].strip("\n") + "\n"
