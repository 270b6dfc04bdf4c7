"""Seed stability (hand-computed agreement, per-unit spread, prediction split), LING-LR(-E),
and both as study analyses on tiny models fine-tuned with three seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

import faithscope as fs
from faithscope.explanation import Explanation
from faithscope.metrics.stability import (
    agreement,
    pairwise_agreement,
    seed_stability,
    summarize_agreement,
    unit_distribution,
)
from faithscope.models.ling import LingLR, attribution_lexicon, style_features, words
from faithscope.models.tiny import tiny_classifier
from faithscope.studies import load_spec, open_study, parse_spec, run_study
from faithscope.studies.spec import SpecError
from faithscope.units import Unit

WORDS = ("a", "fine", "film", "today")


def exp(scores, *, seed=0, example="e0", probs=(0.2, 0.8), explainer="lime"):
    units = tuple(Unit(w, 0, len(w), tokens=(i + 1,)) for i, w in enumerate(WORDS[:len(scores)]))
    return Explanation(example_id=example, text=" ".join(WORDS), pair=None, units=units,
                       scores=np.array([scores], dtype=np.float32), targets=(1,),
                       target_labels=("pos",), probs=np.array(probs, dtype=np.float32),
                       explainer=explainer, params={}, seed=seed)


def test_agreement_hand_computed():
    rho, tau, jac = agreement(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1]), k=2)
    assert (rho, tau) == (-1.0, -1.0)
    assert jac == 0.0  # {3, 2} vs {0, 1}
    rho, tau, jac = agreement(np.array([0.1, 0.9, 0.3, 0.2]), np.array([0.1, 0.8, 0.2, 0.3]), k=2)
    assert rho == pytest.approx(0.8)  # ranks 1 4 3 2 vs 1 4 2 3: 1 - 6*2/(4*15)
    assert tau == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert jac == pytest.approx(1 / 3)  # {1, 2} vs {1, 3}
    assert math.isnan(agreement(np.ones(3), np.arange(3.0), k=1)[0])
    _, _, jac = agreement(np.array([-5.0, 1, 2]), np.array([5.0, 1, 2]), k=1, by="abs")
    assert jac == 1.0


def test_pairs_units_and_prediction_split():
    runs = {0: [exp([0.1, 0.9, 0.3]), exp([1, 2, 3], example="e1")],
            1: [exp([0.0, 0.8, 0.5]), exp([3, 2, 1], example="e1", probs=(0.9, 0.1))],
            2: [exp([0.2, 0.7, 0.1]), exp([1, 3, 2], example="e1")]}
    pairs = pairwise_agreement(runs, k=1)
    assert len(pairs) == 2 * 3
    e0 = pairs[pairs.example_id == "e0"]
    assert e0.unanimous.all() and e0.same_prediction.all()
    e1 = pairs[pairs.example_id == "e1"].set_index(["run_a", "run_b"])
    assert not e1.unanimous.any()
    assert e1.loc[(0, 2), "same_prediction"] and not e1.loc[(0, 1), "same_prediction"]
    assert e1.loc[(0, 1), "spearman"] == -1.0
    summ = summarize_agreement(pairs, ("unanimous",)).set_index(["unanimous", "measure"])
    assert summ.loc[(True, "jaccard"), "mean"] == 1.0  # unit 1 is on top in every e0 run
    assert summ.loc[(True, "jaccard"), "n"] == 3
    units = unit_distribution(runs).set_index(["example_id", "unit"])
    np.testing.assert_allclose(units.loc[("e0", 1), "mean"], 0.8, rtol=1e-6)
    np.testing.assert_allclose(units.loc[("e0", 1), "std"], 0.1, rtol=1e-5)
    np.testing.assert_allclose(units.loc[("e0", 1), "top1_share"], 1.0)
    np.testing.assert_allclose(units.loc[("e1", 0), "mean_l1"], (1 / 6 + 3 / 6 + 1 / 6) / 3,
                               rtol=1e-6)


def test_within_model_repeats_of_a_deterministic_explainer_agree_fully():
    adapters = {s: tiny_classifier(seed=s) for s in (0, 1, 2)}
    texts = ["a good film", "the plot is a dull mess", "witty and moving"]
    by_seed = {s: fs.explain(a, texts, "leave_one_out", seed=s) for s, a in adapters.items()}
    repeats = {r: fs.explain(adapters[0], texts, "leave_one_out", seed=r) for r in (0, 5)}
    res = seed_stability(by_seed, repeats=repeats, k=2, accuracy={0: 0.5, 1: 0.6, 2: 0.7})
    s = res.summary.set_index(["source", "measure"])
    assert s.loc[("within_model", "spearman"), "mean"] == 1.0
    assert s.loc[("between_seeds", "spearman"), "mean"] < 0.99  # different random models
    assert res.accuracy["accuracy"].tolist() == [0.5, 0.6, 0.7]
    assert set(res.by_prediction["unanimous"]) <= {True, False}


def test_style_features_and_words():
    f = style_features("It's NOT very good!! Really?")
    assert f["n_words"] == 5 and f["negation_rate"] == pytest.approx(1 / 5)
    assert f["intensifier_rate"] == pytest.approx(2 / 5)
    assert f["punct_exclamation"] == pytest.approx(2 / 5)
    assert f["all_caps_rate"] == pytest.approx(1 / 5)
    assert words("Don't stop, isn't it?") == ["don't", "stop", ",", "isn't", "it", "?"]


def test_ling_lr_fits_and_explains_deterministically():
    rng = np.random.default_rng(0)
    pos, neg = ["great", "moving", "witty", "fine"], ["dull", "flat", "boring", "mess"]
    texts, labels = [], []
    for i in range(80):
        y = i % 2
        ws = list(rng.choice(pos if y else neg, 3)) + list(rng.choice(["a", "the", "film"], 2))
        texts.append(" ".join(ws))
        labels.append(y)
    clf = LingLR(ngram_vocab=30).fit(texts, labels)
    assert clf.accuracy(texts, labels) == 1.0
    again = LingLR(ngram_vocab=30).fit(texts, labels)
    assert np.array_equal(clf.explain(texts), again.explain(texts))  # bit-identical refit
    perm = rng.permutation(len(texts))
    other = LingLR(ngram_vocab=30).fit([texts[i] for i in perm], [labels[i] for i in perm])
    assert np.abs(other.explain(texts) - clf.explain(texts)).max() < 1e-4
    # contributions add up to the predicted class's margin over the mean of the classes
    z = clf.decision_function(texts)
    pred = z.argmax(1)
    margin = (z - clf.intercept_)[np.arange(len(z)), pred] - (z - clf.intercept_).mean(1)
    np.testing.assert_allclose(clf.explain(texts).sum(1), margin, rtol=1e-8, atol=1e-8)


def test_attribution_lexicon_hand_computed():
    e = [exp([0.9, 0.1, 0.5]), exp([0.7, 0.3, 0.0]), exp([-1.0, 0.2, 0.2])]
    lex = attribution_lexicon(e, [1, 1, 0], size=2, min_count=1)
    assert lex[1] == ["a", "film"]  # means: a 0.8, film 0.25, fine 0.2
    assert lex[0] == ["film", "fine"]  # tie at 0.2 broken alphabetically
    assert attribution_lexicon(e, [1, 1, 0], size=2, min_count=2)[1] == ["a", "film"]


def test_lexicon_features_are_counted():
    clf = LingLR(ngram_vocab=0, lexicon={0: ["dull"], 1: ["great", "fine"]})
    clf.fit(["great fine great", "dull", "fine", "dull dull plot"], [1, 0, 1, 0])
    x = clf.features(["great and fine and dull"])[0]
    names = clf.feature_names
    assert x[names.index("lexicon_1_count")] == 2 and x[names.index("lexicon_0_count")] == 1
    assert x[names.index("lexicon_1_rate")] == pytest.approx(2 / 5)


# ------------------------------------------------------------------------ as study analyses
SPEC = """\
name: seeds
models:
  - {{name: tiny, path: {a}}}
