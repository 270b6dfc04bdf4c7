"""MExGen as in its paper (Monteiro Paes, Wei et al. 2025): multi-level refinement one level at a
time, the end-of-sequence token scored, empty outputs and unit-less prompts refused, deletion as
the default perturbation of decoder prompts (and the operator used recorded), and the
Integrated Gradients baseline of generated text recorded as the one integrated from."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.errors import InputError
from faithscope.generation.scalarizers import LogProb, SummaryProb
from faithscope.models.generative import Generation, GenerativeAdapter, load_generative
from faithscope.models.prompted import PromptClassifier
from faithscope.segment import segment
from helpers import ASSETS


@pytest.fixture(scope="module")
def lm():
    return load_generative(str(ASSETS / "stories260K"), max_new_tokens=8)


@pytest.fixture(scope="module")
def stopping(lm):
    """The TinyStories decoder, edited to end its output where it would write a full stop:
    the end-of-sequence row of its (tied) output embedding is 1.5 x the full stop's."""
    model = copy.deepcopy(lm.model)
    period = lm.tokenizer(".", add_special_tokens=False)["input_ids"][-1]
    with torch.no_grad():
        w = model.get_output_embeddings().weight
        w[lm.tokenizer.eos_token_id] = 1.5 * w[period]
    return GenerativeAdapter(model, lm.tokenizer, max_new_tokens=12, max_batch_size=4)


class Additive:
    """log p(output | prompt) = sum of the weights of the words present; records what it
    scores and generates, and has an ``<unk>`` token like a real tokenizer."""

    model_id = "additive"
    revision = None

    class tokenizer:  # noqa: N801  (stands in for a tokenizer's attributes)
        unk_token = "<unk>"

    def __init__(self, weights, output="yes"):
        self.weights, self.output = weights, output
        self.scored: list[str] = []
        self.generated: list[str] = []

    def value(self, prompt):
        return sum(self.weights.get(w, 0.0) for w in set(re.findall(r"[\w<>]+", prompt)))

    def generate(self, prompts, max_new_tokens=None):
        self.generated += list(prompts)
        ids = np.array([7]) if self.output else np.array([2])
        return [Generation(p, self.output, ids, eos=not self.output) for p in prompts]

    def output_logprobs(self, prompts, outputs):
        self.scored += list(prompts)
        return [np.array([self.value(p)]) for p in prompts]


# ------------------------------------------------------------------ 1. multi-level refinement
# Sentence 1 is the most important (5 = 3 + 1 + 1) and is split into phrases; its top phrase
# "It rained," (3) scores less than the unrefined sentence 2 (4 = 2 + 2). Letting every coarser
# unit compete in the phrase -> word round (the old rule) split sentence 2 straight into words
# and never split "It rained,": the most important word, "rained", was never a unit.
STORY = "It rained, and the wind blew hard, and the sky went dark. Tom cried loudly. Ben sat. Mia ran."
WEIGHTS = {"rained": 3.0, "wind": 1.0, "dark": 1.0, "cried": 2.0, "loudly": 2.0}


def test_the_trap_the_old_rule_fell_into():
    (e,) = fs.explain(Additive(WEIGHTS), [STORY], "mexgen_loo",
                              levels=("sentence", "phrase"), top_k=1)
    by_text = dict(zip([u.text for u in e.units], e.scores[0], strict=True))
    assert by_text == pytest.approx({"It rained,": 3.0, "and the wind blew hard,": 1.0,
                                     "and the sky went dark.": 1.0, "Tom cried loudly.": 4.0,
                                     "Ben sat.": 0.0, "Mia ran.": 0.0})
    assert by_text["Tom cried loudly."] > by_text["It rained,"]  # a sentence beats every phrase


@pytest.mark.parametrize("name", ["mexgen_loo", "mexgen_clime", "mexgen_lshap"])
def test_refinement_goes_one_level_at_a_time_and_finds_the_top_word(name):
    (e,) = fs.explain(Additive(WEIGHTS), [STORY], name,
                              levels=("sentence", "phrase", "word"), top_k=1)
    texts, levels = [u.text for u in e.units], e.levels
    words = [i for i, lv in enumerate(levels) if lv == "word"]
    top = words[int(np.argmax(e.scores[0][words]))]
    assert texts[top] == "rained"  # the most important word is a word-level unit
    assert e.scores[0][top] == pytest.approx(3.0)
    assert list(zip(texts, levels, strict=True)) == [
        ("It", "word"), ("rained", "word"), ("and the wind blew hard,", "phrase"),
        ("and the sky went dark.", "phrase"), ("Tom cried loudly.", "sentence"),
        ("Ben sat.", "sentence"), ("Mia ran.", "sentence")]
    assert e.info["units_per_round"] == [4, 6, 7]
    # no sentence is split straight into words: every word lies in a phrase of a split sentence
    unit_spans = {(u.start, u.end) for u in e.units}
    for u, lv in zip(e.units, levels, strict=True):
        if lv != "word":
            continue
        (sent,) = [s for s in segment(STORY, "sentence") if s[0] <= u.start < s[1]]
        (phrase,) = [p for p in segment(STORY, "phrase", *sent) if p[0] <= u.start < p[1]]
        assert sent not in unit_spans and phrase not in unit_spans
        assert any(lv2 == "phrase" and sent[0] <= v.start < sent[1]
                   for v, lv2 in zip(e.units, levels, strict=True))


