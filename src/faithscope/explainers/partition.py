"""PartitionSHAP: Owen values over a hierarchical clustering of units.

The units are clustered bottom-up into a binary tree of contiguous spans (adjacent clusters of
smallest combined size merge first; merges across punctuation and across the text/pair boundary
come last). Owen values are computed top-down as in shap's Partition explainer (the ``owen``
routine of ``shap/explainers/_partition.py``): a task ``(S, c, w)`` -- node ``S`` in context
``c`` with weight ``w`` -- carries ``w (f(c+S) - f(c))``; expanding it into the children ``L``,
``R`` creates the tasks ``(L, c)``, ``(L, c+R)``, ``(R, c)``, ``(R, c+L)`` with weight ``w/2``,
which costs the two new model evaluations ``f(c+L)`` and ``f(c+R)``.

Expansion is best first from one priority queue, as in shap: the queue is keyed by
``w * max_t |f(c+S) - f(c)|`` (largest first, over the explained targets ``t``); ties are broken
by insertion order, so the result is deterministic. Each round pops the top tasks of the queue
until they ask for ``batch_size`` masks, two per task, as shap's ``batch_size`` counts them (so
``ceil(batch_size / 2)`` tasks and at most ``batch_size + 1`` new evaluations per example and
round), scores the new masks in one call, then pushes the children of the popped tasks. With
``batch_size`` 1 or 2 every round pops one task and the order is strictly best first; a larger
``batch_size`` trades a little of that order (the tasks of a round are chosen before the
values of their children are known) for fewer, larger model calls. The default, 10, is shap's
``batch_size`` when the masker names none; on the games of ``benchmarks/partition_error.py``
its error is that of strict best first within noise, with about a quarter of the rounds. All
examples advance in lock-step rounds, so each round is one virtual batch of about
``batch_size`` masks per example; each example's result does not depend on the others.

Evaluations are counted against ``max_evals`` (``f(all)`` and ``f(none)`` included) and never
exceed it; a mask already scored is reused for free. When the top task needs more evaluations
than are left, cheaper tasks further down the queue are still expanded. A task left in the queue
spreads its value evenly over its units, and a leaf task gives its value to its unit, so the
values always satisfy efficiency: they sum to ``f(all) - f(none)``. When the budget covers every
task, the result is the exact Owen value whatever the order. ``info["forwards"]`` records the
evaluations used.

Reference: Lundberg et al., shap.PartitionExplainer; Owen (1977), "Values of games with a
priori unions".

Example
-------
>>> from faithscope.explainers.partition import cluster_units
>>> tree = cluster_units(["a", "fine", ",", "quiet", "film"])
>>> tree[-1]  # the root covers all five units
(0, 5, 7, 6)
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import InputError, ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .base import Explainer, Prepared, score_masks
from .perturbation import Result

_STRONG = set(".!?;")
_WEAK = set(",:-\u2013\u2014()\"'")

Node = tuple[int, int, int, int]  # (start, end, left child, right child); leaves: children -1


def cluster_units(texts: Sequence[str], parts: Sequence[int] | None = None) -> list[Node]:
    """A binary tree over units ``0..d-1``: nodes ``0..d-1`` are leaves, the last is the root.

    Merging adjacent clusters ``a``, ``b`` costs ``|a| + |b|`` plus a penalty that depends
    only on the boundary between them: ``1e6`` across parts, ``2d`` after strong and ``d``
    after weak punctuation. The cheapest pair merges first (the leftmost on ties); a merge
    changes only the costs of its two neighbouring pairs, so each step is one ``min``."""
    d = len(texts)
    parts = list(parts) if parts is not None else [0] * d
    penalty = []
    for k in range(1, d):  # the boundary between units k - 1 and k
        last = texts[k - 1].strip()
        if parts[k - 1] != parts[k]:
            penalty.append(1e6)
        elif last and last[-1] in _STRONG:
            penalty.append(2.0 * d)
        elif last and last[-1] in _WEAK:
            penalty.append(1.0 * d)
        else:
            penalty.append(0.0)
    nodes: list[Node] = [(i, i + 1, -1, -1) for i in range(d)]
    clusters = list(range(d))
    sizes = [1] * d
    costs = [float(2) + pen for pen in penalty]  # costs[j]: merging clusters j and j + 1
    while len(clusters) > 1:
        j = costs.index(min(costs))
        a, b = nodes[clusters[j]], nodes[clusters[j + 1]]
        nodes.append((a[0], b[1], clusters[j], clusters[j + 1]))
        clusters[j : j + 2] = [len(nodes) - 1]
        sizes[j : j + 2] = [sizes[j] + sizes[j + 1]]
        del costs[j], penalty[j]
        if j > 0:
            costs[j - 1] = float(sizes[j - 1] + sizes[j]) + penalty[j - 1]
        if j < len(costs):
            costs[j] = float(sizes[j] + sizes[j + 1]) + penalty[j]
    return nodes


@explainers.register("partition_shap")
@dataclass(frozen=True, kw_only=True)
class PartitionShap(Explainer):
    """Owen values on a hierarchical clustering of units, with a budget of ``max_evals``
    evaluations, expanded best first, ``batch_size`` masks (two per task) per example and
    round."""

    max_evals: int = 500
    batch_size: int = 10
    mask: str = "mask"

    def validate(self) -> None:
        super().validate()
        b = self.batch_size
        if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
            raise InputError(f"{self.name}: batch_size must be a positive integer, got {b!r}")

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        states = [_State(it, cluster_units([u.text for u in it.units],
                                           [u.part for u in it.units]),
                         self.max_evals, self.batch_size) for it in items]
        self._evaluate(adapter, states, target_fn)  # f(all) and f(none)
        for st in states:
            st.start()
        while True:
            wanted = [st.pop_batch() for st in states]
            if not any(wanted):
                break
            self._evaluate(adapter, states, target_fn)
            for st in states:
                st.settle()
        return [st.finish() for st in states], [{"forwards": st.used} for st in states]

    def _evaluate(self, adapter: ModelAdapter, states: list[_State], target_fn: TargetFn
                  ) -> None:
        todo = [(st, list(st.want)) for st in states if st.want]
        if not todo:
            return
        vals = score_masks(adapter, [st.item for st, _ in todo], _mask_matrices(todo),
                           target_fn, operator=self.mask)
        for (st, m), v in zip(todo, vals, strict=True):
            st.store(m, v)


def _mask_matrices(todo: list[tuple[_State, list[int]]]) -> list[np.ndarray]:
    """Boolean rows (True = present) of every state's integer masks: those of states with at
    most 64 units unpacked together in one operation (views of one array), the rest one
    state at a time."""
    small = [i for i, (st, _) in enumerate(todo) if st.d <= 64]
    out: list[np.ndarray] = [np.empty(0)] * len(todo)
    if small:
        words = np.fromiter((m for i in small for m in todo[i][1]), dtype=np.uint64)
        bits = ((words[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(bool)
        start = 0
        for i in small:
            st, masks = todo[i]
            out[i] = bits[start : start + len(masks), : st.d]
            start += len(masks)
    for i, (st, masks) in enumerate(todo):
        if st.d > 64:
            out[i] = st.as_matrix(masks)
    return out


Task = tuple[int, int, float]


def _largest_abs(v: np.ndarray) -> float:
    return float(np.abs(v).max(initial=0.0))  # (node, context mask as bits: unit i is bit i, weight)


class _State:
    """Owen-value bookkeeping for one example: one priority queue of tasks.

    Masks are Python integers (bit ``i`` set = unit ``i`` present): a node's span in a context
    is one ``|``, a scored value one dictionary lookup. With one target a value is a float,
    with several a float64 array; the arithmetic is the same either way, so a task's
    bookkeeping costs about a microsecond."""

    def __init__(self, item: Prepared, tree: list[Node], budget: int, batch_size: int) -> None:
        self.item = item
        self.tree = tree
        self.bits = [((1 << (hi - lo)) - 1) << lo for lo, hi, _, _ in tree]
        self.left = [n[2] for n in tree]
        self.right = [n[3] for n in tree]
        self.d = item.n_units
        self.n_targets = len(item.targets)
        self.single = self.n_targets == 1
        self.budget = budget
        self.batch_size = batch_size
        self.cache: dict[int, Any] = {}  # mask -> value (a float, or an array of targets)
        self.want: dict[int, None] = {}  # masks to score next, in the order they were asked
        self.phi: list[Any] = ([0.0] * self.d if self.single
                               else [np.zeros(self.n_targets) for _ in range(self.d)])
        # entries (-priority, insertion number, task): a min-heap pops the largest priority,
        # ties in insertion order; the insertion number is unique, so tasks are never compared
        self.queue: list[tuple[float, int, Task]] = []
        self.pushed = 0
        self.expanded: list[Task] = []
        self.stalled = False
        self.used = 0
        for mask in ((1 << self.d) - 1, 0):
            self.want[mask] = None

    def as_matrix(self, masks: list[int]) -> np.ndarray:
        """Boolean rows (True = present) of integer masks."""
        if self.d <= 64:
            words = np.array(masks, dtype=np.uint64)
            return ((words[:, None] >> np.arange(self.d, dtype=np.uint64)) & np.uint64(1)) \
                .astype(bool).reshape(len(masks), self.d)
        nb = (self.d + 7) // 8
        raw = np.frombuffer(b"".join(m.to_bytes(nb, "little") for m in masks), dtype=np.uint8)
        bits = np.unpackbits(raw.reshape(len(masks), nb), axis=1, bitorder="little")
        return bits[:, : self.d].astype(bool)

    def store(self, masks: list[int], values: np.ndarray) -> None:
        vals = values[:, 0].tolist() if self.single else list(values)
        self.cache.update(zip(masks, vals, strict=True))
        self.used += len(masks)
        self.want = {}

    def _push(self, tasks: Sequence[tuple[int, int, float, Any]]) -> None:
        """Tasks ``(node, ctx, w, v)`` of value ``v``, in order: a leaf's value is final and
        goes to its unit (leaf ``i`` is node ``i``, unit ``i``); any other task is queued by
        the magnitude of its value (the largest over targets)."""
        phi, queue, left, n = self.phi, self.queue, self.left, self.pushed
        mag = abs if self.single else _largest_abs
        for node, ctx, w, v in tasks:
            if left[node] < 0:
                phi[node] += v
            else:
                n += 1
                heapq.heappush(queue, (-mag(v), n, (node, ctx, w)))
        self.pushed = n

    def start(self) -> None:
        if self.d:
            root = len(self.tree) - 1
            f = self.cache
            self._push([(root, 0, 1.0, 1.0 * (f[self.bits[root]] - f[0]))])

    def pop_batch(self) -> bool:
        """Pop the top tasks until they ask for ``batch_size`` masks (two per task); a task
        that needs more new evaluations than are left stays in the queue."""
        self.expanded = []
        if self.stalled:
            return False
        skipped = []
        asked = 0
        cache, want, bits, queue = self.cache, self.want, self.bits, self.queue
        left, right, expanded = self.left, self.right, self.expanded
        room = self.budget - self.used - len(want)  # new evaluations still allowed
        while queue and asked < self.batch_size:
            entry = heapq.heappop(queue)
            node, ctx, _ = entry[2]
            ml, mr = ctx | bits[left[node]], ctx | bits[right[node]]  # never equal
            new_l = ml not in cache and ml not in want
            new_r = mr not in cache and mr not in want
            if new_l + new_r > room:
                skipped.append(entry)
                continue
            if new_l:
                want[ml] = None
            if new_r:
                want[mr] = None
            room -= new_l + new_r
            asked += 2  # as shap counts a task, even when a mask was scored before
            expanded.append(entry[2])
        for entry in skipped:
            heapq.heappush(queue, entry)
        # the budget only shrinks and nothing new was scored: no later round can expand either
        self.stalled = not self.expanded
        return bool(self.expanded)

    def settle(self) -> None:
        """Push the four children of every task expanded this round: ``(L, c)``, ``(L, c+R)``,
        ``(R, c)``, ``(R, c+L)`` with half the weight (``c+L+R = c+S``)."""
        f, bits, left, right = self.cache, self.bits, self.left, self.right
        children: list[tuple[int, int, float, Any]] = []
        for node, ctx, w in self.expanded:
            lc, rc, h = left[node], right[node], w / 2
            cl, cr = ctx | bits[lc], ctx | bits[rc]
            f0, fl, fr, fs = f[ctx], f[cl], f[cr], f[ctx | bits[node]]
            children += ((lc, ctx, h, h * (fl - f0)), (lc, cr, h, h * (fs - fr)),
                         (rc, ctx, h, h * (fr - f0)), (rc, cl, h, h * (fs - fl)))
        self.expanded = []
        self._push(children)

    def finish(self) -> np.ndarray:
        """A task left in the queue spreads its value evenly over its units."""
        f = self.cache
        for _, _, (node, ctx, w) in self.queue:
            lo, hi, _, _ = self.tree[node]
            share = w * (f[ctx | self.bits[node]] - f[ctx]) / (hi - lo)
            for u in range(lo, hi):
                self.phi[u] += share
        if self.single:
            return np.array(self.phi, dtype=float).reshape(1, self.d)
        return (np.stack(self.phi, axis=1) if self.d
                else np.zeros((self.n_targets, 0)))
