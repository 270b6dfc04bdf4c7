"""Perturbation explainers: random baseline, leave-one-out, LIME, KernelSHAP, Shapley sampling.

Each kernel writes unit masks for every example, scores all of them in one virtual batch with
:func:`~faithscope.explainers.base.score_masks`, then fits its per-example estimator.

References: Ribeiro et al. 2016 (LIME); Lundberg & Lee 2017 (KernelSHAP); Strumbelj &
Kononenko 2014 and Castro et al. 2009 (permutation sampling); Li et al. 2016 (leave-one-out).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> (exp,) = fs.explain(tiny_classifier(), ["a tender film"], [fs.explainers.Lime(n_samples=64)])
>>> exp.scores.shape, exp.info["forwards"] <= 64
((1, 3), True)
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .base import Explainer, Prepared, full_masks, score_masks

Result = tuple[list[np.ndarray], list[dict[str, Any]]]


@explainers.register("random")
@dataclass(frozen=True, kw_only=True)
class RandomExplainer(Explainer):
    """Standard-normal scores: the baseline every metric is compared against."""

    stochastic = True

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        scores = [it.rng("random").standard_normal((len(it.targets), it.n_units))
                  for it in items]
        return scores, [{"forwards": 0} for _ in items]


@explainers.register("leave_one_out")
@dataclass(frozen=True, kw_only=True)
class LeaveOneOut(Explainer):
    """score(u) = f(x) - f(x without u)."""

    mask: str = "mask"

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        masks = [np.vstack([full_masks(it), ~np.eye(it.n_units, dtype=bool)]) for it in items]
        vals = score_masks(adapter, items, masks, target_fn, operator=self.mask)
        return [(v[0] - v[1:]).T for v in vals], [{"forwards": len(m)} for m in masks]


def weighted_ridge(X: np.ndarray, Y: np.ndarray, w: np.ndarray, alpha: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ridge regression with an unpenalised intercept; Y may have several columns."""
    sw = w / w.sum()
    xm = sw @ X
    ym = sw @ Y
    Xc, Yc = X - xm, Y - ym
    A = (Xc * w[:, None]).T @ Xc + alpha * np.eye(X.shape[1])
    B = (Xc * w[:, None]).T @ Yc
    coef = np.linalg.solve(A, B) if X.shape[1] else np.zeros((0, Y.shape[1]))
    return coef.T, ym - xm @ coef


def lime_kernel(masks: np.ndarray, kernel_width: float) -> np.ndarray:
    """LIME's sample weights for text: ``sqrt(exp(-dist**2 / kernel_width**2))`` with ``dist``
    100 times the cosine distance between each mask and the unperturbed input (all units
    present), as ``LimeTextExplainer`` computes them (``pairwise_distances(..., metric="cosine")
    * 100``, kernel width 25). The empty mask is at cosine distance 1."""
    X = np.asarray(masks, dtype=np.float64).reshape(len(masks), -1)
    norms = np.sqrt(X.sum(1)) * math.sqrt(X.shape[1])
    cos = np.divide(X.sum(1), norms, out=np.zeros(len(X)), where=norms > 0)
    dist = (1.0 - cos) * 100.0
    return np.sqrt(np.exp(-(dist**2) / kernel_width**2))


@explainers.register("lime")
@dataclass(frozen=True, kw_only=True)
class Lime(Explainer):
    """LIME for text: remove a uniform number of random units, weight samples by an
    exponential kernel on cosine distance (x100, width 25), fit a weighted ridge model."""

    stochastic = True
    n_samples: int = 1000
    kernel_width: float = 25.0
    alpha: float = 1.0
    mask: str = "mask"

    def sample(self, it: Prepared) -> np.ndarray:
        rng = it.rng("lime")
        n, d = self.n_samples, it.n_units
        masks = full_masks(it, n)
        k = rng.integers(1, d + 1, size=n - 1) if d else np.zeros(n - 1, int)
        order = np.argsort(rng.random((n - 1, d)), axis=1)
        ranks = np.argsort(order, axis=1)
        masks[1:] = ranks >= k[:, None]  # drop k units chosen uniformly at random
        return masks

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        masks = [self.sample(it) for it in items]
        vals = score_masks(adapter, items, masks, target_fn, operator=self.mask)
        out = []
        for m, y in zip(masks, vals, strict=True):
            X = m.astype(np.float64)
            coef, _ = weighted_ridge(X, y, lime_kernel(m, self.kernel_width), self.alpha)
            out.append(coef)
        return out, [{"forwards": int(len(np.unique(m, axis=0)))} for m in masks]


