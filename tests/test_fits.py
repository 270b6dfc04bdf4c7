"""The batched regressions (``explainers/fits.py``) against the one-example functions they
replace, term by term: LIME's weighted ridge with its HC1 sandwich errors, KernelSHAP's
efficiency-constrained regression with its paired sandwich errors and rank; and LIME and
KernelSHAP with batched fits against the same explainers fitting one example at a time, at a
fixed budget, in auto mode (several rounds) and with designs below full rank."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from faithscope.explainers import KernelShap, Lime
from faithscope.explainers.adaptive import paired_constrained_se, ridge_se
from faithscope.explainers.fits import constrained_many, ridge_many, shape_groups
from faithscope.explainers.perturbation import (
    RANK_RTOL,
    constrained_rank,
    constrained_wls,
    weighted_ridge,
)
from test_partition_kernel_lime import attribute, make_item, random_game

RTOL = 1e-9


@pytest.mark.parametrize("targets", [1, 3])
def test_ridge_many_is_the_one_example_fit(targets):
    rng = np.random.default_rng(0)
    b, n, d = 5, 120, 7
    X = (rng.random((b, n, d)) < 0.6).astype(float)
    Y = X @ rng.normal(size=(d, targets)) + rng.normal(0, 0.3, (b, n, targets))
    w = rng.uniform(0.1, 2.0, (b, n))
    coef, intercept, se = ridge_many(X, Y, w, 0.5)
    for j in range(b):
        c1, i1 = weighted_ridge(X[j], Y[j], w[j], 0.5)
        np.testing.assert_allclose(coef[j], c1, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(intercept[j], i1, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(se[j], ridge_se(X[j], Y[j], w[j], 0.5, c1, i1), rtol=RTOL)


def _paired(rng, b, pairs, d, n_fixed):
    fixed = np.vstack([np.eye(d, dtype=bool), ~np.eye(d, dtype=bool)])[:n_fixed]
    out = []
    for _ in range(b):
        Z = rng.random((pairs, d)) < 0.5
        out.append(np.vstack([fixed, np.stack([Z, ~Z], axis=1).reshape(-1, d)]))
    return np.stack(out).astype(float)


@pytest.mark.parametrize(("n_fixed", "targets"), [(0, 1), (0, 2), (12, 1)])
def test_constrained_many_is_the_one_example_fit(n_fixed, targets):
    rng = np.random.default_rng(1)
    b, pairs, d = 4, 40, 6
    Z = _paired(rng, b, pairs, d, n_fixed)
    y = Z @ rng.normal(size=(d, targets)) + rng.normal(0, 0.2, (b, len(Z[0]), targets))
    total = rng.normal(size=(b, targets))
    w = np.broadcast_to(np.concatenate([np.full(n_fixed, 0.3), np.ones(2 * pairs)]),
                        (b, len(Z[0])))
    phi, se, rank = constrained_many(Z, y, w, total, n_fixed=n_fixed, rank_rtol=RANK_RTOL)
    for j in range(b):
        p1 = constrained_wls(Z[j], y[j], w[j], total[j])
        np.testing.assert_allclose(phi[j], p1, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(phi[j].sum(axis=1), total[j], rtol=RTOL)  # efficiency
        s1 = paired_constrained_se(Z[j], y[j], p1, total[j], weights=w[j], n_fixed=n_fixed)
        np.testing.assert_allclose(se[j], s1, rtol=RTOL)
        assert rank[j] == constrained_rank(Z[j], w[j]) == d - 1


def test_constrained_many_reports_designs_below_full_rank():
    rng = np.random.default_rng(2)
    Z = _paired(rng, 2, 3, 8, 0)  # 3 pairs: rank 3 < 7
    y = rng.normal(size=(2, 6, 1))
    _, se, rank = constrained_many(Z, y, np.ones((2, 6)), np.ones((2, 1)), n_fixed=0,
                                   rank_rtol=RANK_RTOL)
    assert rank.tolist() == [constrained_rank(z, np.ones(6)) for z in Z] == [3, 3]
    assert np.isnan(se).all()  # no more pairs than free coefficients: unknown


def test_shape_groups_cut_blocks_and_skip_none():
    keys = [(10, 2), None, (10, 2), (10, 3), (10, 2)]
    groups = shape_groups(keys, lambda i: 2**16)  # two examples per block of 2**17
    assert sorted(map(sorted, groups)) == [[0, 2], [3], [4]]


def _one_at_a_time(self, items, states, masks, values):
    return [self.fit(*args) for args in zip(items, states, masks, values, strict=True)]


@pytest.mark.parametrize("explainer", [
    Lime(n_samples=300), Lime(n_samples="auto", max_samples=600),
    KernelShap(n_samples=200), KernelShap(n_samples="auto", max_samples=600),
    KernelShap(n_samples=12)], ids=["lime", "lime-auto", "ks", "ks-auto", "ks-underdetermined"])
def test_batched_fits_give_the_explainers_results(explainer, monkeypatch):
    # sizes 2..12 (KernelSHAP enumerates the shortest), several examples per size
    items = [make_item(d, f"e{d}-{r}") for d in (2, 3, 7, 7, 9, 12) for r in range(3)]
    games = {it.example_id: random_game(it.n_units, seed=k) for k, it in enumerate(items)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KernelSHAP's underdetermined warning
        batched, b_info, _ = attribute(explainer, games, items)
        monkeypatch.setattr(type(explainer), "fit_many", _one_at_a_time)
        alone, a_info, _ = attribute(explainer, games, items)
    for s1, s2, i1, i2 in zip(batched, alone, b_info, a_info, strict=True):
        np.testing.assert_allclose(s1, s2, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(i1.pop("se"), i2.pop("se"), rtol=RTOL, atol=1e-12)
        assert i1 == i2  # forwards, samples, rounds, rank, ...
    if explainer.n_samples == 12:  # the fallback ran: designs below full rank
        assert any(i["underdetermined"] for i in b_info)
