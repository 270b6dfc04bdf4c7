"""Benchmark: error of budgeted PartitionSHAP against the fully expanded Owen values.

Before: the breadth-first expansion that ``partition_shap`` used until it became best first (every
round split the whole frontier, largest ``|value|`` first, while the budget allowed; kept here,
verbatim in logic, only as the comparison). After: ``faithscope.explainers.PartitionShap``, best
first from one priority queue as in shap's ``owen`` routine, at ``batch_size`` 2 (one task per
round: strictly best first) and its default.

The games need no model: synthetic "sentiment" games over ``d`` word units,
``f(m) = sigmoid(b + sum_i a_i m_i + sum_(i,j) b_ij m_i m_j)`` with a few key units of large
effect, small effects elsewhere and interactions around the key units (two families, see
:func:`make_game`). Units are clustered by
:func:`~faithscope.explainers.partition.cluster_units` (a comma after every fourth word). The
exact Owen values come from a direct recursion over the hierarchy (no budget), checked against
the explainer with an unlimited budget.

Error per game: L1 = sum over units |phi - owen| and max = max over units |phi - owen|, both in
units of ``f`` (a probability), then averaged over the games. ``evals`` is the mean number of
model evaluations used (``f(all)`` and ``f(none)`` included), ``rounds`` the number of model calls
for all games explained together in lock-step.

Usage:
    python benchmarks/partition_error.py [--games 20] [--seed 0] [--units 15 28]
                                         [--budgets 60 120 250] [--games-family mixed sparse]
                                         [--batch-sizes 2 10 50]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from faithscope.explainers import PartitionShap, Prepared
from faithscope.explainers.partition import Node, cluster_units
from faithscope.units import Unit

Game = Callable[[np.ndarray], np.ndarray]  # masks (rows x d) -> values (rows x 1)


def make_game(d: int, rng: np.random.Generator, family: str = "mixed") -> Game:
    """``mixed``: main effects 0.1 N(0, 1) on every unit, three key units with effects of about
    +-2, interactions between the key units, with their neighbours and three random pairs.
    ``sparse``: two key units, main effects 0.05 N(0, 1) elsewhere, interactions only between a
    key unit and its neighbours. Interaction weights are N(0, 1.5); ``f`` is a sigmoid."""
    n_keys, small = (3, 0.1) if family == "mixed" else (2, 0.05)
    a = small * rng.standard_normal(d)
    keys = rng.choice(d, size=n_keys, replace=False)
    a[keys] = rng.choice([-1.0, 1.0], size=n_keys) * rng.normal(2.0, 0.5, size=n_keys)
    pairs = {(min(i, j), max(i, j)) for i in keys for j in (i - 1, i + 1) if 0 <= j < d}
    if family == "mixed":
        pairs |= {(min(i, j), max(i, j)) for i in keys for j in keys if i != j}
        pairs |= {tuple(sorted(rng.choice(d, size=2, replace=False).tolist()))
                  for _ in range(3)}
    B = np.zeros((d, d))
    for i, j in sorted(pairs):
        B[i, j] = rng.normal(0.0, 1.5)
    b0 = rng.normal(0.0, 0.5)

    def game(masks: np.ndarray) -> np.ndarray:
        m = np.asarray(masks, dtype=np.float64).reshape(-1, d)
        z = b0 + m @ a + np.einsum("ri,ij,rj->r", m, B, m)
        return (1.0 / (1.0 + np.exp(-z)))[:, None]

    return game


def make_item(d: int, k: int) -> Prepared:
    texts = [f"w{i}," if i % 4 == 3 else f"w{i}" for i in range(d)]
    units, pos = [], 0
    for i, t in enumerate(texts):
        units.append(Unit(t, pos, pos + len(t), 0, (i + 1,)))
        pos += len(t) + 1
    return Prepared(example_id=str(k), enc=None, units=tuple(units),  # type: ignore[arg-type]
                    targets=(0,), logits=np.zeros(1), seed=0,
                    token_unit=np.arange(d, dtype=np.int64))


class GameAdapter:
    """Stands in for a model: ``score_masks`` hands it every example's masks of a round."""

    def __init__(self, games: Sequence[Game]) -> None:
        self.games = {str(k): g for k, g in enumerate(games)}
        self.calls = 0

    def score_unit_masks(self, items: Sequence[Prepared], masks: Sequence[np.ndarray]
                         ) -> list[np.ndarray]:
        self.calls += 1
        return [self.games[it.example_id](m) for it, m in zip(items, masks)]