def shapley_kernel_weight(d: int, s: np.ndarray) -> np.ndarray:
    """Shapley kernel (d-1) / (C(d, s) s (d-s)) for coalition sizes 0 < s < d."""
    comb = np.array([math.comb(d, int(k)) for k in s], dtype=np.float64)
    return (d - 1) / (comb * s * (d - s))


def constrained_wls(Z: np.ndarray, y: np.ndarray, w: np.ndarray, total: np.ndarray
                    ) -> np.ndarray:
    """Weighted least squares for phi with sum(phi) = total, by eliminating the last unit.

    ``y`` (rows x targets) is f(z) - f(empty); returns targets x units.
    """
    d = Z.shape[1]
    if d == 1:
        return total.reshape(-1, 1)
    X = Z[:, :-1] - Z[:, -1:]
    Y = y - Z[:, -1:] * total[None, :]
    A = (X * w[:, None]).T @ X
    B = (X * w[:, None]).T @ Y
    head = np.linalg.lstsq(A + 1e-12 * np.eye(d - 1), B, rcond=None)[0]
    last = total[None, :] - head.sum(axis=0, keepdims=True)
    return np.vstack([head, last]).T


def constrained_rank(Z: np.ndarray, w: np.ndarray) -> int:
    """Rank of the weighted design that :func:`constrained_wls` solves (``d - 1`` columns once
    the efficiency constraint has eliminated the last unit). Below ``d - 1`` the regression is
    underdetermined: the solution is the minimum-norm one and the last unit takes the remainder.
    A coalition and its complement give opposite rows, so paired samples add one direction per
    pair."""
    d = Z.shape[1]
    if d <= 1 or not len(Z):
        return 0
    Zf = np.asarray(Z, dtype=np.float64)
    X = (Zf[:, :-1] - Zf[:, -1:]) * np.sqrt(w)[:, None]
    return int(np.linalg.matrix_rank(X))


