"""PartitionSHAP's best-first expansion, KernelSHAP's underdetermined regime and LIME's locality
kernel, on synthetic games (known functions of the unit mask, scored without a model) and on
the linear bag-of-embeddings model."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import faithscope as fs
from faithscope.explainers import KernelShap, Lime, PartitionShap, Prepared, perturbation
from faithscope.explainers.partition import cluster_units
from faithscope.units import Unit
from helpers import check_round_trip

Game = Callable[[np.ndarray], np.ndarray]  # masks (rows x d) -> values (rows x targets)
TEXT12 = "the film is long , slow and dull but the cast shines"  # 12 word units


def make_item(d: int, example_id: str = "0", comma_every: int = 4) -> Prepared:
    """A Prepared example of ``d`` one-token word units (no encoding: games score masks)."""
    texts = [f"w{i}," if i % comma_every == comma_every - 1 else f"w{i}" for i in range(d)]
    units, pos = [], 0
    for i, t in enumerate(texts):
        units.append(Unit(t, pos, pos + len(t), 0, (i + 1,)))
        pos += len(t) + 1
    return Prepared(example_id=example_id, enc=None, units=tuple(units),  # type: ignore[arg-type]
                    targets=(0,), logits=np.zeros(1), seed=0,
                    token_unit=np.arange(d, dtype=np.int64))


class GameAdapter:
    """Scores each example's masks with its game; records the masks of every call."""

    def __init__(self, games: dict[str, Game]) -> None:
        self.games = games
        self.calls: list[dict[str, np.ndarray]] = []

    def score_unit_masks(self, items: Sequence[Prepared], masks: Sequence[np.ndarray]
                         ) -> list[np.ndarray]:
        self.calls.append({it.example_id: np.asarray(m, bool) for it, m in zip(items, masks)})
        return [self.games[it.example_id](np.asarray(m, bool)) for it, m in zip(items, masks)]


def sigmoid_game(a: np.ndarray, B: np.ndarray, b0: float = 0.0) -> Game:
    """f(m) = sigmoid(b0 + a.m + m'Bm): a non-additive game."""

    def game(masks: np.ndarray) -> np.ndarray:
        m = masks.astype(np.float64).reshape(-1, len(a))
        z = b0 + m @ a + np.einsum("ri,ij,rj->r", m, B, m)
        return (1.0 / (1.0 + np.exp(-z)))[:, None]

    return game


def random_game(d: int, seed: int, active: Sequence[int] | None = None) -> Game:
    """Main effects and neighbour interactions on ``active`` units (default: all); the other
    units are dummies."""
    rng = np.random.default_rng(seed)
    act = np.arange(d) if active is None else np.asarray(active)
    a = np.zeros(d)
    a[act] = rng.normal(0.0, 1.0, len(act)) + np.sign(rng.standard_normal(len(act))) * 0.3
    B = np.zeros((d, d))
    for i, j in zip(act[:-1], act[1:]):
        B[i, j] = rng.normal(0.0, 1.5)
    return sigmoid_game(a, B, rng.normal(0.0, 0.5))


def attribute(explainer, games: dict[str, Game], items: Sequence[Prepared]):
    adapter = GameAdapter(games)
    scores, info = explainer.attribute(adapter, items, None)
    return scores, info, adapter


def span_mask(d: int, node: tuple[int, ...], ctx: np.ndarray | None = None) -> np.ndarray:
    """``ctx`` plus the units of tree node ``node`` = (start, end, left, right)."""
    m = np.zeros(d, bool) if ctx is None else ctx.copy()
    m[node[0]:node[1]] = True
    return m


def exact_owen(game: Game, tree, d: int) -> np.ndarray:
    """Owen values by direct recursion over (node, context, weight)."""
    phi = np.zeros(d)

    def f(m: np.ndarray) -> float:
        return float(game(m[None])[0, 0])

    def rec(node: int, ctx: np.ndarray, w: float) -> None:
        lo, hi, left, right = tree[node]
        if left < 0:
            phi[lo] += w * (f(span_mask(d, tree[node], ctx)) - f(ctx))
            return
        rec(left, ctx, w / 2)
        rec(left, span_mask(d, tree[right], ctx), w / 2)
        rec(right, ctx, w / 2)
        rec(right, span_mask(d, tree[left], ctx), w / 2)

    rec(len(tree) - 1, np.zeros(d, bool), 1.0)
    return phi