def tree_of(item: Prepared) -> list[Node]:
    return cluster_units([u.text for u in item.units], [u.part for u in item.units])


def exact_owen(game: Game, tree: list[Node], d: int) -> np.ndarray:
    """Owen values by direct recursion over (node, context, weight), no budget."""
    phi = np.zeros(d)
    cache: dict[bytes, float] = {}

    def f(m: np.ndarray) -> float:
        key = m.tobytes()
        if key not in cache:
            cache[key] = float(game(m[None])[0, 0])
        return cache[key]

    def with_span(ctx: np.ndarray, node: int) -> np.ndarray:
        m = ctx.copy()
        lo, hi = tree[node][:2]
        m[lo:hi] = True
        return m

    def rec(node: int, ctx: np.ndarray, w: float) -> None:
        lo, _, left, right = tree[node]
        if left < 0:
            phi[lo] += w * (f(with_span(ctx, node)) - f(ctx))
            return
        rec(left, ctx, w / 2)
        rec(left, with_span(ctx, right), w / 2)
        rec(right, ctx, w / 2)
        rec(right, with_span(ctx, left), w / 2)

    rec(len(tree) - 1, np.zeros(d, bool), 1.0)
    return phi


def breadth_first(game: Game, tree: list[Node], d: int, max_evals: int
                  ) -> tuple[np.ndarray, int, int]:
    """The previous partition_shap logic: each round splits every frontier node (largest
    |value| first) whose two masks still fit the budget. Returns (phi, evaluations, rounds)."""
    cache: dict[bytes, np.ndarray] = {}
    want: dict[bytes, np.ndarray] = {}
    used = rounds = 0

    def ask(m: np.ndarray) -> None:
        if m.tobytes() not in cache:
            want[m.tobytes()] = m

    def run() -> None:
        nonlocal used, rounds
        if want:
            masks = np.array(list(want.values()), dtype=bool).reshape(len(want), d)
            for m, v in zip(masks, game(masks)):
                cache[m.tobytes()] = v
            used += len(masks)
            rounds += 1
            want.clear()

    def span(node: int, ctx: np.ndarray) -> np.ndarray:
        lo, hi = tree[node][:2]
        m = ctx.copy()
        m[lo:hi] = True
        return m

    def value(t: tuple[int, np.ndarray, float]) -> np.ndarray:
        node, ctx, w = t
        return w * (cache[span(node, ctx).tobytes()] - cache[ctx.tobytes()])

    full = np.ones(d, bool)
    ask(full)
    ask(~full)
    run()
    frontier = [(len(tree) - 1, np.zeros(d, bool), 1.0)]
    while True:
        inner = [t for t in frontier if tree[t[0]][2] >= 0]
        inner.sort(key=lambda t: -float(np.abs(value(t)).max()))
        keep = [t for t in frontier if tree[t[0]][2] < 0]
        expanded = []
        spent = used
        for t in inner:
            node, ctx, _ = t
            _, _, left, right = tree[node]
            new = [span(left, ctx), span(right, ctx)]
            cost = sum(m.tobytes() not in cache and m.tobytes() not in want for m in new)
            if spent + cost > max_evals:
                keep.append(t)
                continue
            spent += cost
            for m in new:
                ask(m)
            expanded.append(t)
        frontier = keep
        if not expanded:
            break
        run()
        for node, ctx, w in expanded:
            _, _, left, right = tree[node]
            frontier += [(left, ctx, w / 2), (left, span(right, ctx), w / 2),
                         (right, ctx, w / 2), (right, span(left, ctx), w / 2)]
    phi = np.zeros(d)
    for t in frontier:
        lo, hi = tree[t[0]][:2]
        phi[lo:hi] += float(value(t)[0]) / (hi - lo)
    return phi, used, rounds


