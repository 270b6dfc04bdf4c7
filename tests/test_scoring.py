"""The one perturb-and-score kernel (``explainers/scoring.py``), vectorised over the examples of
a call, against a reference written here from the definition: for every mask of every example,
build the token ids one row at a time (a removed unit's tokens become the replacement id, or
are cut out for ``delete``), run the model on that row alone and apply the target function.
Also: mask keys for the shared-scores scope are the same whatever the call's widest example
(more or fewer than 64 units), and PartitionSHAP's integer-mask bookkeeping gives the exact Owen
values of an additive game and of a game with interactions (hand-computable cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faithscope.explainers import score_masks
from faithscope.explainers.partition import _State, cluster_units
from faithscope.explainers.prepare import prepare
from faithscope.explainers.reuse import shared_scores
from faithscope.explainers.scoring import class_values, mask_keys, target_values
from faithscope.models.tiny import tiny_classifier
from faithscope.targets import get_target
from helpers import PAIR, SENTENCES


def _reference(adapter, item, masks, target_fn, operator):
    """One row at a time, from the definition."""
    enc = item.enc
    repl = None if operator == "delete" else adapter.token_id(operator, replacing=True)
    out = []
    for m in masks:
        keep = np.array([True if u < 0 else bool(m[u]) for u in item.token_unit])
        if operator == "delete":
            ids = enc.ids[keep]
            types = None if enc.type_ids is None else enc.type_ids[keep]
        else:
            ids = np.where(keep, enc.ids, repl)
            types = enc.type_ids
        inputs = {"input_ids": torch.tensor(ids[None]),
                  "attention_mask": torch.ones((1, len(ids)), dtype=torch.long)}
        if types is not None:
            inputs["token_type_ids"] = torch.tensor(types[None])
        with torch.inference_mode():
            logits = adapter.model(**inputs).logits.float().numpy()
        out.append(target_values(logits, item.targets, target_fn)[0])
    return np.array(out).reshape(len(masks), len(item.targets))


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


@pytest.mark.parametrize("operator", ["mask", "pad", "delete"])
def test_vectorised_kernel_equals_row_by_row_reference(model, operator):
    long = " ".join(["a"] * 100)  # 100 units: keys of several 64-bit words
    inputs = [*SENTENCES[:3], PAIR, long, "ok"]
    items = prepare(model, inputs, target=None)
    assert items[-2].n_units == 100
    rng = np.random.default_rng(1)
    masks = []
    for it in items:
        m = rng.random((7, it.n_units)) < 0.6
        m[5] = m[1]  # a repeated mask
        masks.append(m)
    masks[-1] = masks[-1][:0]  # an example with no masks
    fn = get_target("log_prob")
    got = score_masks(model, items, masks, fn, operator=operator)
    for it, m, g in zip(items, masks, got, strict=True):
        assert g.shape == (len(m), len(it.targets)) and g.dtype == np.float64
        np.testing.assert_allclose(g, _reference(model, it, m, fn, operator), atol=2e-5)
        if len(m):
            assert np.array_equal(g[5], g[1])


def test_examples_with_different_numbers_of_targets(model):
    items = prepare(model, SENTENCES[:2], target=[0, 1]) + prepare(model, SENTENCES[2:4])
    rng = np.random.default_rng(2)
    masks = [rng.random((5, it.n_units)) < 0.5 for it in items]
    fn = get_target("prob")
    together = score_masks(model, items, masks, fn)
    for it, m, g in zip(items, masks, together, strict=True):
        np.testing.assert_allclose(g, _reference(model, it, m, fn, "mask"), atol=2e-6)


def test_a_call_does_not_change_an_examples_values(model):
    """Batch invariance: the values of an example do not depend on the others of the call."""
    items = prepare(model, [*SENTENCES, PAIR])
    rng = np.random.default_rng(3)
    masks = [rng.random((9, it.n_units)) < 0.5 for it in items]
    fn = get_target("prob")
    together = score_masks(model, items, masks, fn)
    for i, it in enumerate(items):
        alone = score_masks(model, [it], [masks[i]], fn)[0]
        np.testing.assert_allclose(together[i], alone, atol=1e-6)


def test_mask_keys_do_not_depend_on_padding():
    rng = np.random.default_rng(4)
    for d in (3, 64, 65, 130):
        m = rng.random((20, d)) < 0.5
        wide = np.hstack([m, np.zeros((20, 70), bool)])
        keys = mask_keys(m)
        assert len(set(keys)) == len({r.tobytes() for r in m})
        if d <= 64:
            assert keys == mask_keys(wide[:, :64])
            assert all(isinstance(k, int) for k in keys)


def test_shared_scope_answers_masks_across_calls_of_different_widths(model):
    long = " ".join(["a"] * 100)
    short, wide = prepare(model, [SENTENCES[0]]), prepare(model, [SENTENCES[0], long])
    assert wide[1].n_units > 64
    it = short[0]
    fn = get_target("prob")
    m = np.ones((2, it.n_units), bool)
    m[1, 0] = False
    with shared_scores() as cache:
        first = score_masks(model, [it], [m], fn)[0]
        # the same example again, now next to one of more than 64 units
        again = score_masks(model, [it, wide[1]], [m, np.ones((1, wide[1].n_units), bool)],
                            fn)[0]
        assert cache.reused(it) == 2
    np.testing.assert_array_equal(first, again)


class _Game:
    """A cooperative game on unit masks for ``_State``: v(S) = sum of weights of S plus a
    bonus when units 0 and 1 are both present."""

    def __init__(self, weights, bonus):
        self.w, self.bonus = np.asarray(weights, float), bonus

    def __call__(self, masks):
        m = masks.astype(float)
        return (m @ self.w + self.bonus * m[:, 0] * m[:, 1])[:, None]


@pytest.mark.parametrize("bonus", [0.0, 0.9])
def test_partition_bookkeeping_gives_exact_owen_values(bonus):
    """Units [a b | c d] (the tree groups a with b): with the whole budget the result is the
    Owen value; the a-b bonus is inside one coalition, so a and b split it equally, and an
    additive game gives its weights."""
    from types import SimpleNamespace as NS

    texts = ["a", "b", ".", "c"]
    tree = cluster_units(texts)
    game = _Game([0.5, -0.25, 0.125, 2.0], bonus)
    st = _State(NS(n_units=4, targets=(0,)), tree, budget=10_000, batch_size=4)
    st.store(list(st.want), game(st.as_matrix(list(st.want))))
    st.start()
    while st.pop_batch():
        st.store(list(st.want), game(st.as_matrix(list(st.want))))
        st.settle()
    phi = st.finish()[0]
    np.testing.assert_allclose(phi, [0.5 + bonus / 2, -0.25 + bonus / 2, 0.125, 2.0],
                               atol=1e-12)
    assert phi.sum() == pytest.approx(game(np.ones((1, 4), bool))[0, 0])


def test_buckets_cover_the_rows_and_bound_padding():
    from faithscope.explainers import scoring

    rng = np.random.default_rng(5)
    lengths = np.sort(rng.integers(3, 300, size=2000))
    ranges = scoring._buckets(lengths)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(lengths)
    assert all(b == c for (_, b), (c, _) in zip(ranges[:-1], ranges[1:], strict=True))
    for a, b in ranges:
        assert lengths[b - 1] <= 2 * lengths[a]  # padding never above the real tokens
        one_length = lengths[a] == lengths[b - 1]
        assert one_length or (b - a) * lengths[b - 1] <= scoring.BUCKET_TOKENS
    assert scoring._buckets(np.array([], dtype=int)) == []
    assert scoring._buckets(np.array([5, 5, 6, 9])) == [(0, 4)]


@pytest.mark.parametrize("name", ["prob", "logit", "log_prob", "contrast"])
def test_class_values_picks_each_rows_class(name):
    """Row r's value for class classes[r], as computed one row at a time by hand."""
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    classes = np.array([0, 2, 1])
    got = class_values(logits, classes, get_target(name))
    for r, c in enumerate(classes):
        x = logits[r].astype(np.float64)
        p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
        others = np.delete(x, c)
        want = {"prob": p[c], "logit": x[c], "log_prob": np.log(p[c]),
                "contrast": x[c] - np.log(np.exp(others).sum())}[name]
        assert got[r] == pytest.approx(want, rel=1e-6)
