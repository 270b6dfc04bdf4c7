"""Layer randomization: parameter groups, exact restoration, similarity measures, curves, and
the analysis inside evaluate() and a study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.metrics.analysis import curve_table, similarity
from faithscope.metrics.sanity import randomization_steps
from faithscope.models.surgery import parameter_groups, randomized
from helpers import REVIEWS

SENTENCES = REVIEWS


def snapshot(model) -> dict[str, torch.Tensor]:
    return {**{f"p:{n}": p.detach().clone() for n, p in model.named_parameters()},
            **{f"b:{n}": b.detach().clone() for n, b in model.named_buffers()}}


def identical(model, snap) -> bool:
    now = snapshot(model)
    return now.keys() == snap.keys() and all(torch.equal(now[k], snap[k]) for k in snap)


def changed(model, snap) -> set[str]:
    return {k for k, v in snapshot(model).items() if not torch.equal(v, snap[k])}


def owned(adapter, group: str) -> set[str]:
    """Parameter and buffer keys (as in snapshot) of the modules of one group."""
    out = set()
    for name in parameter_groups(adapter)[group]:
        mod = adapter.model.get_submodule(name)
        out |= {f"p:{name}.{n}" for n, _ in mod.named_parameters(recurse=False)}
        out |= {f"b:{name}.{n}" for n, _ in mod.named_buffers(recurse=False)}
    return out


def tiny_gpt2(tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(3)
    cfg = GPT2Config(vocab_size=512, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                     num_labels=2, pad_token_id=tokenizer.eos_token_id,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return fs.ModelAdapter(GPT2ForSequenceClassification(cfg), tokenizer, model_id="tiny-gpt2")


def test_parameter_groups_of_bert_llama_and_gpt2(bert_adapter, llama_adapter, sp_tokenizer):
    bert = parameter_groups(bert_adapter)
    assert list(bert) == ["embeddings", "layer 0", "layer 1", "head"]
    assert "bert.embeddings.word_embeddings" in bert["embeddings"]
    assert all(n.startswith("bert.encoder.layer.1.") for n in bert["layer 1"])
    assert {"bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.output.dense"} \
        <= set(bert["layer 1"])  # attention and MLP in one block
    assert bert["head"] == ["bert.pooler.dense", "classifier"]
    llama = parameter_groups(llama_adapter)
    assert llama["embeddings"] == ["model.embed_tokens"]
    assert all(n.startswith("model.layers.0.") for n in llama["layer 0"])
    assert {"model.norm", "score"} <= set(llama["head"])
    gpt2 = parameter_groups(tiny_gpt2(sp_tokenizer))
    assert gpt2["embeddings"] == ["transformer.wte", "transformer.wpe"]
    assert all(n.startswith("transformer.h.1.") for n in gpt2["layer 1"])
    assert gpt2["head"] == ["transformer.ln_f", "score"]
    # every parameter belongs to exactly one group
    for adapter, groups in ((bert_adapter, bert), (llama_adapter, llama)):
        names = [n for ms in groups.values() for n in ms]
        assert len(names) == len(set(names))
        keys = set().union(*(owned(adapter, g) for g in groups))
        assert {k for k in snapshot(adapter.model) if k.startswith("p:")} <= keys


@pytest.mark.parametrize("model", ["bert", "llama"])
@pytest.mark.parametrize("group", ["layer 0", "layer 1", "head", "embeddings"])
def test_randomizing_a_group_changes_only_it_and_is_undone_exactly(adapters, model, group):
    adapter = adapters[model]
    before = snapshot(adapter.model)
    with randomized(adapter, [group], seed=5):
        diff = changed(adapter.model, before)
        assert diff, "re-initialisation changed nothing"
        assert diff <= owned(adapter, group)
        weights = {k for k in owned(adapter, group) if k.endswith("weight") and k.startswith("p:")
                   and "norm" not in k.lower()}
        assert weights <= diff  # every weight matrix drawn again
    assert identical(adapter.model, before)


def test_restored_after_an_error_and_seeded_per_group(bert_adapter):
    before = snapshot(bert_adapter.model)
    with pytest.raises(RuntimeError), randomized(bert_adapter, ["layer 0", "head"]):
        raise RuntimeError("boom")
    assert identical(bert_adapter.model, before)
    key = "p:bert.encoder.layer.1.attention.self.query.weight"
    with randomized(bert_adapter, ["layer 1"], seed=1):
        alone = snapshot(bert_adapter.model)[key]
    with randomized(bert_adapter, ["head", "layer 1", "layer 0"], seed=1):
        cascaded = snapshot(bert_adapter.model)[key]
    with randomized(bert_adapter, ["layer 1"], seed=2):
        other = snapshot(bert_adapter.model)[key]
    assert torch.equal(alone, cascaded) and not torch.equal(alone, other)
    with pytest.raises(fs.InputError, match="unknown parameter group"):
        with randomized(bert_adapter, ["layer 7"]):
            pass


def test_loaded_checkpoints_are_reinitialised_too(tmp_path):
    """transformers marks loaded weights as initialised, which turns _init_weights into a
    no-op: the flag must be lifted during randomization and put back afterwards."""
    from faithscope.models.tiny import tiny_classifier

    t = tiny_classifier(layers=1)
    t.model.save_pretrained(tmp_path)
    t.tokenizer.save_pretrained(tmp_path)
    adapter = fs.load_model(tmp_path)
    weight = adapter.model.classifier.weight
    assert getattr(weight, "_is_hf_initialized", False)
    before = snapshot(adapter.model)
    with randomized(adapter, ["head", "layer 0"]):
        assert "p:classifier.weight" in changed(adapter.model, before)
    assert identical(adapter.model, before) and weight._is_hf_initialized is True


def test_steps():
    from faithscope.models.tiny import tiny_classifier

    a = tiny_classifier(layers=3)
    assert randomization_steps(a, "cascading") == [
        ("head", ["head"]), ("layer 2", ["head", "layer 2"]),
        ("layer 1", ["head", "layer 2", "layer 1"]),
        ("layer 0", ["head", "layer 2", "layer 1", "layer 0"]),
        ("embeddings", ["head", "layer 2", "layer 1", "layer 0", "embeddings"])]
    assert randomization_steps(a, "independent", head=False, embeddings=False) == [
        ("layer 2", ["layer 2"]), ("layer 1", ["layer 1"]), ("layer 0", ["layer 0"])]
    with pytest.raises(fs.InputError):
        randomization_steps(a, "bottom-up")


def test_similarity_measures():
    a = np.array([0.9, -0.5, 0.1, 0.3])
    assert similarity(a, a * 2) == pytest.approx(1.0)
    assert similarity(a, -a, by="value") == pytest.approx(-1.0)
    assert similarity(a, -a, by="abs") == pytest.approx(1.0)
    # ranks of |a| = 4 3 1 2, of |b| = 1 2 3 4: d^2 = 9 + 1 + 4 + 4 = 18 -> 1 - 6*18/60
    b = np.array([0.0, 0.1, 0.2, 0.3])
    assert similarity(a, b) == pytest.approx(1 - 6 * 18 / 60)
    # Kendall: pairs (01 02 03 12 13 23) concordant? |a| order vs b: d d d d d c -> (1-5)/6
    assert similarity(a, b, "kendall") == pytest.approx((1 - 5) / 6)
    assert similarity(a, b, "topk", k=2) == 0.0
    assert similarity(a, np.array([1.0, 0.9, 0.0, 0.0]), "topk", k=2) == 1.0
    assert math.isnan(similarity(np.array([1.0]), np.array([2.0])))
    assert math.isnan(similarity(a, np.zeros(4)))
    with pytest.raises(fs.InputError):
        similarity(a, b, "pearson")


def skipped_block_model(skip: int):
    """A 3-block BERT whose block ``skip`` passes its input through untouched (a forward hook
    replaces its output by its input): the prediction does not depend on that block's
    parameters at all, whatever they are, so randomizing them cannot change gradients."""
    from faithscope.models.tiny import tiny_classifier

    a = tiny_classifier(layers=3, seed=4)

    def passthrough(module, args, kwargs, output):
        return args[0] if args else kwargs["hidden_states"]

    a.model.bert.encoder.layer[skip].register_forward_hook(passthrough, with_kwargs=True)
    return a


@pytest.mark.parametrize("name", ["gradient", "gradient_x_input"])
def test_a_block_the_prediction_ignores_keeps_the_explanation(name):
    adapter = skipped_block_model(skip=1)
    exps = fs.explain(adapter, SENTENCES, [name])
    df = fs.evaluate(exps, adapter, metrics=["randomization_independent", "randomization"],
                     random=False)
    ind = df[df.metric == "randomization_independent"]
    steps = ind["detail"].iloc[0]["steps"]
    assert steps == ["head", "layer 2", "layer 1", "layer 0", "embeddings"]
    curves = np.array([d["values"] for d in ind["detail"]], dtype=float)
    np.testing.assert_allclose(curves[:, steps.index("layer 1")], 1.0, atol=1e-9)
    assert curves[:, steps.index("layer 0")].mean() < 0.8  # a block that matters
    # cascading: adding the skipped block to the randomized set changes nothing
    cas = np.array([d["values"] for d in df[df.metric == "randomization"]["detail"]], float)
    np.testing.assert_allclose(cas[:, 2], cas[:, 1], atol=1e-9)


def test_gradient_similarity_falls_under_cascading_randomization(bert_adapter):
    exps = fs.explain(bert_adapter, SENTENCES, ["gradient"])
    before = snapshot(bert_adapter.model)
    df = fs.evaluate(exps, bert_adapter, metrics=["randomization"], random=False)
    assert identical(bert_adapter.model, before)
    table = curve_table(df, n_boot=200)
    assert list(table["step"]) == ["head", "layer 1", "layer 0", "embeddings"]
    assert (table["ci_low"] <= table["mean"]).all() and (table["mean"] <= table["ci_high"]).all()
    assert table["mean"].iloc[-1] < 0.5
    assert table["mean"].iloc[-1] < table["mean"].iloc[0]
    row = df.iloc[0]
    assert (row["family"], row["higher_is_better"]) == ("sanity", False)
    assert row["value"] == pytest.approx(np.nanmean(row["detail"]["values"]))


@pytest.mark.parametrize("name", ["attention", "attention_rollout", ("lime", {"n_samples": 32})])
def test_any_explainer_and_decoder_models(llama_adapter, name):
    exps = fs.explain(llama_adapter, SENTENCES[:3], [name])
    df = fs.evaluate(exps, llama_adapter, metrics=[("randomization", {"similarity": "topk"})],
                     random=False)
    for d in df["detail"]:
        assert d["steps"] == ["head", "layer 1", "layer 0", "embeddings"]
        assert all(v is None or 0 <= v <= 1 for v in d["values"])


def test_report_reads_the_curves(bert_adapter):
    """The report plots a curve when every row's detail holds steps and values."""
    from faithscope.report.figures import _curve

    exps = fs.explain(bert_adapter, SENTENCES[:3], ["gradient"])
    df = fs.evaluate(exps, bert_adapter, metrics=["randomization"])
    rows = df[df.explainer == "gradient"]
    key, xs, values = _curve([json.dumps(d) for d in rows["detail"]])
    assert key == "steps" and xs[0] == "head" and values.shape == (3, 4)
    # the random baseline ignores the model: it fails the sanity check with similarity 1
    rnd = df[df.explainer == "random"]
    assert rnd["value"].tolist() == pytest.approx([1.0] * 3)


