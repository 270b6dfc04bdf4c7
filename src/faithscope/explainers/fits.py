"""The sampling explainers' regressions, fitted for many examples at once.

LIME's weighted ridge regression, KernelSHAP's efficiency-constrained regression and C-LIME's
stratified weighted least squares are small
(``d`` units, a few hundred to a few thousand rows) and were fitted one example at a time; with
a nearly free model (a GPU) those fits were about a third of LIME's and half of KernelSHAP's
own (non-model) time. Here examples of the same shape (rows, units, targets) are stacked and
fitted with batched matrix products and batched LAPACK calls: the same estimators and standard
errors. These are the only implementations: one example is a stack of one
(:func:`~faithscope.explainers.perturbation.constrained_wls`).
``tests/test_fits.py`` checks them against plain one-example formulas written there.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.integers(0, 2, (2, 50, 3)).astype(float)
>>> Y = X @ np.array([1.0, -2.0, 0.5])[:, None] + 0.25
>>> coef, intercept, se = ridge_many(X, Y, np.ones((2, 50)), 1e-9)
>>> np.round(coef[0, 0], 6).tolist(), np.round(intercept[:, 0], 6).tolist()
([1.0, -2.0, 0.5], [0.25, 0.25])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np

# elements (rows x units, all examples) of one stacked block: small enough that a block's
# arrays stay in cache (measured: 5-10 examples of 1000 x 20 fit about 1.8x faster than one
# at a time, 50 at once no faster), and it bounds the memory of a fit
BLOCK_ELEMENTS = 1 << 17
K = TypeVar("K", bound=Hashable)
RANK_RTOL = 1e-10  # eigenvalues of a normal matrix below this share of the largest are 0
F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, made once (its scan takes ~0.3 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread(fn: F) -> F:
    """``fn`` run with numpy's BLAS on one thread (threadpoolctl; the previous setting is
    restored on return, about 13 microseconds in all).

    The fits are small products (a few hundred to a few thousand rows by tens of units) that
    come between the model's forward passes. On more than one thread, numpy's OpenBLAS wakes
    its threads for each product while torch's OpenMP threads still spin after the forward
    pass, and the two fight for the cores: measured on this 2-core CPU, a 1000 x 21 Gram
    matrix took 3.7 ms instead of 0.05 ms, and one LIME-1000 call per sentence ran its
    non-model work at 108k rows/s instead of 253k (KernelSHAP 111k instead of 215k); stacked
    fits of many examples are no slower on one thread."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        with _blas_controller().limit(limits=1, user_api="blas"):
            return fn(*args, **kw)
    return wrapper  # type: ignore[return-value]


