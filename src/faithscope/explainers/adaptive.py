"""Adaptive precision for the sampling explainers: per-unit standard errors, and
``n_samples="auto"``, which samples in rounds and stops each example once its ranking is resolved.

Every sampling kernel (LIME, KernelSHAP, Shapley sampling) is written as two functions driven by
:func:`sample_in_rounds`: ``draw(item, state, n)`` returns ``n`` new unit masks of one example
(its own generator lives in ``state``, so an example's samples never depend on the others), and
``fit(item, state, masks, values)`` returns the estimate and its per-unit standard errors from all
rows scored so far. A fixed budget is one round. With ``"auto"`` the first round draws
``first`` samples per example, each later round adds half the example's total, and all unfinished
examples of the call are scored together in one virtual batch per round. An example stops when
:func:`ranking_resolved` holds or its total reaches ``max_samples``.

Stopping rule (:func:`ranking_resolved`): for every pair of units (every pair with at least one
of the ``top_k`` highest-ranked units when ``top_k`` is set), the probability that the estimate
orders it as the exact value does, up to a tie within ``tolerance`` of the largest attribution,
is ``Phi((|phi_a - phi_b| + tolerance * max|phi|) / sqrt(se_a**2 + se_b**2))`` under normal
errors; the example stops when the mean over pairs (the expected share of correctly ordered
pairs, ``(1 + tau) / 2`` for Kendall's tau with the exact ranking) reaches ``confidence``. Pairs
that are far apart are settled at once, so the samples go to examples whose close pairs are
still uncertain; units tied within the tolerance do not hold an example back. Exact estimates
(standard error 0, e.g. KernelSHAP on enumerated coalitions) are resolved at once.

Standard errors are those of the estimator under the sampling design, from one run:
heteroskedasticity-consistent sandwich variances for the weighted least-squares fits (White
1980; HC1 scaling; LIME's, KernelSHAP's and C-LIME's in :mod:`.fits`), over antithetic pairs
where samples come in pairs (Covert & Lee 2021, "Improving KernelSHAP"), and the standard
deviation of antithetic-pair means for permutation
sampling (Mitchell et al. 2022, "Sampling permutations for Shapley value estimation").

Example
-------
>>> import numpy as np
>>> ranking_resolved(np.array([[3.0, 1.0, 0.0]]), np.array([[0.1, 0.1, 0.1]]),
...                  tolerance=0.0, confidence=0.95, top_k=None)
True
>>> ranking_resolved(np.array([[3.0, 2.9, 0.0]]), np.array([[0.1, 0.1, 0.1]]),
...                  tolerance=0.0, confidence=0.95, top_k=None)
False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ..models.adapter import InputError, ModelAdapter
from ..targets import TargetFn
from .base import Prepared, score_masks
from .scoring import mask_keys, unique_rows

AUTO = "auto"
# bumped when what "auto" draws or how it stops changes (benchmarks key their caches on it)
AUTO_VERSION = 5
Draw = Callable[[Prepared, dict[str, Any], int], np.ndarray]
Fit = Callable[[Prepared, dict[str, Any], np.ndarray, np.ndarray],
               tuple[np.ndarray, np.ndarray]]
FitMany = Callable[[Sequence[Prepared], Sequence[dict[str, Any]], Sequence[np.ndarray],
                    Sequence[np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True, kw_only=True)
class Adaptive:
    """The precision settings shared by the sampling explainers (used with a budget of
    ``"auto"``): ``tolerance`` (fraction of the largest attribution within which two units
    count as tied), ``confidence`` (the expected share of correctly ordered unit pairs at which
    an example stops), ``top_k`` (only pairs touching the k highest units count; None: all
    pairs), ``max_samples`` (cap on an example's budget, in the explainer's own unit: samples,
    or permutations for Shapley sampling)."""

    tolerance: float = 0.05
    confidence: float = 0.98
    top_k: int | None = None
    max_samples: int = 2000

    def validate_precision(self, name: str, budget: Any) -> None:
        if isinstance(budget, str) and budget != AUTO:
            raise InputError(f"{name}: the budget must be a positive integer or 'auto', "
                             f"got {budget!r}")
        if not 0 <= self.tolerance < 1:
            raise InputError(f"{name}: tolerance must be in [0, 1), got {self.tolerance!r}")
        if not 0 < self.confidence < 1:
            raise InputError(f"{name}: confidence must be in (0, 1), got {self.confidence!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise InputError(f"{name}: top_k must be None or >= 1, got {self.top_k!r}")
        m = self.max_samples
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise InputError(f"{name}: max_samples must be a positive integer, got {m!r}")


def z_value(confidence: float) -> float:
    """Two-sided standard normal quantile: 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def expected_concordance(row: np.ndarray, se: np.ndarray, *, tolerance: float,
                         top_k: int | None = None) -> float:
    """The expected share of unit pairs the estimate ``row`` orders as the exact values do (up
    to ties within ``tolerance * max|row|``), given per-unit standard errors ``se``: the mean
    of ``Phi((|d| + slack) / sqrt(se_a**2 + se_b**2))`` over pairs (those touching the
    ``top_k`` highest units when set). 1.0 for fewer than two units."""
    from scipy.special import ndtr

    d = len(row)
    if d < 2:
        return 1.0
    a, b = np.triu_indices(d, 1)
    if top_k is not None and top_k < d:
        top = np.zeros(d, dtype=bool)
        top[np.argsort(-row, kind="stable")[:top_k]] = True
        keep = top[a] | top[b]
        a, b = a[keep], b[keep]
    gap = np.abs(row[a] - row[b]) + tolerance * float(np.abs(row).max())
    sd = np.sqrt(se[a] ** 2 + se[b] ** 2)
    p = np.where(sd > 0, ndtr(np.divide(gap, sd, out=np.zeros_like(gap), where=sd > 0)),
                 1.0)  # no error: the order (or the tie) is exact
    return float(p.mean())