def tree_of(item: Prepared):
    return cluster_units([u.text for u in item.units], [u.part for u in item.units])


# --------------------------------------------------------------------------- partition SHAP
@pytest.mark.parametrize("batch_size", [1, 2, 10, 1000])
def test_partition_full_budget_is_exact_owen_whatever_the_batch(batch_size):
    d = 11
    item = make_item(d)
    game = random_game(d, seed=3)
    (phi,), (info,), _ = attribute(PartitionShap(max_evals=10**6, batch_size=batch_size),
                                   {"0": game}, [item])
    np.testing.assert_allclose(phi[0], exact_owen(game, tree_of(item), d), atol=1e-12, rtol=0)
    assert info["forwards"] < 2**d


def test_partition_best_first_spends_the_budget_where_the_value_is():
    """Only the units under the root's left child matter. Best first never splits a task of
    the dummy right half (its value is 0) while a task of the left half is queued: a budget
    that covers the left half's tasks alone gives the exact Owen values, and no mask ever
    splits the right half. Breadth first would split the right half's tasks level by level."""
    d = 16
    item = make_item(d)
    tree = tree_of(item)
    root = tree[-1]
    (llo, lhi), (rlo, rhi) = tree[root[2]][:2], tree[root[3]][:2]
    game = random_game(d, seed=5, active=range(llo, lhi))

    # masks needed to expand every task of the left half (in contexts {} and the right half)
    need = {np.ones(d, bool).tobytes(), np.zeros(d, bool).tobytes(),
            span_mask(d, tree[root[2]]).tobytes(), span_mask(d, tree[root[3]]).tobytes()}

    def rec(node: int, ctx: np.ndarray) -> None:
        _, _, left, right = tree[node]
        if left < 0:
            return
        ml, mr = span_mask(d, tree[left], ctx), span_mask(d, tree[right], ctx)
        need.update([ml.tobytes(), mr.tobytes()])
        for child, c in ((left, ctx), (left, mr), (right, ctx), (right, ml)):
            rec(child, c)

    rec(root[2], np.zeros(d, bool))
    rec(root[2], span_mask(d, tree[root[3]]))
    budget = len(need)
    assert budget < 100  # a full expansion of the 16 units takes more

    (phi,), (info,), adapter = attribute(PartitionShap(max_evals=budget, batch_size=2),
                                         {"0": game}, [item])
    np.testing.assert_allclose(phi[0], exact_owen(game, tree, d), atol=1e-12, rtol=0)
    np.testing.assert_allclose(phi[0][rlo:rhi], 0.0, atol=1e-15)
    assert info["forwards"] == budget
    for call in adapter.calls:
        right = call["0"][:, rlo:rhi]
        assert (right.all(1) | ~right.any(1)).all(), "a mask splits the dummy half"


def test_partition_pops_tasks_in_order_of_their_value():
    """batch_size=2: one task per round, the one of largest |w (f(c+S) - f(c))| queued."""
    d = 12
    item = make_item(d)
    tree = tree_of(item)
    game = random_game(d, seed=11)
    (_,), _, adapter = attribute(PartitionShap(max_evals=40, batch_size=2), {"0": game}, [item])
    f = lambda m: float(game(m[None])[0, 0])
    # replay: the queue of tasks (node, context, weight) and the task split in each round
    assert len(adapter.calls) == 1 + (40 - 2) // 2
    queue = [(len(tree) - 1, np.zeros(d, bool), 1.0)]
    for call in adapter.calls[1:]:
        value = lambda t: abs(t[2] * (f(span_mask(d, tree[t[0]], t[1])) - f(t[1])))
        values = [value(t) for t in queue]
        node, ctx, w = queue.pop(values.index(max(values)))  # the first of equals
        _, _, left, right = tree[node]
        ml, mr = span_mask(d, tree[left], ctx), span_mask(d, tree[right], ctx)
        assert {m.tobytes() for m in call["0"]} == {ml.tobytes(), mr.tobytes()}
        children = [(left, ctx, w / 2), (left, mr, w / 2), (right, ctx, w / 2),
                    (right, ml, w / 2)]
        queue += [t for t in children if tree[t[0]][2] >= 0]


