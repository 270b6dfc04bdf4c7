"""Benchmark: the same explanation from fewer model evaluations (issue 13, item 2).

MiniLM-L6 fine-tuned on SST-2 (cached, as ``bench_explainers.py``), the first ``--n`` GLUE dev
sentences (default 200). For LIME and KernelSHAP, at fixed budgets (250 / 500 / 1000 samples)
and with ``n_samples="auto"``, it prints per configuration:

- ``evals``: mean distinct model evaluations per explanation (``info["forwards"]``);
- ``aopc``: AOPC comprehensiveness (ERASER's delete operator) with its bootstrap 95 % CI;
- ``spearman``: mean Spearman correlation, per sentence, with a ``--reference``-sample run of the
  same explainer under another seed (default 5000 samples): how well the ranking is recovered;
- ``coverage``: the share of units whose 95 % error bar (1.96 standard errors) contains the
  reference value (sentences whose reference is exact or whose estimate is exact left out).

and the ratios the goal is stated in: ``auto`` evaluations / fixed-1000 evaluations (goal
<= 0.5), ``auto`` Spearman - fixed-1000 Spearman (goal >= 0), and whether the AOPC CIs overlap.
The random explainer's AOPC is printed as the floor. AOPC alone cannot judge a budget (LIME at
250 samples already has the AOPC of 1000): the rank agreement is the measure that moves.

Explanations are cached under ``--cache`` (keyed by explainer, budget, seed, n and model), so a
rerun with other ``auto`` settings (``--tolerance``) only computes those.

Usage:
    python benchmarks/bench_budget.py                         # 200 sentences, reference 5000
    python benchmarks/bench_budget.py --n 20 --reference 2000 --confidence 0.95 0.97
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import faithscope as fs
from faithscope.explainers.adaptive import AUTO_VERSION
from faithscope.metrics.stats import bootstrap_ci

sys.path.insert(0, str(Path(__file__).parent))
from bench_explainers import dev_data, fine_tuned  # noqa: E402

EXPLAINERS = ("lime", "kernel_shap")


def cached(cache: Path, key: dict, run):  # type: ignore[no-untyped-def]
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{key['explainer']}-{name}.jsonl"
    if path.exists():
        return fs.load_explanations(path), json.loads(path.with_suffix(".json").read_text())
    t0 = time.perf_counter()
    exps = run()
    meta = {"seconds": time.perf_counter() - t0}
    fs.save_explanations(exps, path)
    path.with_suffix(".json").write_text(json.dumps(meta))
    return exps, meta


def aopc(model, exps) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    frame = fs.evaluate(exps, model, ["aopc_comprehensiveness"], random=False)
    return bootstrap_ci(frame["value"].to_numpy(dtype=float))


def agreement(exps, refs) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Mean per-sentence Spearman with the reference; error-bar coverage of the reference."""
    rhos, hits, units = [], 0, 0
    for e, r in zip(exps, refs, strict=True):
        assert e.example_id == r.example_id
        a, b = e.row().astype(float), r.row().astype(float)
        if len(a) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
            rhos.append(spearmanr(a, b).statistic)
        exact = e.info.get("exact") or r.info.get("exact")
        if e.errors is not None and not exact:
            half = 1.96 * e.errors[0].astype(float)
            hits += int((np.abs(a - b) <= half).sum())
            units += len(a)
    return float(np.mean(rhos)), (hits / units if units else float("nan"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="dev sentences")
    ap.add_argument("--reference", type=int, default=5000, help="samples of the reference")
    ap.add_argument("--budgets", type=int, nargs="*", default=[250, 500, 1000])
    ap.add_argument("--explainers", nargs="*", default=list(EXPLAINERS))
    ap.add_argument("--tolerance", type=float, nargs="*", default=[None],
                    help="auto settings to try (default: the explainer's default)")
    ap.add_argument("--confidence", type=float, nargs="*", default=[None],
                    help="auto settings to try, crossed with --tolerance")
    ap.add_argument("--cache", default=str(Path(__file__).parent / ".cache" / "budget"))
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--checkpoint", help="a fine-tuned SST-2 classifier (folder) to use "
                    "instead of fine-tuning MiniLM-L6 here")
    args = ap.parse_args()
    import torch

    torch.manual_seed(0)
    device = fs.models.resolve_device(args.device)
    model, info = fine_tuned(device, args.dtype, args.checkpoint)
    dev = dev_data(args.n)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    base = {"n": args.n, "model": Path(info["path"]).name}
    if device.type != "cpu" or args.dtype != "float32":  # other numbers: other cache entries
        base.update(device=device.type, dtype=args.dtype)
    rnd, _ = cached(cache, {**base, "explainer": "random"},
                    lambda: fs.explain(model, dev, ["random"]))
    labels = np.array([ex.label for ex in dev])
    acc = float(np.mean([e.predicted == y for e, y in zip(rnd, labels, strict=True)]))
    print(f"# {len(dev)} SST-2 dev sentences, {info['model_id']} fine-tuned: accuracy {acc:.3f} "
          f"(majority {max(np.mean(labels == 0), np.mean(labels == 1)):.3f}); reference: "
          f"{args.reference} samples, seed 1; estimates: seed 0; device {device} "
          f"{args.dtype}; torch threads {torch.get_num_threads()}", flush=True)
    m, lo, hi = aopc(model, rnd)
    print(f"budget random aopc={m:.3f} [{lo:.3f},{hi:.3f}]", flush=True)
    for name in args.explainers:
        refs, meta = cached(cache, {**base, "explainer": name, "budget": args.reference,
                                    "seed": 1},
                            lambda n=name: fs.explain(model, dev,
                                                      [(n, {"n_samples": args.reference})],
                                                      seed=1))
        print(f"# {name} reference: {np.mean([r.info['forwards'] for r in refs]):.0f} "
              f"evaluations per sentence, {meta['seconds']:.0f} s", flush=True)
        rows = {}
        configs: list[tuple[str, dict]] = [(f"fixed-{b}", {"n_samples": b}) for b in args.budgets]
        for tol in args.tolerance:
            for conf in args.confidence:
                params: dict = {"n_samples": "auto"}
                label = "auto"
                if tol is not None:
                    params["tolerance"] = tol
                    label += f"-tol{tol:g}"
                if conf is not None:
                    params["confidence"] = conf
                    label += f"-conf{conf:g}"
                configs.append((label, params))
        for label, params in configs:
            code = {"auto_version": AUTO_VERSION} if params["n_samples"] == "auto" else {}
            exps, meta = cached(cache, {**base, "explainer": name, **params, "seed": 0, **code},
                                lambda p=params, n=name: fs.explain(model, dev, [(n, p)],
                                                                    seed=0))
            evals = float(np.mean([e.info["forwards"] for e in exps]))
            rho, cover = agreement(exps, refs)
            a, alo, ahi = aopc(model, exps)
            rows[label] = (evals, rho, a, alo, ahi)
            extra = ""
            if label.startswith("auto"):
                extra = (f" resolved={np.mean([bool(e.info.get('resolved')) for e in exps]):.2f}"
                         f" exact={np.mean([bool(e.info.get('exact')) for e in exps]):.2f}")
            print(f"budget {name} {label} evals={evals:.0f} spearman={rho:.3f} "
                  f"coverage={cover:.3f} aopc={a:.3f} [{alo:.3f},{ahi:.3f}] "
                  f"seconds={meta['seconds']:.0f}{extra}", flush=True)
        ref_label = "fixed-1000" if "fixed-1000" in rows else next(iter(rows))
        fe, frho, _, flo, fhi = rows[ref_label]
        for label, (evals, rho, _, alo, ahi) in rows.items():
            if label.startswith("auto"):
                print(f"ratio {name} {label}/{ref_label} evals={evals / fe:.2f} "
                      f"spearman_diff={rho - frho:+.3f} "
                      f"aopc_ci_overlap={'yes' if alo <= fhi and flo <= ahi else 'no'}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
