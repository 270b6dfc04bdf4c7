"""MExGen's attribution kernels, each with a number of model queries linear in the units.

They write unit masks like every perturbation explainer, so they run on classifiers and, through
:func:`faithscope.explain` given a generative model, on generated text at any mix of levels.

* ``mexgen_loo``: leave-one-out (one query per unit).
* ``mexgen_clime``: C-LIME: remove subsets of at most ``max_units_replace`` units, about
  ``oversampling x n_units`` of them with equal total weight per subset size (all subsets of a
  size when they fit the budget), fit a weighted linear model on "unit removed" indicators
  (dense least squares, or ``nonzero`` units chosen by orthogonal matching pursuit then refit
  without penalty), score = minus the coefficient (a unit whose removal lowers the output
  scores positive).
* ``mexgen_lshap``: L-SHAP: Shapley values of each unit in the game restricted to its
  ``num_neighbors`` neighbours on each side and to coalitions of at most ``max_units_replace``
  removed units; ``phi_i = sum_S [f(x - S) - f(x - S - i)] / ((K' + 1) C(m, |S|))`` over subsets
  S of its ``m`` neighbours with ``|S| <= K' = min(K, m)``.

Removed units are realised by the explainer's ``mask`` operator. On generated text
(:func:`faithscope.explain` on a generative model) and on prompted decoders
(:class:`~faithscope.models.prompted.PromptClassifier`) the default deletes the unit's text, as
MExGen does; ``info["operator"]`` records the operator actually applied (e.g. ``delete``, or
``unk`` where a classifier's tokenizer has no mask token).

Reference: Monteiro Paes, Wei et al. 2025, "Multi-Level Explanations for Generative Language
Models" (ACL), Sections 3.2-3.3.

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> (e,) = fs.explain(tiny_classifier(), "a witty and moving film", "mexgen_lshap")
>>> e.scores.shape, e.info["forwards"] <= 1 + 5 * 22
((1, 5), True)
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import InputError, ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .adaptive import AUTO, Adaptive, sample_in_rounds
from .base import Explainer, Prepared, score_masks
from .fits import shape_groups, stratified_wls_many
from .perturbation import LeaveOneOut, Result


@explainers.register("mexgen_loo")
@dataclass(frozen=True, kw_only=True)
class MExGenLOO(LeaveOneOut):
    """MExGen's leave-one-out: score(u) = f(x) - f(x without u)."""


    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        return super().attribute(adapter, items, target_fn)


def clime_subsets(n: int, k_max: int, budget: int, rng: np.random.Generator,
                  taken: dict[int, set[int]] | None = None
                  ) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Subsets of units to remove (the empty one first) and their weights: each size 0..k_max
    gets the same total weight; a size with more subsets than its share of the budget is
    subsampled uniformly. With ``taken`` (size -> indices among that size's combinations
    already drawn, updated in place) only new subsets are drawn and the empty one is not
    repeated: the later rounds of ``oversampling="auto"``."""
    sizes = list(range(1, min(k_max, n) + 1))
    per_size = 1.0 / (len(sizes) + 1)
    first = taken is None or not taken.get(0)
    subsets: list[tuple[int, ...]] = [()] if first else []
    weights = [per_size] if first else []
    if taken is not None:
        taken.setdefault(0, set()).add(0)
    open_sizes = [k for k in sizes
                  if taken is None or len(taken.get(k, ())) < math.comb(n, k)]
    remaining = budget
    for j, k in enumerate(open_sizes):
        share = max(1, round(remaining / (len(open_sizes) - j)))
        combos = _combinations(n, k)
        free = (np.arange(len(combos)) if taken is None or not taken.get(k)
                else np.setdiff1d(np.arange(len(combos)), list(taken[k])))
        pick = (np.sort(rng.choice(len(free), size=share, replace=False))
                if len(free) > share else np.arange(len(free)))
        chosen = free[pick]
        if taken is not None:
            taken.setdefault(k, set()).update(chosen.tolist())
        subsets += [combos[i] for i in chosen]
        weights += [per_size / len(chosen)] * len(chosen)
        remaining -= len(chosen)
        if remaining <= 0:
            break
    return subsets, np.asarray(weights, dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _combinations(n: int, k: int) -> tuple[tuple[int, ...], ...]:
    return tuple(itertools.combinations(range(n), k))


def clime_weights(removed: np.ndarray, k_max: int) -> np.ndarray:
    """C-LIME's sample weights from the removed-unit indicators of distinct subsets: the same
    total weight for every size 0..k_max, split equally among that size's subsets."""
    n = removed.shape[1]
    size = removed.sum(axis=1)
    count = np.bincount(size, minlength=min(k_max, n) + 1)
    return (1.0 / len(count)) / count[size]


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares with intercept; returns the coefficients (columns of X x targets)."""
    A = np.hstack([np.ones((len(X), 1)), X]) * np.sqrt(w)[:, None]
    return np.linalg.lstsq(A, y * np.sqrt(w)[:, None], rcond=None)[0][1:]


def _omp(X: np.ndarray, y: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Greedy (orthogonal matching pursuit) choice of ``k`` columns, then an unpenalised refit."""
    sw = np.sqrt(w / w.sum())[:, None]
    Xc = (X - (w / w.sum()) @ X) * sw
    yc = (y - (w / w.sum()) @ y) * sw
    chosen: list[int] = []
    resid = yc.copy()
    norms = np.linalg.norm(Xc, axis=0)
    for _ in range(min(k, X.shape[1])):
        corr = np.abs(Xc.T @ resid).sum(1) / np.where(norms > 0, norms, np.inf)
        corr[chosen] = -1.0
        j = int(np.argmax(corr))
        if corr[j] <= 1e-12:
            break
        chosen.append(j)
        beta = np.linalg.lstsq(Xc[:, chosen], yc, rcond=None)[0]
        resid = yc - Xc[:, chosen] @ beta
    coef = np.zeros((X.shape[1], y.shape[1]))
    if chosen:
        coef[chosen] = _wls(X[:, chosen], y, w)
    return coef


