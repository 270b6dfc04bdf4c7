"""Benchmark: faithscope explainers against the forward-pass limit of the model.

MiniLM-L6 fine-tuned on SST-2 (cached), the first 20 GLUE dev sentences. For each explainer:
median seconds per explanation (one sentence per call, as peers run), model rows used, peak
memory, and ``limit_ratio`` = (time of the same number of model evaluations of that sentence at
the best batch size) / (actual time). 1.0 means the explainer costs exactly its model calls.
A batched pass (all sentences in one call) is reported too; on a GPU, ``--all-dev`` also reports
explanations per second over the 872 dev sentences.

Usage:
    python benchmarks/bench_explainers.py                      # CPU, 20 sentences
    python benchmarks/bench_explainers.py --device cuda --dtype float16 --all-dev
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


def rates(adapter: fs.ModelAdapter, enc: object, sizes: list[int], backward: bool) -> float:
    """Best rows/second for this sentence over the batch sizes (no faithscope overhead)."""
    model = adapter.model
    ids = torch.from_numpy(enc.ids).to(adapter.device)  # type: ignore[attr-defined]
    best = 0.0
    for b in sizes:
        x = ids[None].repeat(b, 1)
        mask = torch.ones_like(x)
        reps = max(1, 128 // b) if adapter.device.type == "cpu" else 20
        for warm in (True, False):
            t0 = time.perf_counter()
            for _ in range(1 if warm else reps):
                if backward:
                    emb = model.get_input_embeddings()(x).detach().requires_grad_(True)
                    h = model.get_input_embeddings().register_forward_hook(
                        lambda *a, e=emb: e)
                    try:
                        out = model(input_ids=x, attention_mask=mask).logits
                        torch.autograd.grad(out[:, 0].sum(), emb)
                    finally:
                        h.remove()
                else:
                    with torch.inference_mode():
                        model(input_ids=x, attention_mask=mask)
            if adapter.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        best = max(best, b * reps / dt)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--n", type=int, default=20, help="dev sentences for the per-example pass")
    ap.add_argument("--max-batch-size", type=int, default=0, help="0 = 64 on CPU, 1024 GPU")
    ap.add_argument("--only", nargs="*", help="explainer names to run")
    ap.add_argument("--ferret-settings", action="store_true",
                    help="also time LIME (n^2 samples) and Partition SHAP (500) on token units")
    ap.add_argument("--all-dev", type=int, nargs="?", const=872, default=0, metavar="N",
                    help="one batched pass over the first N dev sentences (default all 872)")
    args = ap.parse_args()
    torch.manual_seed(0)
    adapter, info = finetune(default_encoder(), train_data(), recipe=Recipe(epochs=1),
                             device="cpu")
    device = fs.models.resolve_device(args.device)
    if device.type == "cuda" or args.dtype != "float32":
        adapter = fs.load_model(info["path"], device=str(device), dtype=args.dtype)
    adapter.max_batch_size = args.max_batch_size or (1024 if device.type == "cuda" else 64)
    adapter._batch = adapter.max_batch_size
    print(f"# device={device} dtype={args.dtype} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} model={info['model_id']} "
          f"max_batch_size={adapter.max_batch_size}", flush=True)
    dev = dev_data(args.n)
    sizes = [16, 32, 64, 128] if device.type == "cpu" else [256, 1024, 4096]
    prepared = fs.prepare(adapter, dev)
    fwd_rate = [rates(adapter, p.enc, sizes, False) for p in prepared]
    bwd_rate = [rates(adapter, p.enc, [16, 32, 50] if device.type == "cpu"
                      else [256, 1024], True) for p in prepared]
    mean_len = np.mean([len(p.enc) for p in prepared])
    print(f"# {len(dev)} sentences, mean {mean_len:.1f} tokens; best forward rate median "
          f"{statistics.median(fwd_rate):.0f} rows/s, forward+backward "
          f"{statistics.median(bwd_rate):.0f} rows/s", flush=True)
    for name, params in EXPLAINERS:
        if args.only and name not in args.only:
            continue
        exp = fs.make_explainer((name, params))
        fs.explain(adapter, dev[:1], [exp])  # warm-up
        secs, forwards, ratios = [], [], []
        with PeakRSS() as mem:
            for i, ex in enumerate(dev):
                t0 = time.perf_counter()
                (e,) = fs.explain(adapter, [ex], [exp])
                dt = time.perf_counter() - t0
                n = int(e.info.get("forwards", 0))
                rate = bwd_rate[i] if name in BACKWARD else fwd_rate[i]
                secs.append(dt)
                forwards.append(n)
                ratios.append((n / rate) / dt if n else float("nan"))
        t0 = time.perf_counter()
        fs.explain(adapter, dev, [exp])
        batched = (time.perf_counter() - t0) / len(dev)
        ratio = statistics.median(ratios) if not np.isnan(ratios).all() else float("nan")
        print(f"bench {name} sec_per_expl={statistics.median(secs):.4f} "
              f"forwards={int(statistics.median(forwards))} limit_ratio={ratio:.2f} "
              f"batched_sec_per_expl={batched:.4f} peak_mem_mb={mem.mb:.0f}", flush=True)
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
        data = dev_data(args.all_dev)
        for name, params in EXPLAINERS[:3]:
            exp = fs.make_explainer((name, params))
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fs.explain(adapter, data, [exp])
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            print(f"bench_all_dev {name} n={len(data)} seconds={dt:.2f} "
                  f"expl_per_sec={len(data) / dt:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
