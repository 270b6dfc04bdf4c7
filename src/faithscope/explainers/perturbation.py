"""Perturbation explainers: random baseline, leave-one-out, LIME, KernelSHAP (Shapley sampling
is in :mod:`.shapley_sampling`).

Each kernel writes unit masks for every example, scores all of them in one virtual batch with
:func:`~faithscope.explainers.base.score_masks`, then fits its estimator: LIME's and
KernelSHAP's regressions for all examples of a round at once (:mod:`.fits`, C-LIME's too).

References: Ribeiro et al. 2016 (LIME); Lundberg & Lee 2017 (KernelSHAP); Li et al. 2016
(leave-one-out).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> (exp,) = fs.explain(tiny_classifier(), ["a tender film"], [fs.explainers.Lime(n_samples=64)])
>>> exp.scores.shape, exp.info["forwards"] <= 64
((1, 3), True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .adaptive import Adaptive, fixed_state, sample_in_rounds
from .base import Explainer, Prepared, full_masks, score_masks
from .fits import RANK_RTOL as RANK_RTOL  # re-exported
from .fits import constrained_many, ridge_many, shape_groups

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


def smallest(r: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row of ``r``, which entries are among its ``k`` smallest (``k`` per row, 0..d): a
    uniformly random subset of size ``k`` when ``r`` is uniform noise. One sort, the same sets as
    ranking by a double argsort.

    >>> smallest(np.array([[0.3, 0.1, 0.2], [0.3, 0.1, 0.2]]), np.array([1, 3])).tolist()
    [[False, True, False], [True, True, True]]
    """
    if r.shape[1] == 0:
        return np.zeros(r.shape, dtype=bool)
    kth = np.take_along_axis(np.sort(r, axis=1), np.clip(k - 1, 0, None)[:, None], axis=1)
    return (r <= kth) & (np.asarray(k)[:, None] > 0)


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
class Lime(Adaptive, Explainer):
    """LIME for text: remove a uniform number of random units, weight samples by an
    exponential kernel on cosine distance (x100, width 25), fit a weighted ridge model.

    ``n_samples="auto"`` samples in rounds until the ranking is resolved (:mod:`.adaptive`),
    draws the number of removed units ``k`` in proportion to its kernel weight (importance
    sampling: the same weighted objective, every sample at the same weight, about 1.6 times the
    effective sample size of uniform ``k`` at d = 10-45), and once the planned total reaches ``2**d`` enumerates every mask with its expected weight at
    ``max_samples`` draws instead (standard errors 0). Every explanation carries per-unit sandwich standard errors
    (``Explanation.errors``)."""

    stochastic = True
    budget_field = "n_samples"
    n_samples: int | str = 1000
    kernel_width: float = 25.0
    alpha: float = 1.0
    mask: str = "mask"

    def validate(self) -> None:
        super().validate()
        self.validate_precision(self.name, self.n_samples)

    def draw(self, it: Prepared, st: dict[str, Any], n: int) -> np.ndarray:
        """``n`` masks: the first round starts with the unperturbed input, then each row drops
        ``k`` units chosen uniformly at random, ``k`` uniform in 1..d."""
        d = it.n_units
        planned = sum(st["sizes"][: st["round"] + 1])
        if st.get("auto") and 2**d <= planned:
            return self._enumerate(it, st, sum(st["sizes"]))
        rng = st["rng"]
        first = st["round"] == 0
        m = n - 1 if first else n
        if st.get("auto") and d:  # importance sampling: k drawn in proportion to its weight
            w = self.size_weights(d)
            k = rng.choice(np.arange(1, d + 1), size=m, p=w / w.sum())
        else:
            k = rng.integers(1, d + 1, size=m) if d else np.zeros(m, int)
        rows = ~smallest(rng.random((m, d)), k)  # drop the k units with the smallest draws
        return np.vstack([full_masks(it), rows]) if first else rows

    def size_weights(self, d: int) -> np.ndarray:
        """LIME's kernel weight of a sample with ``k`` = 1..d units removed (it depends on k
        only: the cosine similarity to the input is ``sqrt((d - k) / d)``)."""
        k = np.arange(1, d + 1)
        masks = np.arange(d)[None, :] >= k[:, None]  # k units removed
        return lime_kernel(masks, self.kernel_width)

    @staticmethod
    def _enumerate(it: Prepared, st: dict[str, Any], n: int) -> np.ndarray:
        """Auto mode, once ``2**d`` masks are no more than the planned total: every mask,
        weighted by its expected count among ``n`` draws (``n``: the cap, so the ridge penalty
        weighs as little as at the largest budget auto may use) (the unperturbed input once, then
        ``k`` removed with probability ``1 / (d C(d, k))``): the fit is the sampling design's
        expectation at ``n`` samples, without sampling error."""
        d = it.n_units
        codes = np.arange(2**d)
        Z = ((codes[:, None] >> np.arange(d)) & 1).astype(bool)
        removed = d - Z.sum(1)
        comb = np.array([math.comb(d, int(k)) for k in removed], dtype=np.float64)
        st["design_w"] = np.where(removed > 0, (n - 1) / (max(d, 1) * comb), 1.0)
        st["exact"], st["exact_rows"], st["drew"] = True, len(Z), len(Z)
        return Z

    def sample_weights(self, it: Prepared, st: dict[str, Any], masks: np.ndarray
                       ) -> np.ndarray:
        """The regression weight of each sampled mask: LIME's kernel, or in auto mode (k drawn
        with probability w(k) / W instead of 1 / d) ``w(k) p(k) / q(k) = W / d`` for every
        sample, the unperturbed input keeping its weight 1: the same objective in expectation
        with no samples of negligible weight."""
        if st.get("auto") and it.n_units:
            ws = self.size_weights(it.n_units)
            return np.where(masks.all(axis=1), 1.0, ws.sum() / it.n_units)
        return lime_kernel(masks, self.kernel_width)

    def _design(self, it: Prepared, st: dict[str, Any], masks: np.ndarray, y: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The masks the regression uses, their values and weights: every mask with its
        expected weight once enumerated, else the samples."""
        if st.get("exact"):
            n = st["exact_rows"]
            masks, y = masks[len(masks) - n:], y[len(y) - n:]
            return masks, y, st["design_w"] * lime_kernel(masks, self.kernel_width)
        return masks, y, self.sample_weights(it, st, masks)

    def fit_many(self, items: Sequence[Prepared], states: Sequence[dict[str, Any]],
                 masks: Sequence[np.ndarray], values: Sequence[np.ndarray]
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The weighted ridge fits of a round's examples, those of one shape (masks, units,
        targets) in one batched regression (:func:`.fits.ridge_many`), with HC1 sandwich
        errors; an enumeration has no sampling error (0)."""
        designs = [self._design(*a) for a in zip(items, states, masks, values, strict=True)]
        keys = [(*m.shape, y.shape[1], bool(st.get("exact")))
                for (m, y, _), st in zip(designs, states, strict=True)]
        out: list[Any] = [None] * len(items)
        for idx in shape_groups(keys, lambda i: designs[i][0].size):
            exact = bool(states[idx[0]].get("exact"))
            coef, _, se = ridge_many(
                np.stack([designs[i][0] for i in idx]).astype(np.float64),
                np.stack([designs[i][1] for i in idx]),
                np.stack([designs[i][2] for i in idx]), self.alpha, errors=not exact)
            for j, i in enumerate(idx):
                out[i] = (coef[j], np.zeros_like(coef[j]) if se is None else se[j])
        return out

    def sample(self, it: Prepared) -> np.ndarray:
        """The masks of a fixed budget (one round), as :meth:`attribute` draws them."""
        return self.draw(it, fixed_state(it, "lime", self.n_samples), int(self.n_samples))

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        return sample_in_rounds(
            adapter, items, target_fn, operator=self.mask, salt="lime", budget=self.n_samples,
            cap=self.max_samples, draw=self.draw, fit_many=self.fit_many,
            precision=self)


def shapley_kernel_weight(d: int, s: np.ndarray) -> np.ndarray:
    """Shapley kernel (d-1) / (C(d, s) s (d-s)) for coalition sizes 0 < s < d."""
    comb = np.array([math.comb(d, k) for k in range(d + 1)], dtype=np.float64)[s]
    return (d - 1) / (comb * s * (d - s))


def constrained_wls(Z: np.ndarray, y: np.ndarray, w: np.ndarray, total: np.ndarray
                    ) -> np.ndarray:
    """Weighted least squares for phi with sum(phi) = total, by eliminating the last unit, for
    one example (:func:`.fits.constrained_many` of one; the minimum-norm solution below full
    rank). ``y`` (rows x targets) is f(z) - f(empty); returns targets x units."""
    d = Z.shape[1]
    if d == 1:
        return total.reshape(-1, 1)
    phi, _, _ = constrained_many(np.asarray(Z, dtype=np.float64)[None], y[None],
                                 np.asarray(w, dtype=np.float64)[None], total[None],
                                 n_fixed=len(Z))
    return phi[0]


def constrained_rank(Z: np.ndarray, w: np.ndarray) -> int:
    """Rank of the weighted design that :func:`constrained_wls` solves (``d - 1`` columns once
    the efficiency constraint has eliminated the last unit). Below ``d - 1`` the regression is
    underdetermined: the solution is the minimum-norm one and the last unit takes the remainder.
    A coalition and its complement give opposite rows, so paired samples add one direction per
    pair. Computed from the (d - 1) x (d - 1) normal matrix ``X' W X`` (the same rank for
    positive weights): its eigenvalues below :data:`~.fits.RANK_RTOL` (1e-10) of the largest
    count as zero, i.e. a weighted design with condition number above 1e5 counts as
    rank-deficient."""
    d = Z.shape[1]
    if d <= 1 or not len(Z):
        return 0
    _, _, rank = constrained_many(np.asarray(Z, dtype=np.float64)[None],
                                  np.zeros((1, len(Z), 1)),
                                  np.asarray(w, dtype=np.float64)[None], np.zeros((1, 1)),
                                  n_fixed=len(Z))
    return int(rank[0])


@explainers.register("kernel_shap")
@dataclass(frozen=True, kw_only=True)
class KernelShap(Adaptive, Explainer):
    """KernelSHAP with paired sampling and the efficiency constraint enforced exactly.

    With ``2**d - 2 <= n_samples`` every coalition is enumerated and the result is the exact
    Shapley value of the masked-input game (standard errors 0). ``info["rank"]`` is the rank of
    the regression (at most ``n_units - 1`` free coefficients) and ``info["underdetermined"]``
    whether it is below that: then the samples do not determine the values (paired sampling
    needs at least ``n_samples >= 2 (n_units - 1)``), the result is the minimum-norm solution in
    which the last unit absorbs the remainder, and a ``UserWarning`` says so.
    ``n_samples="auto"`` samples pairs in rounds until the ranking is resolved, and enumerates
    instead once a round would reach ``2**d - 2`` samples (:mod:`.adaptive`); it enumerates the
    coalitions of sizes 1 and d - 1 with their exact kernel mass and samples only the other
    sizes (:meth:`stratum_weights`). Standard errors are sandwich errors over the pairs.
    """

    stochastic = True
    budget_field = "n_samples"
    n_samples: int | str = 1000
    mask: str = "mask"

    def validate(self) -> None:
        super().validate()
        self.validate_precision(self.name, self.n_samples)

    def draw(self, it: Prepared, st: dict[str, Any], n: int) -> np.ndarray:
        """The full and empty masks first, then ``n`` coalitions: paired samples (a
        coalition and its complement on consecutive rows), or every coalition once the
        example's total budget reaches ``2**d - 2``."""
        d = it.n_units
        rows = [full_masks(it, 1, True), full_masks(it, 1, False)] if st["round"] == 0 else []
        planned = sum(st["sizes"][: st["round"] + 1])
        if d <= 1 or 2**d - 2 <= planned:
            st["exact"] = True
            codes = np.arange(1, 2**d - 1) if d > 1 else np.zeros(0, int)
            st["exact_rows"] = st["drew"] = len(codes)
            rows.append(((codes[:, None] >> np.arange(d)) & 1).astype(bool))
            return np.vstack(rows)
        rng = st["rng"]
        sizes = np.arange(1, d)
        if st.get("auto") and d >= 4:  # sizes 1 and d - 1 enumerated, the others sampled
            if st["round"] == 0:
                one = np.eye(d, dtype=bool)
                rows.append(np.stack([one, ~one], axis=1).reshape(-1, d))
                st["n_enum"] = 2 * d
                n -= 2 * d
            sizes = np.arange(2, d - 1)
        p = (d - 1) / (sizes * (d - sizes))
        half = max(1, n // 2)
        s = rng.choice(sizes, size=half, p=p / p.sum())
        Z = smallest(rng.random((half, d)), s)
        st["drew"] = 2 * half + (2 * d if st.get("n_enum") and st["round"] == 0 else 0)
        rows.append(np.stack([Z, ~Z], axis=1).reshape(-1, d))  # paired (antithetic) sampling
        return np.vstack(rows)

    @staticmethod
    def stratum_weights(d: int, n_enum: int, n_sampled: int) -> np.ndarray:
        """Regression weights of the auto design: the ``2d`` coalitions of sizes 1 and d - 1
        carry their exact share of the Shapley kernel's mass, ``m_1 / d`` each (``m_s``: the
        kernel mass of size s, normalised), and the sampled coalitions (sizes 2..d-2, drawn
        from the kernel) share the rest equally: the same objective as sampling every size,
        without sampling error on the heaviest sizes (shap's KernelExplainer enumerates full
        size strata the same way)."""
        sizes = np.arange(1, d)
        m = (d - 1) / (sizes * (d - sizes))
        m = m / m.sum()
        return np.concatenate([np.full(n_enum, m[0] / d),
                               np.full(n_sampled, (1.0 - 2 * m[0]) / max(n_sampled, 1))])

    def coalitions(self, it: Prepared) -> tuple[np.ndarray, np.ndarray]:
        """The coalitions of a fixed budget (without the full and empty masks) and their
        regression weights: paired samples with weight 1, or every coalition with the Shapley
        kernel weight."""
        st = fixed_state(it, "kernel_shap", self.n_samples)
        Z = self.draw(it, st, int(self.n_samples))[2:]
        d = it.n_units
        w = shapley_kernel_weight(d, Z.sum(1)) if st.get("exact") and d > 1 else np.ones(len(Z))
        return Z, w

    def _design(self, it: Prepared, st: dict[str, Any], masks: np.ndarray, v: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The coalitions the regression uses, ``f(z) - f(empty)``, their weights and how many
        were enumerated rather than drawn: every coalition with its Shapley kernel weight, or
        the paired samples (auto: after sizes 1 and d - 1 with their kernel mass)."""
        d = it.n_units
        if st.get("exact"):
            n = st["exact_rows"]
            Z = masks[len(masks) - n:]
            return Z, v[len(v) - n:] - v[1], shapley_kernel_weight(d, Z.sum(1)), n
        Z, k = masks[2:], st.get("n_enum", 0)
        return Z, v[2:] - v[1], self.stratum_weights(d, k, len(Z) - k) if k else \
            np.ones(len(Z)), k

    def fit_many(self, items: Sequence[Prepared], states: Sequence[dict[str, Any]],
                 masks: Sequence[np.ndarray], values: Sequence[np.ndarray]
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The constrained regressions of a round's examples, those of one shape in one batched
        fit (:func:`.fits.constrained_many`), with sandwich errors over the pairs (0 for an
        enumeration); ``info`` records each design's rank."""
        out: list[Any] = [None] * len(items)
        designs: list[Any] = [None] * len(items)
        for i, (it, st, v) in enumerate(zip(items, states, values, strict=True)):
            d, total = it.n_units, v[0] - v[1]
            if d <= 1:  # one unit takes the whole difference
                st["info"] = {"rank": 0, "underdetermined": False}
                out[i] = ((total[:, None] if d else np.zeros((len(total), 0))),
                          np.zeros((len(total), d)))
            else:
                designs[i] = self._design(it, st, masks[i], v)
        keys = [None if des is None else (*des[0].shape, des[1].shape[1], des[3],
                                          bool(st.get("exact")))
                for des, st in zip(designs, states, strict=True)]
        for idx in shape_groups(keys, lambda i: designs[i][0].size):
            d, exact = items[idx[0]].n_units, bool(states[idx[0]].get("exact"))
            phi, se, rank = constrained_many(
                np.stack([designs[i][0] for i in idx]).astype(np.float64),
                np.stack([designs[i][1] for i in idx]), np.stack([designs[i][2] for i in idx]),
                np.stack([values[i][0] - values[i][1] for i in idx]),
                n_fixed=designs[idx[0]][3])
            for j, i in enumerate(idx):
                states[i]["info"] = {"rank": int(rank[j]),
                                    "underdetermined": bool(rank[j] < d - 1)}
                out[i] = (phi[j], np.zeros_like(phi[j]) if exact else se[j])
        return out

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        out, info = sample_in_rounds(
            adapter, items, target_fn, operator=self.mask, salt="kernel_shap",
            budget=self.n_samples, cap=self.max_samples, draw=self.draw,
            fit_many=self.fit_many, precision=self)
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
            f"kernel_shap: n_samples={i['n_samples']} is too few for n_units={d} "
            f"(example {it.example_id!r}; {len(bad)} of {len(items)} examples affected): the "
            f"regression has rank {i['rank']} < n_units - 1 = {d - 1}, so the attributions are "
            f"a minimum-norm solution in which the last unit absorbs the remainder. Use a larger "
            f"budget: n_samples >= {2 * (d - 1)} at the very least (paired sampling), several "
            f"times that for a stable estimate.", UserWarning, stacklevel=2)