STUDY = """\
name: analyses
models:
  - {{name: tiny, path: {path}}}
datasets:
  - name: sst2_planted
    split: dev
    n: 4
    train_split: train
    train_n: 16
    params: {{bundled: true}}
explainers: [gradient]
metrics: [randomization, randomization_independent, avg_sensitivity, comprehensiveness]
seeds: [0]
max_length: 32
recipe: {{epochs: 1, batch_size: 16, lr: 0.001, patience: null}}
"""


def test_analyses_run_in_a_study_and_reach_the_report(tmp_path):
    from faithscope.models.tiny import tiny_classifier
    from faithscope.report import collect
    from faithscope.report.figures import build_figures
    from faithscope.studies import open_study, parse_spec, run_study

    t = tiny_classifier(layers=1, seed=1)
    t.model.save_pretrained(tmp_path / "m")
    t.tokenizer.save_pretrained(tmp_path / "m")
    run_study(parse_spec(STUDY.format(path=tmp_path / "m")), tmp_path / "study")
    study = open_study(tmp_path / "study")
    m = study.metrics()
    fam = m.groupby("metric")["family"].first().to_dict()
    assert fam == {"randomization": "sanity", "randomization_independent": "sanity",
                   "avg_sensitivity": "robustness", "comprehensiveness": "faithfulness"}
    rnd = m[m.metric == "randomization"]
    assert set(rnd["explainer"]) == {"gradient", "random"}  # the study adds the baseline
    assert len(rnd) == 8 and all(json.loads(d)["steps"][0] == "head" for d in rnd["detail"])
    data = collect(study, n_boot=50)
    assert data.analysis_families == ["robustness", "sanity"]
    curves = [f for f in build_figures(data) if f.section == "curves"]
    assert {f.slug.split("-")[0] for f in curves} == {"robustness", "sanity"}