def best_first(games: Sequence[Game], items: Sequence[Prepared], max_evals: int,
               batch_size: int) -> tuple[list[np.ndarray], list[int], int]:
    adapter = GameAdapter(games)
    exp = PartitionShap(max_evals=max_evals, batch_size=batch_size)
    scores, info = exp.attribute(adapter, items, None)  # type: ignore[arg-type]
    return [s[0] for s in scores], [i["forwards"] for i in info], adapter.calls


def errors(phis: Sequence[np.ndarray], exact: Sequence[np.ndarray]) -> tuple[float, float]:
    diff = [np.abs(p - e) for p, e in zip(phis, exact)]
    return float(np.mean([x.sum() for x in diff])), float(np.mean([x.max() for x in diff]))


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--games", type=int, default=20, help="random games per row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--units", type=int, nargs="+", default=[15, 28])
    ap.add_argument("--budgets", type=int, nargs="+", default=[60, 120, 250])
    ap.add_argument("--games-family", dest="families", nargs="+", default=["mixed", "sparse"],
                    choices=["mixed", "sparse"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                    help="batch sizes of the best-first runs (default: 2 and the explainer's "
                         "default); larger ones mean fewer, larger model calls (GPUs)")
    args = ap.parse_args(argv)
    default_batch = PartitionShap().batch_size
    batch_sizes = sorted(set(args.batch_sizes or {2, default_batch}))

    rows: list[dict[str, Any]] = []
    header = (f"{'game':<6} {'units':>5} {'max_evals':>9} {'method':<28} {'L1 error':>9} "
              f"{'max error':>9} {'evals':>6} {'rounds':>6}")
    print(header)
    print("-" * len(header))
    for family in args.families:
        for d in args.units:
            rng = np.random.default_rng([args.seed, d, len(family)])
            games = [make_game(d, rng, family) for _ in range(args.games)]
            items = [make_item(d, k) for k in range(args.games)]
            tree = tree_of(items[0])
            exact = [exact_owen(g, tree, d) for g in games]
            full, full_used, _ = best_first(games, items, 10**9, default_batch)
            assert max(np.abs(p - e).max() for p, e in zip(full, exact)) < 1e-12, "not Owen"
            print(f"{family:<6} {d:>5} {'(all)':>9} {'fully expanded: exact Owen':<28} "
                  f"{0.0:>9.4f} {0.0:>9.4f} {np.mean(full_used):>6.1f}")
            for budget in args.budgets:
                bf = [breadth_first(g, tree, d, budget) for g in games]
                runs = [("before: breadth first", [b[0] for b in bf], [b[1] for b in bf],
                         max(b[2] for b in bf))]
                for bs in batch_sizes:
                    label = f"after: best first, batch {bs}"
                    runs.append((label, *best_first(games, items, budget, bs)))
                for label, phis, used, rounds in runs:
                    l1, mx = errors(phis, exact)
                    rows.append({"game": family, "units": d, "max_evals": budget,
                                 "method": label, "l1": l1, "max": mx,
                                 "evals": float(np.mean(used)), "rounds": rounds})
                    print(f"{family:<6} {d:>5} {budget:>9} {label:<28} {l1:>9.4f} {mx:>9.4f} "
                          f"{np.mean(used):>6.1f} {rounds:>6}")
    return rows


if __name__ == "__main__":
    main()
