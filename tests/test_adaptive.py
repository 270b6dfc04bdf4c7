"""Adaptive precision: per-unit standard errors of the sampling explainers (calibrated against
the spread over independent runs, 0 where exact, covering exact Shapley values), and
``n_samples="auto"`` (rounds, stopping rule, per-example keying, what is recorded)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, spearmanr

import faithscope as fs
import faithscope.models.tiny
from faithscope.explainers import KernelShap, Lime, MExGenCLIME, ShapleySampling
from faithscope.explainers.adaptive import expected_concordance, ranking_resolved, round_sizes
from faithscope.models.adapter import InputError
from helpers import brute_force_shapley
from test_partition_kernel_lime import attribute, make_item, random_game, sigmoid_game

D = 10
GAME = random_game(D, seed=3)


def runs(explainer, n_runs: int = 40, d: int = D, game=GAME):
    """``n_runs`` independent estimates of one game (example ids key the generators)."""
    items = [make_item(d, f"ex{r}") for r in range(n_runs)]
    scores, infos, adapter = attribute(explainer, {it.example_id: game for it in items}, items)
    return np.array([s[0] for s in scores]), np.array([i["se"][0] for i in infos]), infos, adapter


@pytest.mark.parametrize("explainer", [Lime(n_samples=300), KernelShap(n_samples=200),
                                       ShapleySampling(n_permutations=16),
                                       MExGenCLIME(oversampling=4.0),
                                       MExGenCLIME(oversampling=3.0, max_units_replace=3)],
                         ids=["lime", "kernel_shap", "shapley_sampling", "clime",
                              "clime_k3"])
def test_standard_errors_match_the_spread_over_independent_runs(explainer):
    phi, se, _, _ = runs(explainer)
    spread = phi.std(axis=0, ddof=1)  # what the standard error should predict, per unit
    ratio = se.mean(axis=0) / spread
    assert 0.7 < float(np.median(ratio)) < 1.4, ratio
    assert (ratio > 0.4).all() and (ratio < 2.5).all(), ratio


def test_error_bars_cover_exact_shapley_values():
    values = GAME(np.array([[(c >> j) & 1 for j in range(D)] for c in range(2**D)], bool))
    exact = brute_force_shapley(values, D)[0]
    phi, se, _, _ = runs(KernelShap(n_samples=400))
    covered = np.abs(phi - exact[None, :]) <= 1.96 * se
    assert covered.mean() >= 0.9, covered.mean()


def test_enumerated_estimates_have_zero_error():
    game = random_game(3, seed=1)
    (s_ks,), (i_ks,), _ = attribute(KernelShap(n_samples=10), {"0": game}, [make_item(3)])
    (s_sh,), (i_sh,), _ = attribute(ShapleySampling(n_permutations=6), {"0": game},
                                    [make_item(3)])
    assert i_ks["exact"] and not i_ks["se"].any() and i_sh["exact"] and not i_sh["se"].any()
    np.testing.assert_allclose(s_ks, s_sh, atol=1e-12)  # both exact Shapley values


def test_stopping_rule():
    phi = np.array([[1.0, 0.5, 0.0, 0.0]])
    small, large = np.full((1, 4), 0.01), np.full((1, 4), 0.3)
    kw = dict(confidence=0.95, top_k=None)
    assert ranking_resolved(phi, small, tolerance=0.05, **kw)  # the two zeros are tied
    assert not ranking_resolved(phi, small, tolerance=0.0, **kw)  # unless nothing is tied
    # by hand: pairs (1, .5), 2 x (1, 0), 2 x (.5, 0), (0, 0) at sd 0.3 sqrt(2), slack 0.05
    sd = 0.3 * np.sqrt(2)
    want = (norm.cdf(0.55 / sd) * 3 + norm.cdf(1.05 / sd) * 2 + norm.cdf(0.05 / sd)) / 6
    assert expected_concordance(phi[0], large[0], tolerance=0.05) == pytest.approx(want)
    assert not ranking_resolved(phi, large, tolerance=0.05, **kw)  # want = 0.874
    assert ranking_resolved(phi, large, tolerance=0.05, confidence=0.85, top_k=None)
    # only pairs touching the top unit: (1, .5) and 2 x (1, 0)
    top1 = (norm.cdf(0.55 / sd) + 2 * norm.cdf(1.05 / sd)) / 3
    assert expected_concordance(phi[0], large[0], tolerance=0.05, top_k=1) == \
        pytest.approx(top1)
    assert ranking_resolved(phi, large, tolerance=0.05, confidence=0.95, top_k=1)  # 0.963
    assert not ranking_resolved(phi, large, tolerance=0.05, confidence=0.99, top_k=1)
    assert not ranking_resolved(phi, np.full((1, 4), np.nan), tolerance=0.05, **kw)
    assert ranking_resolved(phi, np.zeros((1, 4)), tolerance=0.0, **kw)  # exact
    sizes = round_sizes("auto", 64, 1000)
    assert sizes[:4] == [64, 32, 48, 72] and sum(sizes) == 1000


def test_auto_stops_easy_examples_early_and_hard_ones_at_the_cap():
    a = np.linspace(3.0, -3.0, D)  # well separated main effects: resolved quickly
    easy = sigmoid_game(a * 0.2, np.zeros((D, D)))
    # every unit plays the same role (a true tie everywhere), and interactions make samples noisy
    flat = sigmoid_game(np.full(D, 0.3), np.triu(np.full((D, D), 0.4), 1))
    items = [make_item(D, "easy"), make_item(D, "flat")]
    lime = Lime(n_samples="auto", tolerance=0.0, max_samples=1000)
    (s_easy, _), (i_easy, i_flat), adapter = attribute(lime, {"easy": easy, "flat": flat}, items)
    assert i_easy["resolved"] and i_easy["n_samples"] < 1000
    assert not i_flat["resolved"] and i_flat["n_samples"] == 1000
    assert i_flat["rounds"] > i_easy["rounds"]
    assert spearmanr(s_easy[0], a).statistic > 0.99
    # one virtual batch per round, with only the examples still running
    assert [sorted(c) for c in adapter.calls][: i_easy["rounds"]] == [["easy", "flat"]] * \
        i_easy["rounds"]
    assert all(list(c) == ["flat"] for c in adapter.calls[i_easy["rounds"]:])
    # a mask is scored once per call, however many rounds draw it
    assert i_flat["forwards"] == sum(len(np.unique(c["flat"], axis=0)) for c in adapter.calls)


@pytest.mark.parametrize("explainer", [Lime(n_samples="auto"), KernelShap(n_samples="auto"),
                                       ShapleySampling(n_permutations="auto")],
                         ids=["lime", "kernel_shap", "shapley_sampling"])
def test_auto_is_keyed_per_example_and_agrees_with_exact_values(explainer):
    games = {f"ex{r}": random_game(D, seed=r) for r in range(4)}
    items = [make_item(D, k) for k in games]
    together, infos, _ = attribute(explainer, games, items)
    alone, _, _ = attribute(explainer, {"ex2": games["ex2"]}, [items[2]])
    np.testing.assert_array_equal(together[2], alone[0])
    for k, it in enumerate(items):
        masks = np.array([[(c >> j) & 1 for j in range(D)] for c in range(2**D)], bool)
        exact = brute_force_shapley(games[it.example_id](masks), D)[0]
        if not isinstance(explainer, Lime):  # LIME estimates another quantity
            assert spearmanr(together[k][0], exact).statistic > 0.8
        assert infos[k]["n_samples"] <= explainer.max_samples + 2**D


def test_clime_errors_count_only_sampled_sizes_and_auto_stops_on_them():
    """C-LIME's sizes are strata drawn without replacement: a size whose every subset is used
    adds no error (0 once all are), and ``oversampling="auto"`` adds new subsets per round."""
    game = random_game(D, seed=5)
    # oversampling 10 at 10 units: all 10 singles and all 45 pairs fit the 100-row budget
    (s_all,), (i_all,), _ = attribute(MExGenCLIME(oversampling=10.0), {"0": game},
                                      [make_item(D)])
    assert not i_all["se"].any() and i_all["forwards"] == 1 + 10 + 45
    (s_sub,), (i_sub,), _ = attribute(MExGenCLIME(oversampling=4.0), {"0": game},
                                      [make_item(D)])
    assert (i_sub["se"] > 0).all()
    # the same game with the singles' rows only sampled: larger errors
    (_, ), (i_k3,), _ = attribute(MExGenCLIME(oversampling=3.0, max_units_replace=3),
                                  {"0": game}, [make_item(D)])
    assert np.nanmedian(i_k3["se"]) > np.nanmedian(i_sub["se"])
    # auto: rounds of new subsets until resolved or all used; keyed per example
    games = {f"ex{r}": random_game(D, seed=r) for r in range(3)}
    items = [make_item(D, k) for k in games]
    auto = MExGenCLIME(oversampling="auto", tolerance=0.0, confidence=0.999)
    together, infos, adapter = attribute(auto, games, items)
    alone, _, _ = attribute(auto, {"ex1": games["ex1"]}, [items[1]])
    np.testing.assert_array_equal(together[1], alone[0])
    for inf in infos:  # at this confidence every subset of <= 2 units ends up used
        assert inf["exact"] and inf["forwards"] == 56 and not inf["se"].any()
        assert inf["rounds"] >= 1
    (full,), _, _ = attribute(MExGenCLIME(oversampling=10.0), {"ex0": games["ex0"]},
                              [items[0]])
    np.testing.assert_allclose(together[0], full, atol=1e-9)  # = the enumerated fit
    # well separated main effects on 16 units (137 subsets): resolved before all are used
    d = 16
    separated = sigmoid_game(np.linspace(3.0, -3.0, d) * 0.2, np.zeros((d, d)))
    easy = MExGenCLIME(oversampling="auto", tolerance=0.05, confidence=0.95)
    (_,), (i_easy,), _ = attribute(easy, {"0": separated}, [make_item(d)])
    assert i_easy["resolved"] and not i_easy.get("exact") and i_easy["forwards"] < 137
    with pytest.raises(InputError, match="nonzero"):
        fs.make_explainer(("mexgen_clime", {"oversampling": "auto", "nonzero": 2}))


def test_auto_lime_enumerates_short_inputs_and_records_what_it_used():
    model = fs.models.tiny.tiny_classifier()
    (e,) = fs.explain(model, ["a witty and moving film"], [("lime", {"n_samples": "auto"})])
    assert e.params["n_samples"] == "auto"  # what was asked ...
    assert e.info["exact"] and e.info["forwards"] == 2**5 and e.info["n_samples"] == 2**5
    assert e.errors is not None and not e.errors.any()  # ... and what was used
    (f,) = fs.explain(model, ["a witty and moving film"], [("lime", {"n_samples": 4000})])
    np.testing.assert_allclose(e.scores, f.scores, atol=4 * float(f.errors.max()))


def test_errors_are_stored_and_survive_save_and_load(tmp_path):
    model = fs.models.tiny.tiny_classifier()
    exps = fs.explain(model, ["a gorgeous , witty film", "dull"],
                      ["lime", "kernel_shap", ("shapley_sampling", {"n_permutations": 4}),
                       "gradient", "partition_shap"])
    for e in exps:
        has = e.explainer in ("lime", "kernel_shap", "shapley_sampling")
        assert (e.errors is not None) == has
        if has:
            assert e.errors.shape == e.scores.shape and e.errors.dtype == np.float32
    for suffix in (".json", ".jsonl", ".parquet"):
        back = fs.load_explanations(fs.save_explanations(exps, tmp_path / f"x{suffix}"))
        assert all(a.equals(b) for a, b in zip(exps, back, strict=True))
        assert back[0].errors is not None and np.array_equal(back[0].errors, exps[0].errors)
    changed = exps[0].__class__(**{**exps[0].__dict__, "errors": exps[0].errors * 2})
    assert not exps[0].equals(changed)


@pytest.mark.parametrize("params", [{"n_samples": "many"}, {"n_samples": "auto", "tolerance": 1},
                                    {"n_samples": "auto", "confidence": 1.0},
                                    {"n_samples": "auto", "top_k": 0},
                                    {"n_samples": "auto", "max_samples": 0}])
def test_bad_precision_settings_are_refused(params):
    with pytest.raises(InputError):
        fs.make_explainer(("lime", params))


def test_cli_accepts_auto_and_prints_error_bars(tmp_path, capsys):
    from faithscope.cli import main
    from helpers import save_tiny

    path = save_tiny(tmp_path / "m")
    assert main(["explain", "--model", str(path), "--text", "a witty , moving film",
                 "--explainer", "kernel_shap", "--n-samples", "auto"]) == 0
    out = capsys.readouterr().out
    assert "95 % error bar" in out and "witty" in out
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "--model", str(path), "--text", "x", "--explainer", "lime",
              "--n-samples", "lots"])
    assert exit_.value.code == 2
