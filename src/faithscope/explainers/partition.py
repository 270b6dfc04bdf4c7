"""PartitionSHAP: Owen values over a hierarchical clustering of units.

The units are clustered bottom-up into a binary tree of contiguous spans (adjacent clusters of
smallest combined size merge first; merges across punctuation and across the text/pair boundary
come last). Owen values are computed top-down as in shap's Partition explainer: a node ``S`` in
context ``c`` with weight ``w`` carries ``w (f(c+S) - f(c))``; expanding it into children ``L``,
``R`` creates the tasks ``(L, c)``, ``(L, c+R)``, ``(R, c)``, ``(R, c+L)`` with weight ``w/2``,
which costs two new model evaluations. Nodes are expanded by decreasing ``|value|`` until
``max_evals`` is spent; an unexpanded node spreads its value evenly over its units. The values
always satisfy efficiency: they sum to ``f(all) - f(none)``. All examples expand in lock-step
rounds, so each round is one virtual batch.

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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..models.adapter import ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .base import Explainer, Prepared, score_masks
from .perturbation import Result

_STRONG = set(".!?;")
_WEAK = set(",:-\u2013\u2014()\"'")

Node = tuple[int, int, int, int]  # (start, end, left child, right child); leaves: children -1


def cluster_units(texts: Sequence[str], parts: Sequence[int] | None = None) -> list[Node]:
    """A binary tree over units ``0..d-1``: nodes ``0..d-1`` are leaves, the last is the root."""
    d = len(texts)
    parts = list(parts) if parts is not None else [0] * d
    nodes: list[Node] = [(i, i + 1, -1, -1) for i in range(d)]
    clusters = list(range(d))
    while len(clusters) > 1:
        best, best_cost = 0, float("inf")
        for j in range(len(clusters) - 1):
            a, b = nodes[clusters[j]], nodes[clusters[j + 1]]
            last = texts[a[1] - 1].strip()
            cost = float((a[1] - a[0]) + (b[1] - b[0]))
            if parts[a[1] - 1] != parts[b[0]]:
                cost += 1e6
            elif last and last[-1] in _STRONG:
                cost += 2.0 * d
            elif last and last[-1] in _WEAK:
                cost += 1.0 * d
            if cost < best_cost:
                best, best_cost = j, cost
        a, b = nodes[clusters[best]], nodes[clusters[best + 1]]
        nodes.append((a[0], b[1], clusters[best], clusters[best + 1]))
        clusters[best : best + 2] = [len(nodes) - 1]
    return nodes


@explainers.register("partition_shap")
@dataclass(frozen=True, kw_only=True)
class PartitionShap(Explainer):
    """Owen values on a hierarchical clustering of units, with a budget of ``max_evals``."""

    name = "partition_shap"
    max_evals: int = 500
    mask: str = "mask"

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        states = [_State(it, cluster_units([u.text for u in it.units],
                                           [u.part for u in it.units])) for it in items]
        self._evaluate(adapter, states, target_fn)
        for st in states:
            st.start()
        while True:
            wanted = [st.expand(self.max_evals) for st in states]
            if not any(wanted):
                break
            self._evaluate(adapter, states, target_fn)
            for st in states:
                st.settle()
        return [st.finish() for st in states], [{"forwards": st.used} for st in states]

    def _evaluate(self, adapter: ModelAdapter, states: list[_State], target_fn: TargetFn
                  ) -> None:
        todo = [(st, st.pending()) for st in states]
        todo = [(st, m) for st, m in todo if len(m)]
        if not todo:
            return
        vals = score_masks(adapter, [st.item for st, _ in todo], [m for _, m in todo],
                           target_fn, operator=self.mask)
        for (st, m), v in zip(todo, vals, strict=True):
            st.store(m, v)


class _State:
    """Owen-value bookkeeping for one example."""

    def __init__(self, item: Prepared, tree: list[Node]) -> None:
        self.item = item
        self.tree = tree
        self.d = item.n_units
        self.cache: dict[bytes, np.ndarray] = {}
        self.want: dict[bytes, np.ndarray] = {}
        self.phi = np.zeros((len(item.targets), self.d))
        self.frontier: list[tuple[int, np.ndarray, float]] = []
        self.expanded: list[tuple[int, np.ndarray, float]] = []
        self.used = 0
        full = np.ones(self.d, bool)
        self._ask(full)
        self._ask(~full)

    def _ask(self, mask: np.ndarray) -> None:
        key = mask.tobytes()
        if key not in self.cache:
            self.want[key] = mask

    def pending(self) -> np.ndarray:
        masks = list(self.want.values())
        return np.array(masks, dtype=bool).reshape(len(masks), self.d)

    def store(self, masks: np.ndarray, values: np.ndarray) -> None:
        for m, v in zip(masks, values, strict=True):
            self.cache[m.tobytes()] = v
        self.used += len(masks)
        self.want = {}

    def f(self, mask: np.ndarray) -> np.ndarray:
        return self.cache[mask.tobytes()]

    def span(self, node: int, context: np.ndarray) -> np.ndarray:
        lo, hi, _, _ = self.tree[node]
        m = context.copy()
        m[lo:hi] = True
        return m

    def value(self, task: tuple[int, np.ndarray, float]) -> np.ndarray:
        node, ctx, w = task
        return w * (self.f(self.span(node, ctx)) - self.f(ctx))

    def start(self) -> None:
        if self.d:
            self.frontier = [(len(self.tree) - 1, np.zeros(self.d, bool), 1.0)]

    def expand(self, budget: int) -> bool:
        """Choose frontier nodes to split (largest |value| first) and ask for their masks."""
        inner = [t for t in self.frontier if self.tree[t[0]][2] >= 0]
        inner.sort(key=lambda t: -float(np.abs(self.value(t)).max()))
        keep = [t for t in self.frontier if self.tree[t[0]][2] < 0]
        self.expanded = []
        spent = self.used
        for t in inner:
            node, ctx, w = t
            _, _, left, right = self.tree[node]
            new = [self.span(left, ctx), self.span(right, ctx)]
            cost = sum(m.tobytes() not in self.cache and m.tobytes() not in self.want
                       for m in new)
            if spent + cost > budget:
                keep.append(t)
                continue
            spent += cost
            for m in new:
                self._ask(m)
            self.expanded.append(t)
        self.frontier = keep
        return bool(self.expanded)

    def settle(self) -> None:
        for node, ctx, w in self.expanded:
            _, _, left, right = self.tree[node]
            self.frontier += [(left, ctx, w / 2), (left, self.span(right, ctx), w / 2),
                              (right, ctx, w / 2), (right, self.span(left, ctx), w / 2)]
        self.expanded = []

    def finish(self) -> np.ndarray:
        for t in self.frontier:
            lo, hi, _, _ = self.tree[t[0]]
            self.phi[:, lo:hi] += (self.value(t) / (hi - lo))[:, None]
        return self.phi