datasets:
  - name: sst2_planted
    split: dev
    n: 8
    train_split: train
    train_n: 48
    accuracy_n: 16
    params: {{bundled: true}}
explainers:
  - {{name: lime, n_samples: 16}}
  - gradient
  - lrp
metrics: [comprehensiveness]
seeds: [0, 1, 2]
shard_size: 4
max_length: 32
recipe: {{epochs: 1, batch_size: 16, lr: 0.001, patience: null}}
analyses:
  - {{name: seed_stability, k: 2, repeats: 3}}
  - {{name: ling_lr, lexicon_n: 24, lexicon_size: 5, min_count: 1, ngram_vocab: 50}}
"""


@pytest.fixture(scope="module")
def seeds_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    t = tiny_classifier(seed=1)
    t.model.save_pretrained(root / "a")
    t.tokenizer.save_pretrained(root / "a")
    path = root / "spec.yaml"
    path.write_text(SPEC.format(a=root / "a"))
    out = root / "study"
    run_study(load_spec(path), out)
    return path, out


def test_seed_stability_in_a_study(seeds_study):
    _, out = seeds_study
    study = open_study(out)
    pairs = study.analysis("seed_stability", "pairs")
    between = pairs[pairs.source == "between_seeds"]
    # 8 examples x 3 pairs of seeds x (lime, gradient, lrp, random)
    assert len(between) == 8 * 3 * 4
    assert set(between.explainer) == {"lime", "gradient", "lrp", "random"}
    within = pairs[pairs.source == "within_model"]
    assert set(within.explainer) == {"lime"} and len(within) == 8 * 3  # 3 sampling seeds
    assert within.run_a.min() == 0 and within.run_b.max() == 2000
    units = study.analysis("seed_stability", "units")
    assert (units.n_runs == 3).all() and (units["std"] >= 0).all()
    acc = study.analysis("seed_stability", "accuracy")
    models = study.models().sort_values("seed")
    np.testing.assert_allclose(acc.sort_values("seed")["accuracy"], models["accuracy"])
    # every pair compares explanations of the example's gold label, in both seeds, also where
    # a seed predicted another class (those were explained again for the gold label)
    assert (pairs.target_source == "gold label").all() and pairs.same_target.all()
    from faithscope.data import load_dataset

    gold = {e.id: e.label for e in load_dataset("sst2_planted", split="dev", n=8,
                                                 bundled=True).examples}
    assert all(int(t) == gold[i] for i, t in zip(pairs.example_id, pairs.target_a))
    assert (~between.same_prediction).any()  # seeds that disagree: still the same class


def test_pairs_compare_one_class_across_runs():
    """Run 0 predicts class 1, run 1 class 0; both explain both classes. With targets, the
    pair compares the class given; without, each run's own first row (different classes)."""
    def two(rows, probs, seed):
        units = tuple(Unit(w, 0, len(w), tokens=(i + 1,)) for i, w in enumerate(WORDS[:3]))
        first = int(np.argmax(probs))
        return Explanation(example_id="e0", text="a fine film", pair=None, units=units,
                           scores=np.array(rows if first == 0 else rows[::-1], np.float32),
                           targets=(first, 1 - first), target_labels=("a", "b"),
                           probs=np.array(probs, np.float32), explainer="lime", params={},
                           seed=seed)
    cls0, cls1 = [0.9, 0.1, 0.0], [0.0, 0.2, 0.8]
    runs = {0: [two([cls0, cls1], (0.2, 0.8), 0)], 1: [two([cls0, cls1], (0.7, 0.3), 1)]}
    own = pairwise_agreement(runs, k=1)
    assert not own.same_target.iloc[0] and own.spearman.iloc[0] == pytest.approx(-1.0)
    same = pairwise_agreement(runs, k=1, targets={"e0": 1})
    assert same.same_target.iloc[0] and same.spearman.iloc[0] == pytest.approx(1.0)
    assert list(same[["target", "target_a", "target_b"]].iloc[0]) == ["1", 1, 1]
    only = {0: [exp([0.1, 0.9, 0.3])], 1: [exp([0.0, 0.8, 0.5], seed=1)]}  # class 1 only
    with pytest.raises(ValueError, match="no explanation of class 0"):
        pairwise_agreement(only, targets={"e0": 0})