def test_analysis_declarations():
    from faithscope.metrics import Analysis, get_metric
    from faithscope.registry import metrics

    names = [n for n in metrics.names() if isinstance(get_metric(n), Analysis)]
    assert sorted(names) == sorted([
        "randomization", "randomization_independent", "max_sensitivity", "avg_sensitivity",
        "max_sensitivity_word", "avg_sensitivity_word", "explanation_attack",
        "explanation_attack_constrained", "sampling_stability"])
    for name in names:
        m = get_metric(name)
        assert m.name == name and m.needs == {"model", "explainer"}
        assert m.family in ("sanity", "robustness", "adversarial", "stability")
        # agreement between two sampling seeds: higher is better; every other analysis
        # measures a change or an attack's damage: lower is better
        assert m.higher_is_better is (name == "sampling_stability") and m.reference
        lo, hi = m.bounds
        assert lo < hi


def test_an_explainer_that_cannot_be_rebuilt_is_named(bert_adapter):
    import dataclasses

    (e,) = fs.explain(bert_adapter, SENTENCES[:1], ["gradient"])
    with pytest.raises(fs.InputError, match="'mine' cannot be rebuilt"):
        fs.evaluate([dataclasses.replace(e, explainer="mine")], bert_adapter,
                    metrics=["randomization"], random=False)
