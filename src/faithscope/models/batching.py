"""The one batching kernel every adapter shares: length-sorted chunks with OOM back-off.

Callers hand a virtual batch (row indices in the order to run, usually sorted by length) and a
function that runs one chunk of rows; :meth:`Chunked.run_chunks` runs chunks of at most the current
batch size and, on a CUDA out-of-memory error, halves the batch size and retries the same chunk
without losing finished ones. The reduced size is kept for later calls.

Example
-------
>>> import numpy as np
>>> class Runner(Chunked):
...     def __init__(self):
...         self._batch, self.stats, self.seen = 2, AdapterStats(), []
>>> r = Runner()
>>> r.run_chunks(r.plan_chunks(np.array([3, 1, 2])), lambda rows: r.seen.append(rows.tolist()))
>>> r.seen, r.stats.chunks
([[1, 2], [0]], 2)
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._lazy import lazy_import

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


def seed_torch(seed: int) -> None:
    """Seed torch's random generators as ``torch.manual_seed(seed)`` does for the devices this
    package runs on (the CPU, every CUDA device, Apple's MPS), without its cost of about
    0.2 ms per call on a machine without those accelerators (it queues a lazy seed, with a
    formatted stack trace, for each uninitialised backend). Explaining seeds before every
    explainer of every group, so one call per input would pay it each time.

    >>> seed_torch(3); a = torch.rand(2)
    >>> torch.manual_seed(3); bool((torch.rand(2) == a).all())  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    True
    """
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if torch.backends.mps.is_available():
        torch.mps.manual_seed(seed)


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


PAD_SLACK = 0.1  # on the CPU a chunk stops at rows more than 10 % longer than its first ...
MIN_CHUNK = 8  # ... once it has this many rows
WARN_SECONDS = 600.0  # a call estimated to run longer than this warns after its first chunk


# default chunk sizes (see default_batch_size): on a CPU about this many parameter-rows per chunk
# (MiniLM-L6, 11M parameters past its embeddings: 128 rows, as fast as any size measured on a
# 2-core CPU; a one-layer toy model: 1024, where per-chunk overhead would dominate), and at
# most this many bytes of activations; on a GPU half of its free memory
CPU_PARAM_ROWS = 2e9
CPU_ACTIVATION_BYTES = 4 * 2**30
CPU_ROWS = (32, 1024)
GPU_MAX_ROWS = 4096


def default_batch_size(*, device_type: str, n_params: int, hidden: int, layers: int,
                       free_bytes: int | None = None, dtype_bytes: int = 4,
                       tokens: int = 128) -> int:
    """The default ``max_batch_size``: a power of two from the device and the model's size.

    ``n_params``: parameters past the input embeddings (what each token's compute scales
    with); ``hidden``, ``layers``: the model's width and depth; ``free_bytes``: free memory of
    the GPU (``torch.cuda.mem_get_info``); ``tokens``: the row length planned for. A row is
    taken to hold ``24 x layers x tokens x hidden`` activations of ``dtype_bytes`` (enough for
    a backward pass, the gradient explainers'). On a GPU (``device_type`` "cuda" with
    ``free_bytes``), rows fill half the free memory, at most 4096; elsewhere,
    ``CPU_PARAM_ROWS / n_params`` rows (compute per chunk large against its fixed overhead),
    between 32 and 1024, and never more activations than ``CPU_ACTIVATION_BYTES``. The
    adapter's out-of-memory back-off covers what this estimate misses.

    >>> default_batch_size(device_type="cuda", n_params=11_000_000, hidden=384, layers=6,
    ...                    free_bytes=79 * 2**30, dtype_bytes=2)      # MiniLM-L6, H100, fp16
    2048
    >>> default_batch_size(device_type="cpu", n_params=11_000_000, hidden=384, layers=6)
    128
    """
    per_row = max(24 * layers * tokens * hidden * dtype_bytes, 1)
    if device_type == "cuda" and free_bytes is not None:
        return min(GPU_MAX_ROWS, _pow2(free_bytes / 2 / per_row))
    lo, hi = CPU_ROWS
    rows = min(hi, max(lo, _pow2(CPU_PARAM_ROWS / max(n_params, 1))))
    return max(1, min(rows, _pow2(CPU_ACTIVATION_BYTES / per_row)))


def _pow2(x: float) -> int:
    """The largest power of two <= x (1 below 2)."""
    return 1 << max(int(x), 1).bit_length() - 1


def resolve_batch_size(model: object, *, tokens: int = 128) -> int:
    """:func:`default_batch_size` for a loaded torch model: its device (and the GPU's free
    memory), its parameters past the input embeddings, width and depth from its config."""
    params = list(model.parameters())  # type: ignore[attr-defined]
    total = sum(p.numel() for p in params)
    get_emb = getattr(model, "get_input_embeddings", None)
    emb = get_emb() if callable(get_emb) else None
    weight = getattr(emb, "weight", None)
    n = total - (weight.numel() if weight is not None else 0)
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    hidden = _first_int(cfg, ("hidden_size", "d_model", "n_embd", "dim"), 768)
    layers = _first_int(cfg, ("num_hidden_layers", "num_layers", "n_layer", "n_layers"), 12)
    device = params[0].device if params else torch.device("cpu")
    free = None
    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
    return default_batch_size(device_type=device.type, n_params=n, hidden=hidden,
                              layers=layers, free_bytes=free,
                              dtype_bytes=params[0].element_size() if params else 4,
                              tokens=tokens)


def _first_int(cfg: object, names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


@dataclass
class AdapterStats:
    """Counters the benchmarks read: rows run forward, rows run forward+backward, chunks."""

    forward_rows: int = 0
    backward_rows: int = 0
    chunks: int = 0
    oom_retries: int = 0


class RowBlocks:
    """Blocks of rows (each ``rows x length``, rows of one block share a length) viewed in the
    order they run: stably sorted by length, so every block occupies consecutive positions of
    that order and a chunk (a range of positions) is assembled from slices of a few blocks.
    Nothing is stacked: the padded matrix of a chunk is built when the chunk runs.

    >>> rb = RowBlocks([np.array([[5, 6, 7]]), np.array([[1, 2], [3, 4]])], pad=0)
    >>> rb.lengths.tolist(), rb.rows(0, 3).tolist()
    ([2, 2, 3], [[1, 2, 0], [3, 4, 0], [5, 6, 7]])
    >>> rb.restore(np.arange(3)).tolist()  # values in run order -> block order
    [2, 0, 1]
    """

    def __init__(self, blocks: Sequence[np.ndarray], *, pad: int) -> None:
        self.blocks = [np.asarray(b).reshape(len(b), -1) for b in blocks]
        self.pad = pad
        sizes = np.array([len(b) for b in self.blocks], dtype=np.int64)
        widths = np.array([b.shape[1] for b in self.blocks], dtype=np.int64)
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # blocks in run order: by length, then by position (what a stable sort of rows gives)
        self.block_order = np.lexsort((np.arange(len(sizes)), widths))
        start = np.zeros(len(sizes), dtype=np.int64)
        start[self.block_order] = np.concatenate(
            [[0], np.cumsum(sizes[self.block_order])[:-1]]) if len(sizes) else []
        self.start = start  # run position of each block's first row
        self.lengths = np.repeat(widths[self.block_order], sizes[self.block_order])
        self._starts_sorted = start[self.block_order]

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def rows(self, a: int, b: int, width: int | None = None) -> np.ndarray:
        """Rows at run positions ``a:b``, right-padded to ``width`` (default: their longest)."""
        width = int(self.lengths[a:b].max()) if width is None else width
        k = int(np.searchsorted(self._starts_sorted, a, side="right")) - 1
        blk = self.blocks[self.block_order[k]]
        s = int(self._starts_sorted[k])
        if b <= s + len(blk) and blk.shape[1] == width and blk.dtype == np.int64 \
                and blk.flags.c_contiguous and blk.flags.writeable:
            return blk[a - s : b - s]  # the chunk is a slice of one block: no copy
        out = np.full((b - a, width), self.pad, dtype=np.int64)
        while k < len(self.block_order) and self._starts_sorted[k] < b:
            blk = self.blocks[self.block_order[k]]
            s = int(self._starts_sorted[k])
            lo, hi = max(a, s), min(b, s + len(blk))
            if hi > lo:
                out[lo - a : hi - a, : blk.shape[1]] = blk[lo - s : hi - s]
            k += 1
        return out

    def restore(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one row per run position) back in block order."""
        out = np.empty_like(values)
        for j, blk in enumerate(self.blocks):
            s = int(self.start[j])
            out[self.bounds[j] : self.bounds[j] + len(blk)] = values[s : s + len(blk)]
        return out


class Chunked:
    """Mixin: ``self._batch`` (current chunk size) and ``self.stats`` must exist."""

    _batch: int
    stats: AdapterStats

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the model and its tokenizer as a Hugging Face checkpoint folder (what
        ``load_model`` / ``load_generative`` read back); returns the folder."""
        out = os.fspath(path)
        getattr(self, "model").save_pretrained(out)  # noqa: B009  (fields of the subclasses)
        getattr(self, "tokenizer").save_pretrained(out)  # noqa: B009
        return out

    def plan_chunks(self, lengths: np.ndarray) -> np.ndarray:
        return np.argsort(lengths, kind="stable")

    def chunk_end(self, order: np.ndarray, i: int, size: int,
                  lengths: np.ndarray | None, *, on_cpu: bool) -> int:
        """Where the chunk starting at ``order[i]`` ends: ``size`` rows, or on the CPU (where
        every padded token costs as much as a real one) earlier, at the first row longer than
        ``1 + PAD_SLACK`` times the chunk's first row once it holds ``MIN_CHUNK`` rows: rows of
        different inputs then do not pad each other, so one call over many inputs costs no more
        than one call per input. ``lengths``: each row's length, ``order`` ascending in it;
        ``on_cpu``: whether the model runs on the CPU (asked once per call by :meth:`run_chunks`)."""
        end = min(i + size, len(order))
        if lengths is None or end - i <= MIN_CHUNK or not on_cpu:
            return end
        ls = lengths[order[i:end]]
        over = np.flatnonzero(ls[MIN_CHUNK:] > ls[0] * (1 + PAD_SLACK))
        return i + MIN_CHUNK + int(over[0]) if len(over) else end

    def run_chunks(self, order: np.ndarray, run: Callable[[np.ndarray], None], *,
                   lengths: np.ndarray | None = None) -> None:
        """Run ``run(rows)`` over chunks of ``order``; halve the chunk on CUDA OOM and retry.
        With ``lengths`` (``order`` ascending in them) a CPU chunk ends where padding would
        grow (:meth:`chunk_end`).

        After the first chunk of a call that has more, the time of the whole call is estimated
        from it; above ``warn_seconds`` (an adapter attribute, default :data:`WARN_SECONDS`;
        None: never) one warning says how many rows the call runs and about how long it will
        take, before the rest runs (lower the explainer's budget, or use a GPU)."""
        i = 0
        t0 = time.perf_counter()
        limit = getattr(self, "warn_seconds", WARN_SECONDS)
        on_cpu = getattr(getattr(self, "device", None), "type", "cpu") == "cpu"
        while i < len(order):
            size = self._batch
            rows = order[i : self.chunk_end(order, i, size, lengths, on_cpu=on_cpu)]
            try:
                run(rows)
                if i == 0 and limit is not None and len(rows) < len(order):
                    took = time.perf_counter() - t0
                    estimate = took * len(order) / len(rows)
                    if estimate > limit:
                        warnings.warn(
                            f"{len(order)} model rows in this call: about {estimate:.0f} s at "
                            f"the rate of its first chunk ({len(rows) / max(took, 1e-9):.0f} "
                            f"rows/s), above {limit:.0f} s; lower the explainer's budget "
                            "(samples, steps, examples) or use a GPU", stacklevel=3)
            except Exception as err:
                if not _is_oom(err) or size == 1:
                    raise
                self._batch = max(1, size // 2)
                self.stats.oom_retries += 1
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            self.stats.chunks += 1
            i += len(rows)

    def _path_gradients(
        self,
        rows: Sequence[tuple[int, int, int]] | np.ndarray,
        lengths: np.ndarray,
        weights: Sequence[float],
        grads: list[torch.Tensor],
        build: Callable[[np.ndarray], tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]],
        values: list[np.ndarray] | None = None,
    ) -> None:
        """The one gradient kernel of every adapter (gradient, gradient x input, Integrated
        Gradients; classifiers and generated text alike).

        ``rows`` are (example, target, step) triples (an int array, rows x 3, or a sequence of
        triples) run as one virtual batch (chunks sorted by ``lengths``, OOM back-off). For a
        chunk, ``build(rows)`` (the chunk's rows x 3 array) returns the input embeddings ``z``
        (rows x length x hidden, at the step's point of the path) and a function of ``z``
        giving one differentiable value per row; ``weights[step] * d value / d z`` is added to
        ``grads[example][target]`` (its first positions) and, with ``values``, the value is kept
        in ``values[example][target, step]``.
        """
        table = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        step_weights = np.asarray(weights, dtype=np.float32)

        def run(idx: np.ndarray) -> None:
            chosen = table[idx]
            z, value_of = build(chosen)
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                val = value_of(z)
                (g,) = torch.autograd.grad(val.sum(), z)
            v = val.detach().float().cpu().numpy()
            # consecutive rows of one (example, target) are summed with their step weights
            # first; the in-place adds after that allocate nothing, so an OOM cannot strike
            # half-way through them
            w = torch.from_numpy(step_weights[chosen[:, 2]]).to(g.device).view(-1, 1, 1)
            weighted = g.float() * w
            ex, tk, steps = chosen[:, 0], chosen[:, 1], chosen[:, 2]
            new = np.ones(len(chosen), dtype=bool)
            new[1:] = (ex[1:] != ex[:-1]) | (tk[1:] != tk[:-1])
            starts = np.flatnonzero(new).tolist()
            ends = [*starts[1:], len(chosen)]
            pairs = [(int(ex[a]), int(tk[a])) for a in starts]
            sums = [weighted[a:b, : grads[e].shape[1]].sum(0)
                    for a, b, (e, _) in zip(starts, ends, pairs, strict=True)]
            for a, b, (e, k), total in zip(starts, ends, pairs, sums, strict=True):
                grads[e][k].add_(total.to(grads[e].dtype))
                if values is not None:
                    values[e][k, steps[a:b]] = v[a:b]
            self.stats.backward_rows += len(idx)

        self.run_chunks(self.plan_chunks(lengths), run, lengths=lengths)