def test_ling_lr_in_a_study(seeds_study):
    _, out = seeds_study
    study = open_study(out)
    acc = study.analysis("ling_lr", "accuracy")
    counts = acc.classifier.value_counts().to_dict()
    assert counts == {"transformer": 3, "ling_lr_e_single_seed": 3, "ling_lr": 1, "ling_lr_e": 1}
    assert acc["accuracy"].between(0, 1).all()
    det = study.analysis("ling_lr", "determinism")
    assert (det[det.order == "same"].max_abs_diff == 0).all()
    assert (det.max_abs_diff < 1e-3).all()
    lex = study.analysis("ling_lr", "lexicon")
    assert set(lex.lexicon) == {"pooled", "seed 0", "seed 1", "seed 2"}
    assert (lex.groupby(["lexicon", "class"]).size() <= 5).all()


def test_rerun_finds_the_analyses_done(seeds_study, capsys):
    path, out = seeds_study
    ran = []
    run_study(load_spec(path), out, on_unit=lambda u, rt: ran.append(u.stage))
    assert ran == []


def test_analysis_spec_errors():
    base = ("name: x\nmodels: [{name: m, hub: h}]\ndatasets: [sst2]\nexplainers: [lime]\n"
            "analyses:\n")
    with pytest.raises(SpecError, match="line 6.*unknown study analysis 'seed_stabilty'"):
        parse_spec(base + "  - seed_stabilty\n", source="s.yaml")
    with pytest.raises(SpecError, match="unknown hyper-parameter"):
        parse_spec(base + "  - {name: seed_stability, kk: 3}\n")
    with pytest.raises(SpecError, match="repeats"):
        parse_spec(base + "  - {name: seed_stability, repeats: 0}\n")
    spec = parse_spec(base + "  - {name: ling_lr, lexicon_n: 10}\n")
    assert spec.analyses[0].params == {"lexicon_n": 10}


def test_cli_results_prints_the_analyses(seeds_study, capsys):
    from faithscope.cli import main

    _, out = seeds_study
    assert main(["results", str(out)]) == 0
    text = capsys.readouterr().out
    assert "seed stability · sst2_planted · tiny · spearman" in text
    assert "LING-LR vs the transformer" in text and "ling_lr_e_single_seed" in text
    assert main(["list", "analyses"]) == 0
    assert capsys.readouterr().out.split() == ["ling_lr", "seed_stability"]


def test_report_shows_agreement_and_uncertainty(seeds_study, tmp_path):
    from faithscope.report import write_report

    _, out = seeds_study
    path = write_report(out, tmp_path / "r.html", figures_dir=tmp_path / "figs")
    text = path.read_text()
    assert '<section id="seeds">' in text and 'href="#seeds"' in text
    assert "within model (sampling seeds)" in text and "LING-LR · sst2_planted · tiny" in text
    assert 'id="fig-seeds-sst2-planted-tiny"' in text
    assert 'id="fig-uncertainty-sst2-planted-tiny"' in text
    assert (tmp_path / "figs" / "uncertainty-sst2-planted-tiny.png").stat().st_size > 5000
    assert write_report(out, tmp_path / "r2.html").read_text() == text  # deterministic