@explainers.register("mexgen_clime")
@dataclass(frozen=True, kw_only=True)
class MExGenCLIME(Adaptive, Explainer):
    """C-LIME: a weighted linear model on removals of at most ``max_units_replace`` units.

    Per-unit standard errors (``Explanation.errors``): the sandwich of the dense fit with a
    stratified, finite-population meat (:func:`.fits.stratified_wls_many`: sizes are strata,
    subsets are drawn without replacement; a size whose every subset is used adds no error, so
    the error is 0 when all are); NaN with ``nonzero`` (a selection, no closed form).
    ``oversampling="auto"`` draws about ``4 (units + 1)`` subsets (at least 64), then adds new
    subsets in rounds (half the total each round, sizes kept at equal weight) until the ranking
    is resolved (:mod:`.adaptive`), every subset is used, or ``max_samples`` is reached."""

    stochastic = True
    budget_field = "oversampling"
    oversampling: float | str = 10.0
    max_units_replace: int = 2
    nonzero: int | None = None
    mask: str = "mask"

    def validate(self) -> None:
        super().validate()
        self.validate_precision(self.name, self.oversampling)
        over = self.oversampling
        if (over != AUTO and (isinstance(over, bool) or not isinstance(over, int | float)
                              or over <= 0)) or self.max_units_replace < 1:
            raise InputError("mexgen_clime: oversampling must be > 0 or 'auto', "
                             "max_units_replace >= 1")
        if self.nonzero is not None and self.nonzero < 1:
            raise InputError("mexgen_clime: nonzero must be None or >= 1")
        if self.nonzero is not None and over == AUTO:
            raise InputError("mexgen_clime: oversampling='auto' needs standard errors, which "
                             "the nonzero (matching pursuit) fit does not have")

    def rows_for(self, item: Prepared) -> int:
        """Model rows planned for ``item`` (for grouping): the cap when adaptive."""
        if self.oversampling == AUTO:
            return self.max_samples
        return math.ceil(float(self.oversampling) * item.n_units) + 1

    def draw(self, it: Prepared, st: dict[str, Any], n: int) -> np.ndarray:
        """Unit masks (True = present) of ``n`` new removed subsets (the first round also the
        unperturbed input); a fixed budget is :func:`clime_subsets` as published."""
        taken = st.setdefault("taken", {}) if st.get("auto") else None
        subsets, _ = clime_subsets(it.n_units, self.max_units_replace, n, st["rng"], taken)
        removed = np.zeros((len(subsets), it.n_units), dtype=bool)
        rows = np.repeat(np.arange(len(subsets)), [len(s) for s in subsets])
        removed[rows, np.fromiter(itertools.chain.from_iterable(subsets), np.intp,
                                  len(rows))] = True
        st["drew"] = len(subsets)
        if taken is not None and all(len(taken.get(k, ())) >= math.comb(it.n_units, k)
                                     for k in range(min(self.max_units_replace,
                                                        it.n_units) + 1)):
            st["exact"] = True  # every subset is used: nothing left to sample
        return ~removed

    def fit_many(self, items: Sequence[Prepared], states: Sequence[dict[str, Any]],
                 masks: Sequence[np.ndarray], values: Sequence[np.ndarray]
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The dense fits of a round's examples, those with one design layout (rows, units,
        targets and the removal size of each row) in one batched weighted least squares with
        the stratified sandwich errors (:func:`.fits.stratified_wls_many`); ``nonzero``: the
        matching-pursuit fit of each example (no errors: NaN)."""
        out: list[Any] = [None] * len(items)
        keys: list[Any] = [None] * len(items)
        for i, (it, m, y) in enumerate(zip(items, masks, values, strict=True)):
            if it.n_units == 0:
                out[i] = (np.zeros((len(it.targets), 0)), np.zeros((len(it.targets), 0)))
            elif self.nonzero is not None:
                removed = ~m
                coef = _omp(removed.astype(np.float64), y,
                            clime_weights(removed, self.max_units_replace), self.nonzero)
                out[i] = (-coef.T, np.full(coef.T.shape, np.nan))
            else:
                keys[i] = (*m.shape, y.shape[1], (~m).sum(axis=1).tobytes())
        for idx in shape_groups(keys, lambda i: masks[i].size):
            removed = np.stack([~masks[i] for i in idx])
            d = removed.shape[2]
            beta, se = stratified_wls_many(
                removed.astype(np.float64), np.stack([values[i] for i in idx]),
                np.stack([clime_weights(r, self.max_units_replace) for r in removed]),
                removed[0].sum(axis=1), np.array([math.comb(d, k) for k in range(d + 1)]))
            for j, i in enumerate(idx):
                out[i] = (-beta[j, 1:].T, se[j])
        return out

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        over = self.oversampling
        budget: int | str | Callable[[Prepared], int] = (
            AUTO if over == AUTO else lambda it: math.ceil(float(over) * it.n_units))
        return sample_in_rounds(
            adapter, items, target_fn, operator=self.mask, salt="clime", budget=budget,
            cap=self.max_samples, draw=self.draw, fit_many=self.fit_many, precision=self)


@explainers.register("mexgen_lshap")
@dataclass(frozen=True, kw_only=True)
class MExGenLSHAP(Explainer):
    """L-SHAP: local Shapley values over each unit's neighbours (linear in the units)."""

    num_neighbors: int = 2
    max_units_replace: int = 2
    mask: str = "mask"

    def validate(self) -> None:
        super().validate()
        if self.num_neighbors < 0 or self.max_units_replace < 1:
            raise InputError("mexgen_lshap: num_neighbors >= 0 and max_units_replace >= 1")

    def plan(self, n: int) -> tuple[list[tuple[int, ...]], list[list[tuple[int, int, float]]]]:
        """Distinct removed subsets, and per unit its (without-i row, with-i row, weight)."""
        return _lshap_plan(n, self.num_neighbors, self.max_units_replace)[:2]

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        plans = [_lshap_plan(it.n_units, self.num_neighbors, self.max_units_replace)
                 for it in items]
        masks = [p[2] for p in plans]
        vals = score_masks(adapter, items, masks, target_fn, operator=self.mask)
        out = []
        for it, (_, _, _, idx), v in zip(items, plans, vals, strict=True):
            unit, a, b, w = idx
            phi = np.zeros((it.n_units, v.shape[1]))
            np.add.at(phi, unit, w[:, None] * (v[a] - v[b]))
            out.append(phi.T)
        return out, [{"forwards": len(m)} for m in masks]