def test_top_fraction_counts_the_units_of_the_level_above():
    (e,) = fs.explain(Additive(WEIGHTS), [STORY], "mexgen_loo",
                              levels=("sentence", "phrase", "word"), top_fraction=0.5)
    # round 2: 2 of 4 sentences -> phrases (3 + 1); round 3: 2 of those 4 phrases -> words
    assert e.info["units_per_round"] == [4, 6, 9]
    levels = dict(zip([u.text for u in e.units], e.levels, strict=True))
    assert levels["rained"] == levels["cried"] == levels["loudly"] == "word"
    assert levels["Ben sat."] == levels["Mia ran."] == "sentence"
    with pytest.raises(InputError, match="coarse-to-fine"):
        fs.explain(Additive(WEIGHTS), [STORY], "mexgen_loo", levels=("word", "word"))


# -------------------------------------------------------------- 2. end-of-sequence token
def test_generated_eos_is_kept_in_the_ids_and_scored(lm, stopping):
    prompts = ["Tom had a big dog.", "Lily saw a bird.", "The sun was hot."]
    gens = stopping.generate(prompts)
    eos = lm.tokenizer.eos_token_id
    for g in gens:
        assert g.eos and int(g.ids[-1]) == eos and eos not in g.ids[:-1].tolist()
        assert g.text == lm.tokenizer.decode(g.ids[:-1]) and "</s>" not in g.text
    one = GenerativeAdapter(stopping.model, lm.tokenizer, max_new_tokens=12, max_batch_size=1)
    assert [g.ids.tolist() for g in one.generate(prompts)] == [g.ids.tolist() for g in gens]
    # log_prob includes the decision to stop: the EOS token's log-probability is in the sum
    lps = stopping.output_logprobs(prompts, [g.ids for g in gens])
    vals = LogProb()(stopping, prompts, gens)
    for lp, v, g in zip(lps, vals, gens, strict=True):
        assert len(lp) == len(g.ids) and lp[-1] < 0
        assert float(v[0]) == pytest.approx(float(lp.sum()))
    # the explanation scores the output with its EOS (leave-one-out by hand)
    (e,) = fs.explain(stopping, prompts[:1], "mexgen_loo")
    assert e.output_ids[-1] == eos and e.info["output_eos"] is True
    assert e.output == gens[0].text
    full = stopping.output_logprobs(prompts[:1], [gens[0].ids])[0].sum()
    without = stopping.output_logprobs(["had a big dog."], [gens[0].ids])[0].sum()
    assert e.scores[0][0] == pytest.approx(full - without, abs=1e-5)
    # an output cut by max_new_tokens ends with no EOS
    (cut,) = lm.generate(prompts[:1])
    assert not cut.eos and len(cut.ids) == 8 and eos not in cut.ids.tolist()


def test_summary_prob_appends_the_scorers_eos_when_the_reference_stopped(lm, stopping):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(1)
    cfg = T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=2)
    scorer = GenerativeAdapter(T5ForConditionalGeneration(cfg), lm.tokenizer)
    prompts = ["Tom had a big dog."]
    (g,) = stopping.generate(prompts)
    (v,) = SummaryProb(scorer_model=scorer)(stopping, prompts, [g])
    ids = np.append(scorer.output_ids(g.text), lm.tokenizer.eos_token_id)
    assert float(v[0]) == pytest.approx(float(scorer.output_logprobs(prompts, [ids])[0].sum()))


# ------------------------------------------------------------------- 3. empty output
def test_an_empty_output_is_refused_before_scoring():
    fake = Additive(WEIGHTS, output="")
    with pytest.raises(InputError, match=r"generated an empty output for prompt 'Tom cried\."
                                         r"'; nothing to explain"):
        fs.explain(fake, ["Tom cried."], "mexgen_loo")
    assert fake.generated == ["Tom cried."] and fake.scored == []
    with pytest.raises(InputError, match="empty output"):
        fs.explain(Additive(WEIGHTS), ["Tom cried."], "mexgen_loo",
                           references=[Generation("Tom cried.", "  ", np.zeros(0, np.int64))])


