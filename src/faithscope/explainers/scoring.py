"""The one perturb-and-score kernel: unit masks of many examples -> target values.

Every removal method (LIME, KernelSHAP, Shapley sampling, PartitionSHAP, leave-one-out, MExGen,
the removal metrics) hands :func:`score_masks` binary unit masks (True = unit present) of all
its examples at once. The kernel works on the masks of the whole call together, so its cost is
a few array operations per call and per distinct input length, not per example (PartitionSHAP
calls it once per round with about ten masks per example):

1. the masks go into one matrix, padded with absent units, plus an always-present column that
   tokens of no unit read; one sort of the rows, packed into 64-bit words and keyed by example,
   finds the distinct masks of each example (a mask repeated within an example runs once);
2. masks already scored in the enclosing :func:`~faithscope.explainers.reuse.shared_scores`
   scope are answered from it;
3. the rest become token ids: for the replacement operators (``mask``, ``pad``, ``unk``), one
   gather per input length (token ``j`` of an example reads its unit's column, a removed token
   becomes the replacement id); for ``delete``, per example, rows grouped by kept length;
4. one virtual batch through the adapter (its chunker sorts by length and backs off on OOM);
5. the target function runs once over every distinct row of the call, and each example gets
   its rows back in the order it asked.

Example
-------
>>> import numpy as np
>>> from faithscope.explainers.prepare import prepare
>>> from faithscope.models.tiny import tiny_classifier
>>> from faithscope.targets import get_target
>>> model = tiny_classifier()
>>> items = prepare(model, ["a fine film", "dull"])
>>> masks = [np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool), np.array([[0]], bool)]
>>> vals = score_masks(model, items, masks, get_target("prob"))
>>> [v.shape for v in vals], bool(vals[0][0, 0] == vals[0][2, 0])
([(3, 1), (1, 1)], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..models.adapter import InputError
from ..targets import TargetFn
from . import reuse

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

OPERATORS = ("mask", "pad", "unk", "delete")


def target_values(logits: np.ndarray, targets: Sequence[int], target_fn: TargetFn) -> np.ndarray:
    """``target_fn`` of every row for every target: float64 (rows x targets)."""
    idx = np.broadcast_to(np.asarray(targets, dtype=np.int64), (len(logits), len(targets)))
    return _values(logits, idx, target_fn)


def class_values(logits: np.ndarray, classes: np.ndarray, target_fn: TargetFn) -> np.ndarray:
    """``target_fn`` of row ``r`` for class ``classes[r]``: float64 (rows,)."""
    return _values(logits, np.asarray(classes, dtype=np.int64).reshape(-1, 1), target_fn)[:, 0]


def _values(logits: np.ndarray, idx: np.ndarray, target_fn: TargetFn) -> np.ndarray:
    """``target_fn`` of row ``r`` for class ``idx[r, t]``: float64 (rows x targets)."""
    lt = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    cols = [target_fn(lt, torch.from_numpy(np.array(idx[:, t], dtype=np.int64))).double().numpy()
            for t in range(idx.shape[1])]
    return np.stack(cols, axis=1) if cols else np.zeros((len(logits), 0))


def _packed_words(m: np.ndarray) -> np.ndarray:
    """Rows of a boolean matrix as big-endian 64-bit words (they compare as the rows do)."""
    n = len(m)
    packed = np.packbits(m, axis=1)  # first column in the highest bit: byte order = row order
    words = max(1, -(-packed.shape[1] // 8))
    buf = np.zeros((n, words * 8), dtype=np.uint8)
    buf[:, : packed.shape[1]] = packed
    return buf.view(">u8").astype(np.uint64)


def unique_rows(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a boolean matrix and each row's index among them: the same rows, in
    the same (lexicographic) order, as ``np.unique(masks, axis=0, return_inverse=True)``, from
    one sort of the rows packed into 64-bit words (numpy's ``axis=0`` path sorts a structured
    view of the rows, several times slower).

    >>> unique_rows(np.array([[1, 0], [0, 1], [1, 0]], dtype=bool))[1].tolist()
    [1, 0, 1]
    """
    m = np.asarray(masks, dtype=bool)
    n, d = m.shape
    if n == 0 or d == 0:
        return m[:1], np.zeros(n, dtype=np.intp)
    first, inverse = _distinct(_packed_words(m), np.zeros(n, dtype=np.intp))
    return m[first], inverse