def test_partition_batches_rounds_across_examples_and_respects_the_budget():
    items = [make_item(d, str(k)) for k, d in enumerate((9, 14, 20))]
    games = {it.example_id: random_game(it.n_units, seed=k) for k, it in enumerate(items)}
    budget, batch = 60, 6
    scores, info, adapter = attribute(PartitionShap(max_evals=budget, batch_size=batch),
                                      games, items)
    assert len(adapter.calls[0]) == 3 and all(len(m) == 2 for m in adapter.calls[0].values())
    assert len(adapter.calls[1]) == 3  # every example's masks of a round in one call
    for it, phi, i in zip(items, scores, info):
        masks = [c[it.example_id] for c in adapter.calls if it.example_id in c]
        assert all(len(m) <= batch + 1 for m in masks[1:])
        rows = np.concatenate(masks)
        assert len(np.unique(rows, axis=0)) == len(rows)  # no mask scored twice
        assert i["forwards"] == len(rows) <= budget
        f_all, f_none = games[it.example_id](np.stack([np.ones(it.n_units, bool),
                                                        np.zeros(it.n_units, bool)]))[:, 0]
        assert phi.sum() == pytest.approx(f_all - f_none, abs=1e-12)  # efficiency


def test_partition_ties_are_deterministic_and_per_example():
    """An additive game with equal effects makes every queue key tie: the result depends on
    neither the run nor the other examples explained with it."""
    d = 13
    equal = sigmoid_game(np.full(d, 0.4), np.zeros((d, d)))
    items = [make_item(d, "a"), make_item(9, "b"), make_item(d, "c")]
    games = {"a": equal, "b": random_game(9, seed=2), "c": random_game(d, seed=4)}
    exp = PartitionShap(max_evals=30, batch_size=4)
    first, _, _ = attribute(exp, games, items)
    again, _, _ = attribute(exp, games, items)
    alone, _, _ = attribute(exp, {"a": equal}, items[:1])
    reordered, _, _ = attribute(exp, games, items[::-1])
    for k in range(3):
        assert np.array_equal(first[k], again[k])
        assert np.array_equal(first[k], reordered[2 - k])
    assert np.array_equal(first[0], alone[0])


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_partition_batch_size_must_be_a_positive_integer(value):
    with pytest.raises(fs.InputError, match="batch_size"):
        fs.make_explainer(("partition_shap", {"batch_size": value}))


def test_partition_on_a_model_records_forwards(linear_adapter):
    e = fs.explain(linear_adapter, [TEXT12], [("partition_shap", {"max_evals": 50})],
                   target_fn="logit")[0]
    assert e.params["batch_size"] == 10 and 0 < e.info["forwards"] <= 50


# ------------------------------------------------------------------------------ KernelSHAP
@pytest.mark.parametrize("n_samples", [6, 12])  # 12 >= n_units, but 6 pairs give rank <= 6
def test_kernel_shap_underdetermined_warns_and_records_rank(linear_adapter, n_samples, tmp_path):
    with pytest.warns(UserWarning, match=rf"n_samples={n_samples} .*n_units=12.*larger budget"):
        e = fs.explain(linear_adapter, [TEXT12], [("kernel_shap", {"n_samples": n_samples})],
                       target_fn="logit")[0]
    assert len(e.units) == 12
    assert e.info["underdetermined"] is True
    assert e.info["rank"] <= n_samples // 2 < 11
    check_round_trip([e], tmp_path / "e.json")  # the new info keys survive save/load


