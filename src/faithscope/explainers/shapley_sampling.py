"""Shapley values by permutation sampling, with antithetic (reversed) permutations.

References: Strumbelj & Kononenko 2014, "Explaining prediction models and individual
predictions with feature contributions"; Castro et al. 2009, "Polynomial calculation of the
Shapley value based on sampling"; Mitchell et al. 2022, "Sampling permutations for Shapley
value estimation" (antithetic permutations).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> (exp,) = fs.explain(tiny_classifier(), ["a tender film"],
...                     [fs.explainers.ShapleySampling(n_permutations=6)])
>>> exp.info["exact"], exp.scores.shape          # 3! = 6 permutations: every one, exact
(True, (1, 3))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .adaptive import Adaptive, fixed_state, sample_in_rounds
from .base import Explainer, Prepared

Result = tuple[list[np.ndarray], list[dict[str, Any]]]


@explainers.register("shapley_sampling")
@dataclass(frozen=True, kw_only=True)
class ShapleySampling(Adaptive, Explainer):
    """Shapley values by permutation sampling with antithetic (reversed) permutations.

    When ``d! <= n_permutations`` all permutations are enumerated: the values are exact.
    Standard errors: the standard deviation of the antithetic pairs' mean contributions over
    the square root of the number of pairs. ``n_permutations="auto"`` adds pairs in rounds
    until the ranking is resolved (``max_samples`` caps the permutations; :mod:`.adaptive`).
    """

    stochastic = True
    budget_field = "n_permutations"
    n_permutations: int | str = 50
    max_samples: int = 200
    mask: str = "mask"

    def validate(self) -> None:
        super().validate()
        self.validate_precision(self.name, self.n_permutations)

    def permutations(self, it: Prepared, st: dict[str, Any] | None = None,
                     n: int | None = None) -> np.ndarray:
        """``n`` permutations (pairs of a permutation and its reverse on consecutive rows), or
        all ``d!`` once the example's total budget reaches it; without ``st``, those of a fixed
        budget."""
        if st is None:
            st = fixed_state(it, "shapley_sampling", self.n_permutations)
            n = int(self.n_permutations)
        assert n is not None
        d = it.n_units
        if math.factorial(d) <= sum(st["sizes"][: st["round"] + 1]):
            st["exact"] = True
            st["drew"] = math.factorial(d)
            return np.array(list(itertools.permutations(range(d))), dtype=np.int64).reshape(-1, d)
        half = max(1, n // 2)
        perms = np.argsort(st["rng"].random((half, d)), axis=1)
        st["drew"] = 2 * half
        return np.stack([perms, perms[:, ::-1]], axis=1).reshape(-1, d)

    def draw(self, it: Prepared, st: dict[str, Any], n: int) -> np.ndarray:
        P = self.permutations(it, st, n)
        if st.get("exact"):
            st["perms"] = [P]
        else:
            st.setdefault("perms", []).append(P)
        pos = np.argsort(P, axis=1)  # position of each unit in its permutation
        steps = np.arange(it.n_units + 1)
        # row (p, j): units placed before step j are present
        return (pos[:, None, :] < steps[None, :, None]).reshape(-1, it.n_units)

    def fit(self, it: Prepared, st: dict[str, Any], masks: np.ndarray, v: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        d = it.n_units
        P = np.vstack(st["perms"])
        v = v[len(v) - len(P) * (d + 1):].reshape(len(P), d + 1, -1)
        gains = v[:, 1:] - v[:, :-1]  # gain of the unit added at each step
        contrib = np.empty_like(gains)  # perms x units x targets
        np.put_along_axis(contrib, P[:, :, None], gains, axis=1)
        phi = contrib.mean(axis=0).T
        if st.get("exact") or d == 0:
            return phi, np.zeros_like(phi)
        pairs = contrib.reshape(len(P) // 2, 2, d, -1).mean(axis=1)
        if len(pairs) < 2:
            return phi, np.full_like(phi, np.nan)
        return phi, (pairs.std(axis=0, ddof=1) / np.sqrt(len(pairs))).T

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        return sample_in_rounds(
            adapter, items, target_fn, operator=self.mask, salt="shapley_sampling",
            budget=self.n_permutations, first=lambda it: 10, cap=self.max_samples,
            draw=self.draw, fit=self.fit, precision=self)