def shape_groups(keys: Sequence[K | None], width: Callable[[int], int]
                 ) -> list[list[int]]:
    """Indices grouped by equal key (``None``: not batched), each group cut into blocks of at
    most :data:`BLOCK_ELEMENTS` elements (``width(i)``: the elements of example ``i``)."""
    groups: dict[K, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(i)
    out = []
    for idx in groups.values():
        per = max(1, BLOCK_ELEMENTS // max(width(idx[0]), 1))
        out += [idx[a : a + per] for a in range(0, len(idx), per)]
    return out


def _gram(Xw: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.matmul(Xw.transpose(0, 2, 1), X)


def _rank(A: np.ndarray, rtol: float) -> np.ndarray:
    """Rank of each symmetric positive semi-definite matrix of a stack: its eigenvalues above
    ``rtol`` of the largest (0 for a zero matrix)."""
    ev = np.linalg.eigvalsh(A)
    top = ev.max(axis=1, keepdims=True)
    return np.where(top[:, 0] > 0, (ev > rtol * np.clip(top, 0, None)).sum(axis=1), 0)


@one_blas_thread
def ridge_many(X: np.ndarray, Y: np.ndarray, w: np.ndarray, alpha: float, *,
               errors: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Weighted ridge with an unpenalised intercept for a stack of examples (``X``: examples x
    rows x units, ``Y``: examples x rows x targets, ``w``: examples x rows), with HC1 sandwich
    standard errors: ``coef`` (examples x targets x units), ``intercept`` (examples x targets),
    ``se`` (examples x targets x units). Per example: ``coef = A^-1 Xc' W Yc`` with ``A = Xc' W
    Xc + alpha I`` on the weighted-centred design, and ``A^-1 (sum_i w_i^2 r_i^2 x_i x_i')
    A^-1 n / (n - d - 1)`` the coefficients' covariance (White 1980); ``errors=False``: no
    errors (None)."""
    b, n, d = X.shape
    if d == 0:
        return np.zeros((b, Y.shape[2], 0)), np.zeros((b, Y.shape[2])), np.zeros(
            (b, Y.shape[2], 0))
    sw = w / w.sum(axis=1, keepdims=True)
    xm = np.matmul(sw[:, None, :], X)[:, 0]
    ym = np.matmul(sw[:, None, :], Y)[:, 0]
    Xc = X - xm[:, None, :]
    Xw = Xc * w[:, :, None]
    A = _gram(Xw, Xc) + alpha * np.eye(d)
    coef = np.linalg.solve(A, _gram(Xw, Y - ym[:, None, :]))  # examples x units x targets
    intercept = ym - np.matmul(xm[:, None, :], coef)[:, 0]
    if not errors:
        return coef.transpose(0, 2, 1), intercept, None
    Ainv = np.linalg.pinv(A)
    R = Y - intercept[:, None, :] - np.matmul(X, coef)
    scale = n / max(n - d - 1, 1)
    se = np.empty((b, Y.shape[2], d))
    for t in range(Y.shape[2]):
        G = Xc * (w * R[:, :, t])[:, :, None]
        C = Ainv @ _gram(G, G) @ Ainv * scale
        se[:, t] = np.sqrt(np.clip(np.diagonal(C, axis1=1, axis2=2), 0, None))
    return coef.transpose(0, 2, 1), intercept, se


@one_blas_thread
def constrained_many(Z: np.ndarray, y: np.ndarray, w: np.ndarray, total: np.ndarray, *,
                     n_fixed: int, rank_rtol: float = RANK_RTOL
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KernelSHAP's regression for a stack of examples of ``d >= 2`` units (``Z``: examples x
    rows x units, 0/1; ``y``: examples x rows x targets, ``f(z) - f(empty)``; ``w``: examples x
    rows; ``total``: examples x targets, ``f(all) - f(empty)``; the first ``n_fixed`` rows
    enumerated, then (coalition, complement) pairs): least squares under ``sum(phi) = total``
    by eliminating the last unit, ``head = (X' W X)^-1 X' W (y - z_d total)`` with ``X =
    Z[:, :-1] - Z[:, -1:]``, and sandwich errors over the pairs, ``A^-1 (sum_p g_p g_p') A^-1
    P / (P - (d - 1))`` for ``P`` pairs with ``g_p`` the pair's summed score terms (HC1 over
    the independent draws; Covert & Lee 2021). The last unit's variance is ``1' C 1``.

    Returns ``phi`` and ``se`` (examples x targets x units) and each example's rank
    (eigenvalues of ``X' W X`` above ``rank_rtol`` of the largest). Below full rank ``d - 1``
    the samples do not determine the values: the minimum-norm least-squares solution (the last
    unit takes the remainder). Errors are NaN (unknown) with no more pairs than free
    coefficients; an enumerated design (``n_fixed`` = rows) has no sampling error (its caller
    sets 0)."""
    b, n, d = Z.shape
    T = y.shape[2]
    X = Z[:, :, :-1] - Z[:, :, -1:]
    Xw = X * w[:, :, None]
    A = _gram(Xw, X)
    rank = _rank(A, rank_rtol)
    full = rank == d - 1
    Yr = y - Z[:, :, -1:] * total[:, None, :]
    B = _gram(Xw, Yr)
    ridge = 1e-12 * np.eye(d - 1)
    head = np.empty((b, d - 1, T))
    if full.any():
        head[full] = np.linalg.solve(A[full] + ridge, B[full])
    for j in np.flatnonzero(~full):  # not determined: the minimum-norm solution
        head[j] = np.linalg.lstsq(A[j] + ridge, B[j], rcond=None)[0]
    phi = np.concatenate([head, total[:, None, :] - head.sum(axis=1, keepdims=True)], axis=1)
    phi = phi.transpose(0, 2, 1)
    P = (n - n_fixed) // 2
    se = np.full((b, T, d), np.nan)
    if d - 1 < P:
        Ainv = np.linalg.pinv(A)
        for t in range(T):
            r = (Yr[:, :, t] - np.matmul(X, phi[:, t, :-1, None])[:, :, 0]) * w
            g = (X * r[:, :, None])[:, n_fixed:].reshape(b, P, 2, d - 1).sum(axis=2)
            C = Ainv @ _gram(g, g) @ Ainv * (P / (P - (d - 1)))
            se[:, t, :-1] = np.sqrt(np.clip(np.diagonal(C, axis1=1, axis2=2), 0, None))
            se[:, t, -1] = np.sqrt(np.clip(C.sum(axis=(1, 2)), 0, None))
    return phi, se, rank


@one_blas_thread
def stratified_wls_many(X: np.ndarray, y: np.ndarray, w: np.ndarray, strata: np.ndarray,
                        population: np.ndarray, *, rank_rtol: float = RANK_RTOL
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares with an intercept for a stack of examples that share one
    stratification (C-LIME: ``X`` examples x rows x units of "unit removed" indicators, ``y``
    examples x rows x targets, ``w`` examples x rows; row ``i`` is one of ``n_h`` subsets drawn
    without replacement from the ``population[h]`` subsets of its stratum ``strata[i]``, the
    removal size). Returns ``beta`` (examples x (1 + units) x targets; the minimum-norm
    least-squares solution below full rank) and standard errors (examples x targets x units).

    Errors: the sandwich ``A^-1 M A^-1`` with ``A = X1' W X1`` and the stratified meat ``M =
    sum_h (1 - n_h / N_h) n_h / (n_h - 1) sum_(i in h) (g_i - g_h)(g_i - g_h)'`` of the score
    terms ``g_i = w_i r_i x_i`` (Cochran 1977, ch. 5; Binder 1983), times the HC1 factor ``s /
    (s - p)`` for ``s`` sampled rows and ``p`` coefficients (without it the errors are 20-35 %
    too small at 3-4 samples per unit): an enumerated stratum (``n_h = N_h``) adds no variance,
    so the error is 0 when every stratum is; a stratum sampled once, or no more sampled rows
    than coefficients, has no variance estimate (NaN)."""
    b, n, d = X.shape
    T = y.shape[2]
    X1 = np.concatenate([np.ones((b, n, 1)), X], axis=2)
    Xw = X1 * w[:, :, None]
    A = _gram(Xw, X1)
    B = _gram(Xw, y)
    full = _rank(A, rank_rtol) == d + 1
    beta = np.empty((b, d + 1, T))
    if full.any():
        beta[full] = np.linalg.solve(A[full], B[full])
    sw = np.sqrt(w)
    for j in np.flatnonzero(~full):  # not determined: the minimum-norm solution
        beta[j] = np.linalg.lstsq(X1[j] * sw[j, :, None], y[j] * sw[j, :, None],
                                  rcond=None)[0]
    se = np.zeros((b, T, d))
    R = (y - np.matmul(X1, beta)) * w[:, :, None]
    M = np.zeros((b, T, d + 1, d + 1))
    sampled = 0
    for h in np.unique(strata):
        rows = strata == h
        n_h, N_h = int(rows.sum()), float(population[h])
        if n_h >= N_h:
            continue  # enumerated
        if n_h < 2:
            return beta, np.full((b, T, d), np.nan)
        sampled += n_h
        for t in range(T):
            G = X1[:, rows] * R[:, rows, t : t + 1]
            G = G - G.mean(axis=1, keepdims=True)
            M[:, t] += (1 - n_h / N_h) * n_h / (n_h - 1) * _gram(G, G)
    if sampled == 0:
        return beta, se
    if sampled <= d + 1:
        return beta, np.full((b, T, d), np.nan)
    Ainv = np.linalg.pinv(A)
    for t in range(T):
        C = Ainv @ M[:, t] @ Ainv * (sampled / (sampled - d - 1))
        se[:, t] = np.sqrt(np.clip(np.diagonal(C, axis1=1, axis2=2), 0, None))[:, 1:]
    return beta, se
