"""The batched regressions (``explainers/fits.py``, the only implementations) against plain
one-example formulas written here: LIME's weighted ridge with an unpenalised intercept and its
HC1 sandwich errors (White 1980), KernelSHAP's efficiency-constrained least squares with
sandwich errors over antithetic pairs (Covert & Lee 2021) and its rank against an SVD; and the
explainers fitting a round's examples together against the same explainers fitting one example
at a time, at a fixed budget, in auto mode (several rounds) and below full rank."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from faithscope.explainers import KernelShap, Lime, MExGenCLIME, fits
from faithscope.explainers.fits import (
    constrained_many,
    ridge_many,
    shape_groups,
    stratified_wls_many,
)
from faithscope.explainers.perturbation import constrained_rank, constrained_wls
from test_partition_kernel_lime import attribute, make_item, random_game


def ridge_reference(X, Y, w, alpha):
    """argmin sum_i w_i (y_i - b - x_i c)^2 + alpha |c|^2 through the augmented normal
    equations (the intercept unpenalised), and the HC1 sandwich of c."""
    n, d = X.shape
    X1 = np.hstack([np.ones((n, 1)), X])
    P = np.diag([0.0] + [alpha] * d)
    M = X1.T @ (w[:, None] * X1) + P
    beta = np.linalg.solve(M, X1.T @ (w[:, None] * Y))
    R = Y - X1 @ beta
    se = []
    for t in range(Y.shape[1]):
        # the intercept profiled out: the sandwich of c on the weighted-centred design
        xc = X - (w @ X) / w.sum()
        A = xc.T @ (w[:, None] * xc) + alpha * np.eye(d)
        meat = sum(w[i] ** 2 * R[i, t] ** 2 * np.outer(xc[i], xc[i]) for i in range(n))
        C = np.linalg.inv(A) @ meat @ np.linalg.inv(A) * n / (n - d - 1)
        se.append(np.sqrt(np.diag(C)))
    return beta[1:].T, beta[0], np.array(se)


def constrained_reference(Z, y, w, total, n_fixed):
    """min sum_i w_i (y_i - z_i phi)^2 subject to sum(phi) = total, by a Lagrange multiplier
    (the KKT system), and the sandwich over pairs of the eliminated form."""
    n, d = Z.shape
    K = np.zeros((d + 1, d + 1))
    K[:d, :d] = Z.T @ (w[:, None] * Z)
    K[:d, d] = K[d, :d] = 1.0
    phi, se = [], []
    for t in range(y.shape[1]):
        sol = np.linalg.solve(K, np.concatenate([Z.T @ (w * y[:, t]), [total[t]]]))
        p = sol[:d]
        X = Z[:, :-1] - Z[:, -1:]
        r = w * (y[:, t] - Z @ p)
        g = (X * r[:, None])[n_fixed:]
        g = g[0::2] + g[1::2]  # a coalition and its complement: one draw
        P = len(g)
        Ainv = np.linalg.inv(X.T @ (w[:, None] * X))
        C = Ainv @ (g.T @ g) @ Ainv * P / (P - (d - 1))
        phi.append(p)
        se.append(np.sqrt(np.concatenate([np.diag(C), [C.sum()]])))
    return np.array(phi), np.array(se)


RTOL = 1e-9


@pytest.mark.parametrize("targets", [1, 3])
def test_ridge_many_is_the_weighted_ridge_with_its_sandwich(targets):
    rng = np.random.default_rng(0)
    b, n, d = 5, 120, 7
    X = (rng.random((b, n, d)) < 0.6).astype(float)
    Y = X @ rng.normal(size=(d, targets)) + rng.normal(0, 0.3, (b, n, targets))
    w = rng.uniform(0.1, 2.0, (b, n))
    coef, intercept, se = ridge_many(X, Y, w, 0.5)
    for j in range(b):
        c1, i1, s1 = ridge_reference(X[j], Y[j], w[j], 0.5)
        np.testing.assert_allclose(coef[j], c1, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(intercept[j], i1, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(se[j], s1, rtol=RTOL)
    assert ridge_many(X, Y, w, 0.5, errors=False)[2] is None


def _paired(rng, b, pairs, d, n_fixed):
    fixed = np.vstack([np.eye(d, dtype=bool), ~np.eye(d, dtype=bool)])[:n_fixed]
    out = []
    for _ in range(b):
        Z = rng.random((pairs, d)) < 0.5
        out.append(np.vstack([fixed, np.stack([Z, ~Z], axis=1).reshape(-1, d)]))
    return np.stack(out).astype(float)


@pytest.mark.parametrize(("n_fixed", "targets"), [(0, 1), (0, 2), (12, 1)])
def test_constrained_many_is_the_constrained_least_squares(n_fixed, targets):
    rng = np.random.default_rng(1)
    b, pairs, d = 4, 40, 6
    Z = _paired(rng, b, pairs, d, n_fixed)
    y = Z @ rng.normal(size=(d, targets)) + rng.normal(0, 0.2, (b, len(Z[0]), targets))
    total = rng.normal(size=(b, targets))
    w = np.broadcast_to(np.concatenate([np.full(n_fixed, 0.3), np.ones(2 * pairs)]),
                        (b, len(Z[0])))
    phi, se, rank = constrained_many(Z, y, w, total, n_fixed=n_fixed)
    for j in range(b):
        p1, s1 = constrained_reference(Z[j], y[j], w[j], total[j], n_fixed)
        np.testing.assert_allclose(phi[j], p1, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(phi[j].sum(axis=1), total[j], rtol=RTOL)  # efficiency
        np.testing.assert_allclose(se[j], s1, rtol=1e-8)
        np.testing.assert_allclose(constrained_wls(Z[j], y[j], w[j], total[j]), phi[j],
                                   rtol=RTOL, atol=1e-12)
        assert rank[j] == constrained_rank(Z[j], w[j]) == d - 1


def test_constrained_many_reports_designs_below_full_rank():
    rng = np.random.default_rng(2)
    Z = _paired(rng, 2, 3, 8, 0)  # 3 pairs: rank 3 < 7
    y = rng.normal(size=(2, 6, 1))
    phi, se, rank = constrained_many(Z, y, np.ones((2, 6)), np.ones((2, 1)), n_fixed=0)
    assert rank.tolist() == [constrained_rank(z, np.ones(6)) for z in Z] == [3, 3]
    assert np.isnan(se).all()  # no more pairs than free coefficients: unknown
    for j in range(2):  # the minimum-norm solution of the eliminated system (up to the
        X = Z[j][:, :-1] - Z[j][:, -1:]  # 1e-12 ridge of its normal equations)
        head = np.linalg.pinv(X) @ (y[j] - Z[j][:, -1:])
        np.testing.assert_allclose(phi[j][0, :-1], head[:, 0], atol=1e-3)
        np.testing.assert_allclose(phi[j].sum(), 1.0)


def stratified_reference(X, y, w, strata, population):
    """Weighted least squares with intercept by the normal equations, and the sandwich with a
    stratified, finite-population meat summed row by row (Cochran 1977, ch. 5)."""
    n, d = X.shape
    X1 = np.hstack([np.ones((n, 1)), X])
    A = X1.T @ (w[:, None] * X1)
    beta = np.linalg.solve(A, X1.T @ (w[:, None] * y))
    R = (y - X1 @ beta) * w[:, None]
    se = []
    for t in range(y.shape[1]):
        M = np.zeros((d + 1, d + 1))
        s_rows = 0
        for h in set(strata.tolist()):
            rows = np.flatnonzero(strata == h)
            n_h, N_h = len(rows), population[h]
            if n_h == N_h:
                continue
            s_rows += n_h
            g = X1[rows] * R[rows, t : t + 1]
            gbar = g.mean(axis=0)
            for i in range(n_h):
                M += (1 - n_h / N_h) * n_h / (n_h - 1) * np.outer(g[i] - gbar, g[i] - gbar)
        C = np.linalg.inv(A) @ M @ np.linalg.inv(A) * s_rows / (s_rows - d - 1)
        se.append(np.sqrt(np.diag(C))[1:])
    return beta, np.array(se)


@pytest.mark.parametrize("targets", [1, 2])
def test_stratified_wls_many_is_the_weighted_fit_with_its_stratified_sandwich(targets):
    rng = np.random.default_rng(3)
    b, d = 4, 6
    strata = np.array([0] + [1] * 6 + [2] * 12)  # the input, every single removal, 12 of 15
    population = np.array([1, 6, 15, 20, 15, 6, 1])
    X = np.zeros((b, len(strata), d))
    for j in range(b):
        X[j, 1:7] = np.eye(d)
        pairs = [(a, c) for a in range(d) for c in range(a + 1, d)]
        for r, k in enumerate(rng.choice(len(pairs), 12, replace=False)):
            X[j, 7 + r, list(pairs[k])] = 1.0
    y = X @ rng.normal(size=(d, targets)) + rng.normal(0, 0.1, (b, len(strata), targets))
    w = np.broadcast_to(np.where(strata == 0, 1 / 3, np.where(strata == 1, 1 / 18, 1 / 36)),
                        (b, len(strata)))
    beta, se = stratified_wls_many(X, y, w, strata, population)
    for j in range(b):
        b1, s1 = stratified_reference(X[j], y[j], w[j], strata, population)
        np.testing.assert_allclose(beta[j], b1, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(se[j], s1, rtol=1e-8)
    # every stratum enumerated: no sampling error; one stratum sampled once: unknown
    assert not stratified_wls_many(X, y, w, strata, np.array([1, 6, 12, 20, 15, 6, 1]))[1].any()
    one = np.concatenate([strata[:-1], [3]])
    assert np.isnan(stratified_wls_many(X, y, w, one, population)[1]).all()


def test_shape_groups_cut_blocks_and_skip_none():
    keys = [(10, 2), None, (10, 2), (10, 3), (10, 2)]
    groups = shape_groups(keys, lambda i: 2**16)  # two examples per block of 2**17
    assert sorted(map(sorted, groups)) == [[0, 2], [3], [4]]


def _one_at_a_time(fit_many):
    def fit(self, items, states, masks, values):
        return [fit_many(self, *([a] for a in args))[0]
                for args in zip(items, states, masks, values, strict=True)]
    return fit


@pytest.mark.parametrize("explainer", [
    Lime(n_samples=300), Lime(n_samples="auto", max_samples=600),
    KernelShap(n_samples=200), KernelShap(n_samples="auto", max_samples=600),
    KernelShap(n_samples=12), MExGenCLIME(oversampling=4.0),
    MExGenCLIME(oversampling="auto", max_samples=300), MExGenCLIME(nonzero=2)],
    ids=["lime", "lime-auto", "ks", "ks-auto", "ks-underdetermined", "clime", "clime-auto",
         "clime-omp"])
def test_batched_fits_give_the_explainers_results(explainer, monkeypatch):
    # sizes 2..12 (KernelSHAP enumerates the shortest), several examples per size
    items = [make_item(d, f"e{d}-{r}") for d in (2, 3, 7, 7, 9, 12) for r in range(3)]
    games = {it.example_id: random_game(it.n_units, seed=k) for k, it in enumerate(items)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KernelSHAP's underdetermined warning
        batched, b_info, _ = attribute(explainer, games, items)
        monkeypatch.setattr(type(explainer), "fit_many",
                            _one_at_a_time(type(explainer).fit_many))
        alone, a_info, _ = attribute(explainer, games, items)
    for s1, s2, i1, i2 in zip(batched, alone, b_info, a_info, strict=True):
        np.testing.assert_allclose(s1, s2, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(i1.pop("se"), i2.pop("se"), rtol=RTOL, atol=1e-12)
        assert i1 == i2  # forwards, samples, rounds, rank, ...
    if getattr(explainer, "n_samples", None) == 12:  # designs below full rank
        assert any(i["underdetermined"] for i in b_info)


def _blas_threads() -> list[int]:
    """Threads of numpy's own BLAS (scipy's, loaded by other tests, is not the fits')."""
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info()
            if p["user_api"] == "blas" and "numpy" in p["filepath"]]


def test_fits_run_numpy_blas_on_one_thread_and_restore_it(monkeypatch):
    """The fits come between forward passes: numpy's BLAS must not wake threads that fight
    torch's for the cores (fits.one_blas_thread), and the setting is restored afterwards."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        if not before:
            pytest.skip("numpy's BLAS is not one threadpoolctl can see by its path")
        seen = []
        gram = fits._gram
        monkeypatch.setattr(fits, "_gram", lambda a, b: (seen.append(_blas_threads()),
                                                          gram(a, b))[1])
        rng = np.random.default_rng(0)
        X = rng.integers(0, 2, (2, 40, 4)).astype(float)
        Y = rng.normal(size=(2, 40, 1))
        fits.ridge_many(X, Y, np.ones((2, 40)), 1.0)
        fits.constrained_many(X, Y, np.ones((2, 40)), np.ones((2, 1)), n_fixed=0)
        fits.stratified_wls_many(X, Y, np.ones((2, 40)), np.repeat(np.arange(4), 10),
                                 np.full(4, 100))
        assert before == [2] and seen and all(t == [1] for t in seen)
        assert _blas_threads() == before