# ---------------------------------------------------------------- 6. prompt with no units
def test_a_prompt_with_no_units_is_refused_in_one_line():
    fake = Additive(WEIGHTS)
    with pytest.raises(InputError) as err:
        fs.explain(fake, ["Tom cried.", "?! ... --"], "mexgen_loo")
    assert str(err.value) == ("prompt '?! ... --' has no word units to attribute (no letters "
                              "or digits)")
    assert fake.generated == []  # refused before anything is generated
    with pytest.raises(InputError, match="no sentence units"):
        fs.explain(fake, ["..."], "mexgen_loo", levels=("sentence", "word"))


# ---------------------------------------------------------- 4. perturbation operator
def test_generation_deletes_units_by_default_and_records_it():
    fake = Additive(WEIGHTS)
    prompt = "Tom cried loudly today"
    (e,) = fs.explain(fake, [prompt], "mexgen_clime")
    assert e.params["mask"] == "delete" and e.info["operator"] == "delete"
    assert e.info["replacement"] == ""
    assert "Tom loudly today" in fake.scored and "Tom cried loudly" in fake.scored
    assert not any("<unk>" in p for p in fake.scored)
    np.testing.assert_allclose(e.scores[0], [0, 2, 2, 0], atol=1e-8)


@pytest.mark.parametrize("spec,kw,op,text", [
    (("mexgen_loo", {"mask": "unk"}), {}, "unk", "Tom <unk> loudly today"),
    ("mexgen_loo", {"replacement": "<unk>"}, "unk", "Tom <unk> loudly today"),
    ("mexgen_lshap", {"replacement": "___"}, "replace", "Tom ___ loudly today"),
    (("leave_one_out", {"mask": "delete"}), {}, "delete", "Tom loudly today"),
])
def test_unk_only_when_asked_and_the_operator_used_is_recorded(spec, kw, op, text):
    fake = Additive({**WEIGHTS, "<unk>": 10.0})
    (e,) = fs.explain(fake, ["Tom cried loudly today"], spec, **kw)
    assert text in fake.scored
    assert e.params["mask"] == op and e.info["operator"] == op


def test_conflicting_or_unusable_operators_are_refused():
    with pytest.raises(InputError, match="not both"):
        fs.explain(Additive(WEIGHTS), ["Tom cried."], ("mexgen_loo", {"mask": "unk"}),
                           replacement="___")
    with pytest.raises(InputError, match="'pad'"):
        fs.explain(Additive(WEIGHTS), ["Tom cried."], ("mexgen_loo", {"mask": "pad"}))


def test_prompted_decoder_deletes_units_by_default(lm):
    clf = PromptClassifier.from_lm(lm, template="{text} Tom felt",
                                   verbalizers={"happy": [" happy"], "sad": [" sad"]})
    seen: list[str] = []
    own = clf.lm.prompt_ids
    clf.lm.prompt_ids = lambda p: (seen.append(p), own(p))[1]
    text = "Tom got a new toy and smiled."
    (e,) = fs.explain(clf, text, "mexgen_loo")
    assert "Tom got a new and smiled. Tom felt" in seen  # "toy" deleted, no token in its place
    assert not any("<unk>" in p for p in seen)
    assert e.info["operator"] == "delete" == clf.mask_operator(e.params["mask"])
    seen.clear()
    (d,) = fs.explain(clf, text, ("mexgen_loo", {"mask": "delete"}))
    np.testing.assert_array_equal(e.scores, d.scores)  # the default is deletion
    seen.clear()
    (u,) = fs.explain(clf, text, ("mexgen_loo", {"mask": "unk"}))
    assert any("<unk>" in p for p in seen) and u.info["operator"] == "unk"
    assert not np.allclose(u.scores, e.scores)


# -------------------------------------------------------------- 5. IG baseline recorded
@pytest.mark.parametrize("baseline", ["pad", "unk"])
def test_integrated_gradients_records_the_baseline_it_integrated_from(lm, baseline):
    prompt = "Tom had a big dog."
    spec = ("integrated_gradients", {"n_steps": 32} if baseline == "pad" else
            {"n_steps": 32, "baseline": baseline})
    (e,) = fs.explain(lm, [prompt], spec)
    assert e.params["baseline"] == baseline == e.info["baseline"]
    # effective baseline = recorded one: completeness against the prompt whose own tokens are
    # the recorded baseline token (template and BOS kept), scored exactly from token ids
    ids, offs = lm.prompt_encoding(prompt)
    base = np.where(offs[:, 0] >= 0, lm.baseline_id(e.params["baseline"]), ids)
    out = np.asarray(e.output_ids)
    f_x, f_b = (lp.sum() for lp in lm.logprobs_of_ids([ids, base], [out, out]))
    assert e.info["attribution_sum"][0] == pytest.approx(f_x - f_b, rel=0.03)
    (z,) = fs.explain(lm, [prompt], ("integrated_gradients", {"n_steps": 32,
                                                                       "baseline": "zero"}))
    assert z.params["baseline"] == "zero" and not np.allclose(z.scores, e.scores)