def ranking_resolved(phi: np.ndarray, se: np.ndarray, *, tolerance: float, confidence: float,
                     top_k: int | None) -> bool:
    """Whether every explained target's ranking is resolved (see the module docstring):
    ``phi`` and ``se`` are targets x units."""
    for row, s in zip(np.atleast_2d(phi), np.atleast_2d(se), strict=True):
        if len(row) < 2:
            continue
        if not np.isfinite(s).all():
            return False
        if expected_concordance(row, s, tolerance=tolerance, top_k=top_k) < confidence:
            return False
    return True


def round_sizes(budget: int | str, first: int, cap: int) -> list[int]:
    """Samples added per round: ``[budget]`` for a fixed budget; with ``"auto"``, ``first``
    then totals growing by half each round (first, 1.5 first, 2.25 first, ...) until ``cap``:
    a finer step than doubling, so an example stops closer to the budget it needed."""
    if budget != AUTO:
        return [int(budget)]
    first = min(first, cap)
    sizes, total = [first], first
    while total < cap:
        step = min(max(2, total // 2), cap - total)
        sizes.append(step)
        total += step
    return sizes


def fixed_state(item: Prepared, salt: str, budget: int | str) -> dict[str, Any]:
    """The sampling state of an example's first round under a fixed budget (what
    :func:`sample_in_rounds` starts from), for drawing an explainer's samples on their own."""
    return {"rng": item.rng(salt), "round": 0, "sizes": [int(budget)]}


def sample_in_rounds(
    adapter: ModelAdapter, items: Sequence[Prepared], target_fn: TargetFn, *, operator: str,
    salt: str, budget: int | str | Callable[[Prepared], int], cap: int,
    draw: Draw, precision: Adaptive, fit: Fit | None = None,
    first: Callable[[Prepared], int] = lambda it: max(64, 4 * (it.n_units + 1)),
    fit_many: FitMany | None = None,
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Drive ``draw``/``fit`` over rounds (see the module docstring). Returns per example the
    estimate (targets x units) and an info dict: ``forwards`` (distinct masks scored: a mask
    seen in an earlier round of the call is reused, not scored again), ``n_samples`` (the
    budget used, in the explainer's unit: samples or permutations; an enumeration counts what
    it enumerated), ``rounds``, ``resolved`` (auto: whether the stopping rule held, rather than
    the cap) and ``se`` (per-unit standard errors). ``first``: an example's first auto round
    (default 64 samples, or 4 per unit and one more). A fixed ``budget`` may depend on the
    example (a function of it: e.g. C-LIME's ``oversampling x units``). Either ``fit`` (one
    example) or ``fit_many`` (all examples of a round at once: lists of items, states, masks
    and values; e.g. batched regressions, :mod:`.fits`)."""
    if (fit is None) == (fit_many is None):
        raise TypeError("sample_in_rounds needs exactly one of fit and fit_many")
    states = [{**fixed_state(it, salt, 1),
               "sizes": round_sizes(budget(it) if callable(budget) else budget, first(it), cap),
               "masks": [], "values": [], "forwards": 0, "drawn": 0, "cache": {},
               "scored": [],
               "auto": budget == AUTO}
              for it in items]
    results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(items)
    active = list(range(len(items)))
    auto = budget == AUTO
    while active:
        drawn, slots, fresh = [], [], []
        for i in active:
            st = states[i]
            m = draw(items[i], st, st["sizes"][st["round"]])
            st["drawn"] += st.pop("drew", st["sizes"][st["round"]])
            # a mask scored in an earlier round is not scored again; duplicates once. The
            # cache maps a mask's key to its row among the example's scored values
            if len(st["sizes"]) == 1:  # one round only: no cache, one sort of the masks
                new, where = unique_rows(m)
            else:
                cache = st["cache"]
                picked: list[int] = []
                slot: list[int] = []
                for j, key in enumerate(mask_keys(m)):
                    at = cache.get(key)
                    if at is None:  # a new mask: the next row of the scored values
                        at = cache[key] = len(cache)
                        picked.append(j)
                    slot.append(at)
                new, where = m[picked], np.asarray(slot, dtype=np.intp)
            drawn.append(m)
            slots.append(where)
            fresh.append(new)
            st["forwards"] += len(new)
        todo = [(i, new) for i, new in zip(active, fresh, strict=True) if len(new)]
        vals = score_masks(adapter, [items[i] for i, _ in todo], [m for _, m in todo],
                           target_fn, operator=operator) if todo else []
        got = dict(zip([i for i, _ in todo], vals, strict=True))
        for i, m, k, new in zip(active, drawn, slots, fresh, strict=True):
            st = states[i]
            if len(new):
                st["scored"].append(got[i])
            if len(st["scored"]) > 1:
                st["scored"] = [np.vstack(st["scored"])]
            n_t = len(items[i].targets)
            v = (st["scored"][0][k] if st["scored"]
                 else np.zeros((0, n_t))).reshape(len(k), n_t)
            st["masks"].append(m)
            st["values"].append(v)
            st["round"] += 1
        args = ([items[i] for i in active], [states[i] for i in active],
                [np.vstack(states[i]["masks"]) for i in active],
                [np.vstack(states[i]["values"]) for i in active])
        fitted = fit_many(*args) if fit_many is not None else \
            [fit(*one) for one in zip(*args, strict=True)]  # type: ignore[misc]
        still = []
        for i, (phi, se) in zip(active, fitted, strict=True):
            st = states[i]
            results[i] = (phi, se)
            # the stopping rule matters (and is recorded) in auto mode only
            st["resolved"] = auto and bool(ranking_resolved(
                phi, se, tolerance=precision.tolerance, confidence=precision.confidence,
                top_k=precision.top_k))
            if auto and st["round"] < len(st["sizes"]) and not st["resolved"] \
                    and not st.get("exact"):
                still.append(i)
        active = still
    scores, infos = [], []
    for st, res in zip(states, results, strict=True):
        assert res is not None
        phi, se = res
        scores.append(phi)
        info: dict[str, Any] = {"forwards": st["forwards"], "n_samples": st["drawn"],
                                "se": np.asarray(se, dtype=np.float64)}
        if auto:
            info.update(rounds=st["round"], resolved=st["resolved"] or bool(st.get("exact")))
        if st.get("exact"):
            info["exact"] = True
        info.update(st.get("info", {}))
        infos.append(info)
    return scores, infos