def _distinct(words: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (owner, row) pairs, sorted by owner then row: the first row index of each, and
    each row's index among them."""
    order = np.lexsort((*words.T[::-1], owner))
    ow, wd = owner[order], words[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (ow[1:] != ow[:-1]) | (wd[1:] != wd[:-1]).any(axis=1)
    inverse = np.empty(len(order), dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return order[first], inverse


def score_masks(
    adapter: Any,
    items: Sequence[Any],
    masks: Sequence[np.ndarray],
    target_fn: TargetFn,
    *,
    operator: str = "mask",
) -> list[np.ndarray]:
    """Score unit masks (True = present) of many examples in one virtual batch.

    Returns, per example, ``target_fn`` values (float64, rows x targets). Identical masks of an
    example are run once. An ``adapter`` with its own ``score_unit_masks`` (a generative model
    with a scalarizer, :class:`~faithscope.generation.explain.ScalarizedLM`) scores them itself.
    """
    own = getattr(adapter, "score_unit_masks", None)
    if own is not None:
        return own(items, masks)
    if operator not in OPERATORS:
        raise InputError(f"mask operator must be one of {OPERATORS}, got {operator!r}")
    if not items:
        return []
    ms = [np.asarray(m, dtype=bool).reshape(-1, it.n_units)
          for it, m in zip(items, masks, strict=True)]
    sizes = np.array([len(m) for m in ms], dtype=np.intp)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    n_cols = max(m.shape[1] for m in ms)
    # every mask of the call, padded with absent units; the last column (always present) is
    # what tokens of no unit read: their token_unit, -1, indexes it
    wide = np.zeros((int(bounds[-1]), n_cols + 1), dtype=bool)
    for m, a in zip(ms, bounds[:-1].tolist(), strict=True):
        wide[a : a + len(m), : m.shape[1]] = m
    wide[:, n_cols] = True
    owner = np.repeat(np.arange(len(items)), sizes)
    words = _packed_words(wide[:, :n_cols])
    uniq, inverse = _distinct(words, owner)  # distinct masks, grouped by example
    u_owner = owner[uniq]
    logits = np.zeros((len(uniq), adapter.num_labels), dtype=np.float32)
    known, keys, tables = _recall(items, operator, words, uniq, u_owner, logits)
    todo = np.flatnonzero(~known)
    if len(todo):
        replacement = (-1 if operator == "delete"
                       else adapter.token_id(operator, replacing=True))
        order, blocks = (_delete_blocks(items, wide, uniq, u_owner, todo) if operator == "delete"
                         else _replace_blocks(items, wide, uniq, u_owner, todo, replacement))
        types = [t for _, t in blocks if t is not None]
        ran = adapter.logits([b for b, _ in blocks],
                             types if len(types) == len(blocks) else None)
        logits[order] = np.concatenate(ran)
        if tables is not None:
            assert keys is not None
            owners = u_owner.tolist()
            for j in todo.tolist():
                tables[owners[j]][keys[j]] = logits[j]
    return _per_example(items, logits, u_owner, inverse, bounds, target_fn)


def mask_keys(masks: np.ndarray) -> list[Any]:
    """One hashable key per row of a boolean mask matrix: for up to 64 units an integer (the
    row's bits; one array operation for all rows), beyond that the bytes of its packed words.
    The keys of a row are the same whatever matrix it comes from, as long as the columns are
    the same units (padding with absent units on the right changes nothing)."""
    return _keys(_packed_words(np.asarray(masks, dtype=bool)), masks.shape[1])


def _keys(words: np.ndarray, n_units: int) -> list[Any]:
    if n_units <= 64:
        return words[:, 0].tolist()
    nw = -(-n_units // 64)
    return [row.tobytes() for row in words[:, :nw]]


def _recall(items: Sequence[Any], operator: str, words: np.ndarray, uniq: np.ndarray,
            u_owner: np.ndarray, logits: np.ndarray
            ) -> tuple[np.ndarray, list[Any] | None, list[dict[Any, np.ndarray]] | None]:
    """Which distinct masks the active shared-scores scope already holds (their logits are
    written into ``logits``); the masks' keys and the examples' tables, to add the new ones."""
    cache = reuse.active()
    if cache is None:
        return np.zeros(len(uniq), dtype=bool), None, None
    tables = [cache.store(it, operator) for it in items]
    cuts = np.searchsorted(u_owner, np.arange(len(items) + 1)).tolist()
    known = np.zeros(len(uniq), dtype=bool)
    keys: list[Any] = []
    for o, it in enumerate(items):
        a, b = cuts[o], cuts[o + 1]
        if a == b:
            continue
        k = _keys(words[uniq[a:b]], it.n_units)
        keys += k
        table = tables[o]
        hits = [table.get(key) for key in k]
        found = [j for j, h in enumerate(hits) if h is not None]
        if found:
            known[a:b][found] = True
            logits[a:b][found] = [hits[j] for j in found]
            cache.hits[id(it)] = cache.hits.get(id(it), 0) + len(found)
    return known, keys, tables


BUCKET_TOKENS = 1 << 22  # a bucket of rows padded to its longest: at most this many tokens


def _buckets(lengths: np.ndarray) -> list[tuple[int, int]]:
    """Ranges of rows (``lengths`` ascending) built together, padded to their longest: a range
    closes before a length above twice its first, or before it would hold more than
    :data:`BUCKET_TOKENS` padded tokens; so the padding built (then cut off) never exceeds
    the real tokens and memory stays bounded, while a call has few ranges, not one per
    length."""
    if not len(lengths):
        return []
    values, starts = np.unique(lengths, return_index=True)
    ends = [*starts[1:].tolist(), len(lengths)]
    out, a = [], 0
    for length, start, end in zip(values.tolist(), starts.tolist(), ends, strict=True):
        if start > a and (length > 2 * int(lengths[a]) or (end - a) * length > BUCKET_TOKENS):
            out.append((a, start))
            a = start
    return [*out, (a, len(lengths))]


def _padded(arrays: list[np.ndarray], width: int, fill: int, dtype: type = np.int64
            ) -> np.ndarray:
    """Rows of different lengths in one matrix, right-padded with ``fill``."""
    lens = np.array([len(x) for x in arrays], dtype=np.intp)
    out: np.ndarray = np.full((len(arrays), width), fill, dtype=dtype)
    out[np.arange(width)[None, :] < lens[:, None]] = np.concatenate(arrays)
    return out


def _replace_blocks(items: Sequence[Any], wide: np.ndarray, uniq: np.ndarray,
                    u_owner: np.ndarray, todo: np.ndarray, replacement: int
                    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray | None]]]:
    """Token ids of the masks to run: each token reads its unit's column of the mask (tokens
    of no unit, -1, the always-present last column), a removed token becomes
    ``replacement``. Rows are built per bucket of similar lengths (:func:`_buckets`), then cut
    into one block per exact length. Returns the distinct-mask index of each block row, in
    block order, and the (ids, segment ids) blocks."""
    lengths = np.array([len(it.enc) for it in items], dtype=np.intp)
    row_len = lengths[u_owner[todo]]
    srt = np.argsort(row_len, kind="stable")
    order, sl = todo[srt], row_len[srt]
    blocks: list[tuple[np.ndarray, np.ndarray | None]] = []
    for a, b in _buckets(sl):
        rows = order[a:b]
        members, local = np.unique(u_owner[rows], return_inverse=True)
        group = [items[i] for i in members.tolist()]
        width = int(sl[b - 1])
        token_unit = _padded([it.token_unit for it in group], width, -1, np.int32)[local]
        removed = ~np.take_along_axis(wide[uniq[rows]], token_unit, axis=1)
        del token_unit
        ids = _padded([it.enc.ids for it in group], width, 0)[local]  # a fresh copy
        ids[removed] = replacement
        types = (None if any(it.enc.type_ids is None for it in group)
                 else _padded([it.enc.type_ids for it in group], width, 0)[local])
        cuts = [0, *(np.flatnonzero(np.diff(sl[a:b])) + 1).tolist(), b - a]
        for c, d in zip(cuts[:-1], cuts[1:], strict=True):
            n = int(sl[a + c])
            blocks.append((ids[c:d, :n], None if types is None else types[c:d, :n]))
    return order, blocks


def _delete_blocks(items: Sequence[Any], wide: np.ndarray, uniq: np.ndarray,
                   u_owner: np.ndarray, todo: np.ndarray
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray | None]]]:
    """Per example, rows grouped by the number of tokens they keep (removed tokens are cut
    out). Returns the distinct-mask index of each block row, in block order, and the blocks."""
    order_parts, blocks = [], []
    cuts = np.searchsorted(u_owner[todo], np.arange(len(items) + 1))
    for i, it in enumerate(items):
        rows = todo[cuts[i] : cuts[i + 1]]
        if not len(rows):
            continue
        enc = it.enc
        keep = np.take_along_axis(wide[uniq[rows]], np.broadcast_to(
            it.token_unit, (len(rows), len(enc))), axis=1)
        counts = keep.sum(axis=1)
        by_count = np.argsort(counts, kind="stable")
        ids = np.broadcast_to(enc.ids, keep.shape)
        types = None if enc.type_ids is None else np.broadcast_to(enc.type_ids, keep.shape)
        for c in np.unique(counts).tolist():
            sel_rows = by_count[counts[by_count] == c]
            sel = keep[sel_rows]
            blocks.append((ids[sel_rows][sel].reshape(len(sel_rows), c),
                           None if types is None
                           else types[sel_rows][sel].reshape(len(sel_rows), c)))
            order_parts.append(rows[sel_rows])
    return np.concatenate(order_parts), blocks


def _per_example(items: Sequence[Any], logits: np.ndarray, u_owner: np.ndarray,
                 inverse: np.ndarray, bounds: np.ndarray, target_fn: TargetFn
                 ) -> list[np.ndarray]:
    """Target values of every distinct mask in one call of ``target_fn`` (per target column),
    then each example's rows in the order it asked."""
    n_targets = {len(it.targets) for it in items}
    cuts = bounds.tolist()
    if len(n_targets) == 1:
        tg = np.array([it.targets for it in items], dtype=np.int64).reshape(len(items), -1)
        vals = _values(logits, tg[u_owner], target_fn)[inverse]
        return [vals[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    out = []
    for i, it in enumerate(items):
        rows = inverse[cuts[i] : cuts[i + 1]]
        out.append(target_values(logits[rows], it.targets, target_fn))
    return out