@explainers.register("kernel_shap")
@dataclass(frozen=True, kw_only=True)
class KernelShap(Explainer):
    """KernelSHAP with paired sampling and the efficiency constraint enforced exactly.

    With ``2**d - 2 <= n_samples`` every coalition is enumerated and the result is the exact
    Shapley value of the masked-input game. ``info["rank"]`` is the rank of the regression (at
    most ``n_units - 1`` free coefficients) and ``info["underdetermined"]`` whether it is below
    that: then the samples do not determine the values (paired sampling needs at least
    ``n_samples >= 2 (n_units - 1)``), the result is the minimum-norm solution in which the last
    unit absorbs the remainder, and a ``UserWarning`` says so.
    """

    stochastic = True
    n_samples: int = 1000
    mask: str = "mask"

    def coalitions(self, it: Prepared) -> tuple[np.ndarray, np.ndarray]:
        d = it.n_units
        if d <= 1:
            return np.zeros((0, d), bool), np.zeros(0)
        if 2**d - 2 <= self.n_samples:
            codes = np.arange(1, 2**d - 1)
            Z = ((codes[:, None] >> np.arange(d)) & 1).astype(bool)
            return Z, shapley_kernel_weight(d, Z.sum(1))
        rng = it.rng("kernel_shap")
        sizes = np.arange(1, d)
        p = (d - 1) / (sizes * (d - sizes))
        half = max(1, self.n_samples // 2)
        s = rng.choice(sizes, size=half, p=p / p.sum())
        ranks = np.argsort(np.argsort(rng.random((half, d)), axis=1), axis=1)
        Z = ranks < s[:, None]
        Z = np.vstack([Z, ~Z])  # paired (antithetic) sampling
        uniq, counts = np.unique(Z, axis=0, return_counts=True)
        return uniq, counts.astype(np.float64)

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        plans = [self.coalitions(it) for it in items]
        masks = [np.vstack([full_masks(it, 1, True), full_masks(it, 1, False), Z])
                 for it, (Z, _) in zip(items, plans, strict=True)]
        vals = score_masks(adapter, items, masks, target_fn, operator=self.mask)
        out, info = [], []
        for it, (Z, w), v, m in zip(items, plans, vals, masks, strict=True):
            total = v[0] - v[1]
            if it.n_units == 0:
                out.append(np.zeros((len(it.targets), 0)))
            elif it.n_units == 1:
                out.append(total[:, None])
            else:
                out.append(constrained_wls(Z.astype(np.float64), v[2:] - v[1], w, total))
            rank = constrained_rank(Z, w)
            info.append({"forwards": len(m), "rank": rank,
                         "underdetermined": rank < max(it.n_units - 1, 0)})
        self._warn_underdetermined(items, info)
        return out, info

    def _warn_underdetermined(self, items: Sequence[Prepared], info: list[dict[str, Any]]
                              ) -> None:
        bad = [(it, i) for it, i in zip(items, info, strict=True) if i["underdetermined"]]
        if not bad:
            return
        it, i = max(bad, key=lambda b: b[0].n_units)
        d = it.n_units
        warnings.warn(
            f"kernel_shap: n_samples={self.n_samples} is too few for n_units={d} "
            f"(example {it.example_id!r}; {len(bad)} of {len(items)} examples affected): the "
            f"regression has rank {i['rank']} < n_units - 1 = {d - 1}, so the attributions are "
            f"a minimum-norm solution in which the last unit absorbs the remainder. Use a larger "
            f"budget: n_samples >= {2 * (d - 1)} at the very least (paired sampling), several "
            f"times that for a stable estimate.", UserWarning, stacklevel=2)


@explainers.register("shapley_sampling")
@dataclass(frozen=True, kw_only=True)
class ShapleySampling(Explainer):
    """Shapley values by permutation sampling with antithetic (reversed) permutations.

    When ``d! <= n_permutations`` all permutations are enumerated: the values are exact.
    """

    stochastic = True
    n_permutations: int = 50
    mask: str = "mask"

    def permutations(self, it: Prepared) -> np.ndarray:
        d = it.n_units
        if math.factorial(d) <= self.n_permutations:
            return np.array(list(itertools.permutations(range(d))), dtype=np.int64).reshape(-1, d)
        rng = it.rng("shapley_sampling")
        half = max(1, self.n_permutations // 2)
        perms = np.argsort(rng.random((half, d)), axis=1)
        return np.vstack([perms, perms[:, ::-1]])

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        perms = [self.permutations(it) for it in items]
        masks = []
        for it, P in zip(items, perms, strict=True):
            d = it.n_units
            pos = np.argsort(P, axis=1)  # position of each unit in its permutation
            steps = np.arange(d + 1)
            # row (p, j): units placed before step j are present
            masks.append((pos[:, None, :] < steps[None, :, None]).reshape(-1, d))
        vals = score_masks(adapter, items, masks, target_fn, operator=self.mask)
        out = []
        for it, P, v in zip(items, perms, vals, strict=True):
            d = it.n_units
            v = v.reshape(len(P), d + 1, -1)
            gains = v[:, 1:] - v[:, :-1]  # gain of the unit added at each step
            phi = np.zeros((v.shape[2], d))
            for t in range(v.shape[2]):
                np.add.at(phi[t], P.reshape(-1), gains[:, :, t].reshape(-1))
            out.append(phi / max(len(P), 1))
        return out, [{"forwards": int(len(np.unique(m, axis=0)))} for m in masks]
