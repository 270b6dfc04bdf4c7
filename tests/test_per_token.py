"""Per-output-token attribution of generated text (Inseq's view): a generated-token x
prompt-unit matrix for leave-one-out and the gradient family, step scores (probability,
entropy), the contrastive target ("why this token rather than that one"), the terminal and
HTML renderings and a lossless save/load. Known answers are computed by hand from
``output_logprobs`` / the model's logits on the bundled TinyStories decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.cli import main
from faithscope.errors import InputError
from faithscope.models.generative import load_generative
from faithscope.report.generation import matrix
from faithscope.segment import remove_spans
from faithscope.targets import get_target
from helpers import ASSETS, check_round_trip

PROMPT = "Tom had a dog. The dog was big."


@pytest.fixture(scope="module")
def lm():
    return load_generative(str(ASSETS / "stories260K"), max_new_tokens=6)


@pytest.fixture(scope="module")
def ref(lm):
    (g,) = lm.generate([PROMPT])
    assert len(g.ids) >= 4
    return g


@pytest.fixture(scope="module")
def foil(lm, ref):
    """The reference with its second token swapped (as many tokens, one step differs)."""
    ids = ref.ids.copy()
    ids[1] = next(t for t in (300, 301, 302, 303) if t != ids[1])
    text = lm.tokenizer.decode(ids[: len(ids) - int(ref.eos)])
    assert np.array_equal(lm.output_ids(text), ids[: len(ids) - int(ref.eos)])
    return text, ids


def test_leave_one_out_matrix_is_the_per_token_log_prob_drop(lm, ref):
    (e,) = fs.explain(lm, [PROMPT], "leave_one_out", target_fn="log_prob_per_token",
                      levels=("word",))
    assert e.per_token and e.scores.shape == (len(ref.ids), len(e.units))
    assert e.output_tokens == lm.token_texts(ref.ids) and len(e.output_tokens) == len(ref.ids)
    full = lm.output_logprobs([PROMPT], [ref.ids])[0]
    without = lm.output_logprobs([remove_spans(PROMPT, [(u.start, u.end)], "")
                                  for u in e.units], [ref.ids] * len(e.units))
    by_hand = np.stack([full - w for w in without], axis=1)  # tokens x units
    np.testing.assert_allclose(e.scores, by_hand, atol=1e-5)
    (whole,) = fs.explain(lm, [PROMPT], "leave_one_out", levels=("word",))
    # log p(output) is the sum of the per-token log-probabilities: rows add up to it
    np.testing.assert_allclose(e.scores.sum(0), whole.scores[0], atol=1e-4)
    assert not whole.per_token


@pytest.mark.parametrize("name", ["gradient_x_input", "integrated_gradients"])
def test_gradient_matrix_rows_sum_to_the_whole_output(lm, name):
    spec = (name, {"n_steps": 8} if name == "integrated_gradients" else {})
    (m,) = fs.explain(lm, [PROMPT], spec, target_fn="log_prob_per_token", levels=("word",))
    (w,) = fs.explain(lm, [PROMPT], spec, levels=("word",))
    assert m.per_token and m.scores.shape[0] == len(m.output_ids)
    np.testing.assert_allclose(m.scores.sum(0), w.scores[0], atol=1e-4)  # linear in the target


def test_step_scores_are_probability_and_entropy(lm, ref):
    (e,) = fs.explain(lm, [PROMPT], "leave_one_out", levels=("word",))
    steps = e.step_scores
    assert set(steps) == {"probability", "entropy"}
    lp = lm.output_logprobs([PROMPT], [ref.ids])[0]
    np.testing.assert_allclose(steps["probability"], np.exp(lp), rtol=1e-6)
    # entropy by hand from the logits of the teacher-forced sequence
    ids = np.concatenate([lm.prompt_ids(PROMPT), ref.ids])
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor(ids[None])).logits[0].double()
    start = len(ids) - len(ref.ids) - 1
    p = torch.softmax(logits[start: start + len(ref.ids)], -1)
    ent = -(p * torch.log(p)).sum(-1).numpy()
    np.testing.assert_allclose(steps["entropy"], ent, rtol=1e-4)
    assert all(0 <= h <= np.log(lm.model.config.vocab_size) for h in steps["entropy"])


def test_contrast_per_token_is_the_target_minus_foil_log_prob(lm, ref, foil):
    text, ids = foil
    target = ("contrast", {"foil": text, "per_token": True})
    (e,) = fs.explain(lm, [PROMPT], "leave_one_out", target_fn=target, levels=("word",))
    assert e.target_fn == "contrast" and e.scores.shape == (len(ref.ids), len(e.units))
    same = ids == ref.ids
    assert same.sum() == len(ids) - 1 and np.all(e.scores[same] == 0)  # agreeing steps: 0
    # by hand: log p(y_t | x, y_<t) - log p(f_t | x, y_<t), before and after removing a unit
    step = int(np.nonzero(~same)[0][0])

    def contrast(prompt):
        x = np.concatenate([lm.prompt_ids(prompt), ref.ids])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor(x[None])).logits[0], -1)
        pos = len(x) - len(ref.ids) - 1 + step
        return float(logp[pos, ref.ids[step]] - logp[pos, ids[step]])

    u = e.units[0]
    want = contrast(PROMPT) - contrast(remove_spans(PROMPT, [(u.start, u.end)], ""))
    assert e.scores[step, 0] == pytest.approx(want, abs=1e-4)


def test_contrast_of_whole_outputs_and_gradient_completeness(lm, ref, foil):
    text, ids = foil
    (e,) = fs.explain(lm, [PROMPT], "leave_one_out", target_fn=("contrast", {"foil": text}),
                      levels=("word",))
    u = e.units[-1]
    cut = remove_spans(PROMPT, [(u.start, u.end)], "")
    lp = lm.output_logprobs([PROMPT, PROMPT, cut, cut], [ref.ids, ids, ref.ids, ids])
    want = (lp[0].sum() - lp[1].sum()) - (lp[2].sum() - lp[3].sum())
    assert e.scores.shape == (1, len(e.units)) and e.scores[0, -1] == pytest.approx(want, abs=1e-4)
    # Integrated Gradients of the per-token contrast: completeness per step against the
    # prompt whose own tokens are the recorded baseline token
    (ig,) = fs.explain(lm, [PROMPT], ("integrated_gradients", {"n_steps": 32}),
                       target_fn=("contrast", {"foil": text, "per_token": True}))
    tok, offs = lm.prompt_encoding(PROMPT)
    base = np.where(offs[:, 0] >= 0, lm.baseline_id(ig.info["baseline"]), tok)
    f_x, f_b = lm.logprobs_of_ids([tok, base], [ref.ids, ref.ids], foils=[ids, ids])
    np.testing.assert_allclose(ig.info["attribution_sum"], f_x - f_b, atol=0.05, rtol=0.03)


def test_contrast_errors_and_classifier_meaning(lm, foil):
    with pytest.raises(InputError, match="needs foil="):
        fs.explain(lm, [PROMPT], "leave_one_out", target_fn="contrast")
    with pytest.raises(InputError, match="as many tokens"):
        fs.explain(lm, [PROMPT], "leave_one_out",
                   target_fn=("contrast", {"foil": "no", "per_token": True}))
    with pytest.raises(InputError, match="no foil for prompt"):
        fs.explain(lm, [PROMPT], "leave_one_out",
                   target_fn=("contrast", {"foil": {"another prompt": foil[0]}}))
    # keyed by prompt: one foil per prompt
    (e,) = fs.explain(lm, [PROMPT], "leave_one_out",
                      target_fn=("contrast", {"foil": {PROMPT: foil[0]}}))
    assert e.params and e.target_fn == "contrast"
    # on a classifier the same registered name is the log-odds of the class
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    v = get_target("contrast")(logits, torch.tensor([2]))
    assert float(v[0]) == pytest.approx(2.0 - float(torch.logsumexp(logits[0, :2], 0)))


def test_matrix_round_trips_and_renders(lm, foil, tmp_path):
    exps = fs.explain(lm, [PROMPT, "Lily saw a bird."], ["leave_one_out", "gradient"],
                      target_fn=("contrast", {"foil": {PROMPT: foil[0],
                                                       "Lily saw a bird.": "no"}}))
    for suffix in (".json", ".jsonl", ".parquet"):
        back = check_round_trip(exps, tmp_path / f"m{suffix}")
        assert all(b.step_scores == a.step_scores and b.output_tokens == a.output_tokens
                   for a, b in zip(exps, back))
    (e,) = fs.explain(lm, [PROMPT], "leave_one_out", target_fn="log_prob_per_token",
                      levels=("word",))
    html = matrix(e)
    assert html.count("<th>") == len(e.output_tokens) + 1
    assert html.count('<td class="l">') == len(e.units) + 2  # + probability, entropy
    assert ">probability<" in html and ">entropy<" in html


def test_cli_prints_the_matrix_and_refuses_a_lone_foil(capsys, foil):
    stories = str(ASSETS / "stories260K")
    args = ["explain", "--model", stories, "--prompt", PROMPT, "--levels", "word",
            "--explainer", "leave_one_out", "--max-new-tokens", "6"]
    assert main([*args, "--per-token"]) == 0
    out = capsys.readouterr().out
    assert "prompt units x generated tokens" in out and "probability" in out \
        and "entropy" in out and "│ Tom " in out
    assert main([*args, "--per-token", "--target-fn", "contrast", "--foil", foil[0]]) == 0
    assert "(contrast)" in capsys.readouterr().out
    for bad, msg in ((["--foil", "x"], "--foil (the alternative output) goes with --target-fn "
                                       "contrast"),
                     (["--target-fn", "contrast"], "--target-fn contrast needs --foil"),
                     (["--per-token", "--target-fn", "cosine", "--encoder", "x"],
                      "--per-token goes with")):
        assert main([*args, *bad]) == 2
        assert msg in capsys.readouterr().err