def test_kernel_shap_identified_regression_is_silent(linear_adapter):
    it = fs.prepare(linear_adapter, [TEXT12, "a fine film"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exps = fs.explain(linear_adapter, [TEXT12, "a fine film"],
                          [("kernel_shap", {"n_samples": 400})], target_fn="logit")
    for e, item in zip(exps, it):  # sampled (d = 12) and enumerated (d = 3)
        assert e.info == {**e.info, "rank": item.n_units - 1, "underdetermined": False}


def test_kernel_shap_rank_helper():
    Z, w = KernelShap(n_samples=8).coalitions(make_item(12))
    assert perturbation.constrained_rank(Z, w) <= 4  # 4 pairs
    full, w_full = KernelShap(n_samples=6).coalitions(make_item(3))  # enumerated
    assert perturbation.constrained_rank(full, w_full) == 2
    assert perturbation.constrained_rank(np.zeros((0, 1), bool), np.zeros(0)) == 0
    # the rank from the normal matrix is the weighted design's own (SVD of X sqrt(w)), on
    # designs from underdetermined to full
    for n in (8, 12, 16, 20, 22, 30, 400):
        for item in (make_item(12), make_item(5)):
            Z, w = KernelShap(n_samples=n).coalitions(item)
            Zf = Z.astype(float)
            X = (Zf[:, :-1] - Zf[:, -1:]) * np.sqrt(w)[:, None]
            assert perturbation.constrained_rank(Z, w) == np.linalg.matrix_rank(X), (n, item)


# ------------------------------------------------------------------------------------ LIME
def lime_reference(masks: np.ndarray, y: np.ndarray, alpha: float, kernel_width: float,
                   weighted: bool = True) -> np.ndarray:
    """LIME's fit, written independently: weights sqrt(exp(-D**2 / width**2)) with D = 100 x
    the cosine distance to the first row (the input), then Ridge(alpha) with an unpenalised
    intercept, solved from the normal equations of the uncentred problem."""
    X = masks.astype(np.float64)
    x0 = X[0]
    norms = np.linalg.norm(X, axis=1) * np.linalg.norm(x0)
    cos = np.where(norms > 0, X @ x0 / np.where(norms > 0, norms, 1.0), 0.0)
    D = 100.0 * (1.0 - cos)
    w = np.sqrt(np.exp(-(D**2) / kernel_width**2)) if weighted else np.ones(len(X))
    Xa = np.hstack([np.ones((len(X), 1)), X])
    P = alpha * np.eye(Xa.shape[1])
    P[0, 0] = 0.0
    beta = np.linalg.solve(Xa.T @ (w[:, None] * Xa) + P, Xa.T @ (w[:, None] * y))
    return beta[1:].T  # targets x units


LIME_D = 8
# a non-linear game: units 0-2 act together (an AND), unit 3 alone, unit 4 against unit 5
LIME_GAME: Game = lambda m: (2.0 * m[:, 0] * m[:, 1] * m[:, 2] + 0.5 * m[:, 3]
                             - 1.5 * m[:, 4] * ~m[:, 5] + 0.1 * m[:, 6])[:, None].astype(float)


def lime_error(lime: Lime) -> tuple[float, float]:
    """(max |explainer - weighted reference|, max |weighted - unweighted reference|)."""
    item = make_item(LIME_D, "lime")
    (coef,), _, _ = attribute(lime, {"lime": LIME_GAME}, [item])
    masks = lime.sample(item)  # the explainer's own seeded draws
    y = LIME_GAME(masks)
    ref = lime_reference(masks, y, lime.alpha, lime.kernel_width)
    flat = lime_reference(masks, y, lime.alpha, lime.kernel_width, weighted=False)
    return float(np.abs(coef - ref).max()), float(np.abs(ref - flat).max())


def test_lime_uses_lime_text_kernel():
    err, kernel_effect = lime_error(Lime(n_samples=400))
    assert err < 1e-9
    assert kernel_effect > 0.1  # the kernel matters on this game: the test can tell


def test_lime_kernel_test_fails_with_uniform_weights(monkeypatch):
    """The check above is sensitive to the kernel: with uniform weights it fails."""
    monkeypatch.setattr(perturbation, "lime_kernel", lambda masks, width: np.ones(len(masks)))
    err, _ = lime_error(Lime(n_samples=400))
    assert err > 0.1


@pytest.mark.parametrize("kernel_width", [5.0, 25.0, 100.0])
def test_lime_kernel_weights(kernel_width):
    """The helper against the closed form: k of d units present is at cosine similarity
    sqrt(k / d) to the input; the input weighs 1 and the empty mask sqrt(exp(-1e4 / w**2))."""
    d = 10
    masks = np.array([[True] * k + [False] * (d - k) for k in range(d, -1, -1)])
    w = perturbation.lime_kernel(masks, kernel_width)
    k = masks.sum(1)
    dist = 100.0 * (1.0 - np.sqrt(k / d))
    np.testing.assert_allclose(w, np.exp(-(dist**2) / (2 * kernel_width**2)), rtol=1e-12)
    assert w[0] == 1.0
    assert w[-1] == pytest.approx(math.sqrt(math.exp(-1e4 / kernel_width**2)), rel=1e-12)
    assert np.all(np.diff(w) < 0)  # fewer units present: farther, lighter
