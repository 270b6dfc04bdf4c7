"""Benchmark: faithscope explainers against the forward-pass limit of the model.

MiniLM-L6 fine-tuned on SST-2 (cached), the first 20 GLUE dev sentences. For each explainer:
median seconds per explanation (one sentence per call, as peers run), model rows used, peak
memory, and ``limit_ratio`` = (time of the same number of model evaluations of that sentence at
the best batch size) / (actual time). 1.0 means the explainer costs exactly its model calls.

The forward limit is measured next to each explainer, interleaved: for every sentence, the
model's rate on that sentence (forward, or forward + backward for the gradient explainers) at
the best batch size is timed right before and right after the explainer's own timing, each
chunk timed separately, and the fastest chunk counts; the explainer's time is the minimum over
``--repeats`` runs. A busy moment therefore slows both sides or neither, and the ratio cannot
exceed 1 by more than timing noise (a limit taken once, up front, on a busy machine once gave
1.78). The best batch size is chosen once per sentence length class from a sweep.

A batched pass (all sentences in one call) is reported too; ``--all-dev`` also runs LIME-1000,
KernelSHAP-1000 and IG-50 over the first N dev sentences (default all 872) in one call each and
prints seconds, explanations per second and the forward limit of the rows they used (per
sentence, its rows at the rate measured for its length, interleaved likewise).

Usage:
    python benchmarks/bench_explainers.py                      # CPU, 20 sentences
    python benchmarks/bench_explainers.py --device cuda --dtype float16 --all-dev
    bash benchmarks/gpu_run.sh [CHECKPOINT]                     # the GPU run (see there)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

import faithscope as fs
from faithscope.data import bundled_sst2, read_table
from faithscope.demo import default_encoder
from faithscope.models.finetune import Recipe, finetune

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"

EXPLAINERS = [
    ("lime", {"n_samples": 1000}),
    ("kernel_shap", {"n_samples": 1000}),
    ("integrated_gradients", {"n_steps": 50}),
    ("partition_shap", {"max_evals": 500}),
    ("shapley_sampling", {"n_permutations": 20}),
    ("leave_one_out", {}),
    ("gradient", {}),
    ("gradient_x_input", {}),
    ("attention", {}),
    ("attention_rollout", {}),
    ("random", {}),
]
BACKWARD = {"integrated_gradients", "gradient", "gradient_x_input"}


class PeakRSS:
    """Peak resident memory of the process, sampled every 5 ms (CPU); CUDA: peak allocated."""

    def __enter__(self) -> PeakRSS:
        self.start = self._rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.mb = self.peak / 2**20  # peak resident set of the process while running
        if torch.cuda.is_available():
            self.mb = torch.cuda.max_memory_allocated() / 2**20


def train_data() -> list[fs.Example]:
    part = SHARED / "glue_train_part1.tsv"
    if part.exists():
        return read_table(part, limit=8000, id_prefix="sst2-train")
    return bundled_sst2("train")


def dev_data(n: int | None) -> list[fs.Example]:
    f = SHARED / "glue_dev.tsv"
    data = read_table(f, id_prefix="sst2-dev") if f.exists() else bundled_sst2("dev")
    return data[:n] if n else data


def _sync(adapter: fs.ModelAdapter) -> None:
    if adapter.device.type == "cuda":
        torch.cuda.synchronize()


def chunk_rate(adapter: fs.ModelAdapter, ids: np.ndarray, b: int, backward: bool,
               reps: int) -> float:
    """Rows/second of the fastest of ``reps`` chunks of ``b`` copies of ``ids``, straight
    through the model (no faithscope code; a slow first chunk does not count: the fastest
    does)."""
    model = adapter.model
    x = torch.from_numpy(ids).to(adapter.device)[None].repeat(b, 1)
    mask = torch.ones_like(x)
    best = float("inf")
    for _ in range(reps):
        _sync(adapter)
        t0 = time.perf_counter()
        if backward:
            emb = model.get_input_embeddings()(x).detach().requires_grad_(True)
            h = model.get_input_embeddings().register_forward_hook(lambda *a, e=emb: e)
            try:
                out = model(input_ids=x, attention_mask=mask).logits
                torch.autograd.grad(out[:, 0].sum(), emb)
            finally:
                h.remove()
        else:
            with torch.inference_mode():
                model(input_ids=x, attention_mask=mask)
        _sync(adapter)
        best = min(best, time.perf_counter() - t0)
    return b / best


def best_size(adapter: fs.ModelAdapter, ids: np.ndarray, sizes: list[int],
              backward: bool) -> int:
    """The batch size with the best rate for this sentence (a sweep, done once per length)."""
    reps = 2 if adapter.device.type == "cpu" else 5
    return max(sizes, key=lambda b: chunk_rate(adapter, ids, b, backward, reps))


class Limit:
    """The forward limit of a sentence, measured next to an explainer: the best chunk rate at
    the sentence's best batch size, taken before and after (the fastest counts)."""

    def __init__(self, adapter: fs.ModelAdapter, sizes: list[int], backward: bool) -> None:
        self.adapter, self.sizes, self.backward = adapter, sizes, backward
        self.size: dict[int, int] = {}  # best batch size per sentence length
        self.reps = 2 if adapter.device.type == "cpu" else 5

    def rate(self, ids: np.ndarray) -> float:
        n = len(ids)
        if n not in self.size:
            self.size[n] = best_size(self.adapter, ids, self.sizes, self.backward)
        return chunk_rate(self.adapter, ids, self.size[n], self.backward, self.reps)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--n", type=int, default=20, help="dev sentences for the per-example pass")
    ap.add_argument("--max-batch-size", type=int, default=0,
                    help="0 = the adapter's default (from the device and the model size)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="the explainer's time per sentence is the minimum of this many runs")
    ap.add_argument("--only", nargs="*", help="explainer names to run")
    ap.add_argument("--ferret-settings", action="store_true",
                    help="also time LIME (n^2 samples) and Partition SHAP (500) on token units")
    ap.add_argument("--all-dev", type=int, nargs="?", const=872, default=0, metavar="N",
                    help="one batched pass over the first N dev sentences (default all 872)")
    ap.add_argument("--checkpoint", help="a fine-tuned SST-2 classifier (folder) to use "
                    "instead of fine-tuning MiniLM-L6 here")
    args = ap.parse_args()
    torch.manual_seed(0)
    device = fs.models.resolve_device(args.device)
    adapter, info = fine_tuned(device, args.dtype, args.checkpoint)
    if args.max_batch_size:
        adapter.max_batch_size = adapter._batch = args.max_batch_size
    print(f"# device={device} dtype={args.dtype} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} model={info['model_id']} "
          f"max_batch_size={adapter.max_batch_size}", flush=True)
    dev = dev_data(args.n)
    sizes = [16, 32, 64, 128] if device.type == "cpu" else [256, 1024, 4096]
    prepared = fs.prepare(adapter, dev)
    limits = {False: Limit(adapter, sizes, False),
              True: Limit(adapter, [16, 32, 50] if device.type == "cpu" else [256, 1024], True)}
    fwd_rate = [limits[False].rate(p.enc.ids) for p in prepared]
    bwd_rate = [limits[True].rate(p.enc.ids) for p in prepared]
    mean_len = np.mean([len(p.enc) for p in prepared])
    print(f"# {len(dev)} sentences, mean {mean_len:.1f} tokens; best forward rate median "
          f"{statistics.median(fwd_rate):.0f} rows/s, forward+backward "
          f"{statistics.median(bwd_rate):.0f} rows/s (the limits below are measured again "
          "next to each explainer)", flush=True)
    for name, params in EXPLAINERS:
        if args.only and name not in args.only:
            continue
        exp = fs.make_explainer((name, params))
        fs.explain(adapter, dev[:1], [exp])  # warm-up
        secs, forwards, ratios = [], [], []
        limit = limits[name in BACKWARD]
        with PeakRSS() as mem:
            for p, ex in zip(prepared, dev, strict=True):
                before = limit.rate(p.enc.ids)
                times = []
                for _ in range(max(1, args.repeats)):
                    t0 = time.perf_counter()
                    (e,) = fs.explain(adapter, [ex], [exp])
                    _sync(adapter)
                    times.append(time.perf_counter() - t0)
                dt = min(times)
                rate = max(before, limit.rate(p.enc.ids))
                n = int(e.info.get("forwards", 0))
                secs.append(dt)
                forwards.append(n)
                ratios.append((n / rate) / dt if n else float("nan"))
        runs = []
        for _ in range(max(1, args.repeats)):  # the batched call, best of the same repeats
            t0 = time.perf_counter()
            fs.explain(adapter, dev, [exp])
            _sync(adapter)
            runs.append((time.perf_counter() - t0) / len(dev))
        batched = min(runs)
        ratio = statistics.median(ratios) if not np.isnan(ratios).all() else float("nan")
        # batched vs one call per sentence over the same sentences (means: the batched time is
        # a mean over them too)
        print(f"bench {name} sec_per_expl={statistics.median(secs):.4f} "
              f"forwards={int(statistics.median(forwards))} limit_ratio={ratio:.2f} "
              f"batched_sec_per_expl={batched:.4f} per_call_mean_sec={np.mean(secs):.4f} "
              f"batched_over_per_call={batched / np.mean(secs):.2f} "
              f"peak_mem_mb={mem.mb:.0f}", flush=True)
    if args.ferret_settings:
        # ferret 0.4.2's settings: token units, LIME with n^2 samples for n tokens, Partition
        # SHAP with 500 evaluations. Reference on this 2-core CPU (../shared/BENCHMARKS.md):
        # mean 4.3 s (LIME) and 2.85 s (Partition SHAP) per explanation, medians 2.45 / 2.19.
        for label in ("lime_n2", "partition_shap_500"):
            secs = []
            for p, ex in zip(prepared, dev, strict=True):
                n = int((~p.enc.special).sum())
                exp = (fs.make_explainer(("lime", {"n_samples": n * n})) if label == "lime_n2"
                       else fs.make_explainer(("partition_shap", {"max_evals": 500})))
                t0 = time.perf_counter()
                fs.explain(adapter, [ex], [exp], granularity="token")
                secs.append(time.perf_counter() - t0)
            print(f"bench_ferret_settings {label} mean_sec_per_expl={np.mean(secs):.3f} "
                  f"median_sec_per_expl={statistics.median(secs):.3f}", flush=True)
    if args.all_dev:
        all_dev(adapter, dev_data(args.all_dev), limits)
    return 0


def fine_tuned(device: torch.device, dtype: str, checkpoint: str | None
               ) -> tuple[fs.ModelAdapter, dict]:
    """The benchmarks' model: ``checkpoint`` (a fine-tuned SST-2 classifier folder), or
    MiniLM-L6 fine-tuned here on the SST-2 training sentences (1 epoch; on the GPU when there
    is one, seconds; cached either way), on ``device`` in ``dtype``. Returns the adapter and
    the fine-tuning info (``model_id``, ``path``)."""
    if checkpoint:
        adapter = fs.load_model(checkpoint, device=str(device), dtype=dtype, require_head=True)
        return adapter, {"model_id": adapter.model_id, "path": checkpoint}
    t0 = time.perf_counter()
    adapter, info = finetune(default_encoder(), train_data(), recipe=Recipe(epochs=1),
                             device="cuda" if device.type == "cuda" else "cpu")
    print(f"# fine-tuned (or loaded from the cache) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    if device.type == "cuda" or dtype != "float32":
        adapter = fs.load_model(info["path"], device=str(device), dtype=dtype)
    return adapter, info


def all_dev(adapter: fs.ModelAdapter, data: list[fs.Example], limits: dict[bool, Limit]
            ) -> None:
    """LIME-1000, KernelSHAP-1000 and IG-50 over ``data``, one call each, end to end, with the
    forward limit of the rows each used: per sentence, its rows at the model's best rate for a
    sentence of its length (rates of a representative sentence per length, measured before and
    after the explainer; the faster counts)."""
    src = "../shared (GLUE dev)" if (SHARED / "glue_dev.tsv").exists() else "bundled copy"
    prepared = fs.prepare(adapter, data)
    by_len: dict[int, np.ndarray] = {}
    for p in prepared:
        by_len.setdefault(len(p.enc), p.enc.ids)
    print(f"# all-dev: {len(data)} sentences ({src}), {len(by_len)} distinct lengths",
          flush=True)
    for name, params in EXPLAINERS[:3]:
        exp = fs.make_explainer((name, params))
        limit = limits[name in BACKWARD]
        before = {n: limit.rate(ids) for n, ids in by_len.items()}
        _sync(adapter)
        t0 = time.perf_counter()
        exps = fs.explain(adapter, data, [exp])
        _sync(adapter)
        dt = time.perf_counter() - t0
        rate = {n: max(r, limit.rate(by_len[n])) for n, r in before.items()}
        rows = [int(e.info.get("forwards", 0)) for e in exps]
        limit_s = sum(r / rate[len(p.enc)] for r, p in zip(rows, prepared, strict=True))
        print(f"bench_all_dev {name} n={len(data)} seconds={dt:.2f} "
              f"expl_per_sec={len(data) / dt:.1f} rows={sum(rows)} limit_s={limit_s:.2f} "
              f"limit_ratio={limit_s / dt:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