@functools.lru_cache(maxsize=256)
def _lshap_plan(n: int, num_neighbors: int, max_units_replace: int) -> tuple[
        list[tuple[int, ...]], list[list[tuple[int, int, float]]], np.ndarray,
        tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """L-SHAP's plan for ``n`` units (it depends on nothing else, so it is built once): the
    distinct removed subsets, per unit its (without-i row, with-i row, weight) terms, the unit
    masks (True = present) of the subsets, and the terms as flat arrays (unit, a, b, weight)."""
    rows: dict[tuple[int, ...], int] = {(): 0}
    terms: list[list[tuple[int, int, float]]] = []
    for i in range(n):
        nb = [j for j in range(max(0, i - num_neighbors), min(n, i + num_neighbors + 1))
              if j != i]
        k_max = min(max_units_replace, len(nb))
        mine = []
        for k in range(k_max + 1):
            for s in itertools.combinations(nb, k):
                a = rows.setdefault(tuple(s), len(rows))
                b = rows.setdefault(tuple(sorted((*s, i))), len(rows))
                mine.append((a, b, 1.0 / ((k_max + 1) * math.comb(len(nb), k))))
        terms.append(mine)
    subsets = list(rows)
    m = np.ones((len(subsets), n), dtype=bool)
    for r, s in enumerate(subsets):
        m[r, list(s)] = False
    m.setflags(write=False)
    flat = [(i, a, b, w) for i, mine in enumerate(terms) for a, b, w in mine]
    unit = np.array([f[0] for f in flat], dtype=np.intp)
    rows_a = np.array([f[1] for f in flat], dtype=np.intp)
    rows_b = np.array([f[2] for f in flat], dtype=np.intp)
    weight = np.array([f[3] for f in flat], dtype=np.float64)
    return subsets, terms, m, (unit, rows_a, rows_b, weight)
