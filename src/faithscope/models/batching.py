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


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


WARN_SECONDS = 600.0  # a call estimated to run longer than this warns after its first chunk


@dataclass
class AdapterStats:
    """Counters the benchmarks read: rows run forward, rows run forward+backward, chunks."""

    forward_rows: int = 0
    backward_rows: int = 0
    chunks: int = 0
    oom_retries: int = 0


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

    def run_chunks(self, order: np.ndarray, run: Callable[[np.ndarray], None]) -> None:
        """Run ``run(rows)`` over chunks of ``order``; halve the chunk on CUDA OOM and retry.

        After the first chunk of a call that has more, the time of the whole call is estimated
        from it; above ``warn_seconds`` (an adapter attribute, default :data:`WARN_SECONDS`;
        None: never) one warning says how many rows the call runs and about how long it will
        take, before the rest runs (lower the explainer's budget, or use a GPU)."""
        i = 0
        t0 = time.perf_counter()
        limit = getattr(self, "warn_seconds", WARN_SECONDS)
        while i < len(order):
            size = self._batch
            rows = order[i : i + size]
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
        rows: Sequence[tuple[int, int, int]],
        lengths: np.ndarray,
        weights: Sequence[float],
        grads: list[torch.Tensor],
        build: Callable[[list[tuple[int, int, int]]],
                        tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]],
        values: list[np.ndarray] | None = None,
    ) -> None:
        """The one gradient kernel of every adapter (gradient, gradient x input, Integrated
        Gradients; classifiers and generated text alike).

        ``rows`` are (example, target, step) triples run as one virtual batch (chunks sorted by
        ``lengths``, OOM back-off). For a chunk, ``build(rows)`` returns the input embeddings
        ``z`` (rows x length x hidden, at the step's point of the path) and a function of ``z``
        giving one differentiable value per row; ``weights[step] * d value / d z`` is added to
        ``grads[example][target]`` (its first positions) and, with ``values``, the value is kept
        in ``values[example][target, step]``.
        """

        def run(idx: np.ndarray) -> None:
            chosen = [rows[i] for i in idx]
            z, value_of = build(chosen)
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                val = value_of(z)
                (g,) = torch.autograd.grad(val.sum(), z)
            g = g.float()
            v = val.detach().float().cpu().numpy()
            # in-place adds allocate nothing, so an OOM cannot strike half-way through them
            for r, (e, k, s) in enumerate(chosen):
                grads[e][k].add_(g[r, : grads[e].shape[1]].to(grads[e].dtype),
                                 alpha=float(weights[s]))
                if values is not None:
                    values[e][k, s] = v[r]
            self.stats.backward_rows += len(idx)

        self.run_chunks(self.plan_chunks(lengths), run)
