"""Fine-tune MiniLM on a dataset's training split, explain its dev examples with every
explainer, score them, and print metric tables with 95 % bootstrap CIs (also by gold label).

Reads the full data from ``$FAITHSCOPE_DATA`` (default: ../shared/data beside the checkout).

    python experiments/evaluate_dataset.py --dataset sst2_planted --train-n 8000 --dev-n 200
    python experiments/evaluate_dataset.py --dataset esnli --train-split test --train-n 8000 \
        --dev-n 200 --metrics iou_f1 token_f1 auprc comprehensiveness sufficiency --by-label
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from rich.console import Console

import faithscope as fs
from faithscope.data import load_dataset
from faithscope.demo import default_encoder
from faithscope.models.finetune import Recipe, finetune
from faithscope.tables import metric_table

ROOT = Path(__file__).resolve().parents[1]
EXPLAINERS = [
    ("integrated_gradients", {"n_steps": 50}), ("lime", {"n_samples": 500}),
    ("kernel_shap", {"n_samples": 500}), ("partition_shap", {"max_evals": 300}),
    ("leave_one_out", {}), ("gradient", {}), ("gradient_x_input", {}), ("attention", {}),
    ("attention_rollout", {}), ("random", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--dev-split", default="dev")
    ap.add_argument("--train-n", type=int, default=8000)
    ap.add_argument("--dev-n", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--metrics", nargs="+", default=["gt_overlap", "recovery_depth", "mean_rank",
                    "comprehensiveness", "sufficiency", "aopc_comprehensiveness",
                    "aopc_sufficiency"])
    ap.add_argument("--explainers", nargs="*", help="subset of explainer names")
    ap.add_argument("--n-samples", type=int, default=500, help="LIME/KernelSHAP samples")
    ap.add_argument("--by-label", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out"))
    args = ap.parse_args()
    os.environ.setdefault("FAITHSCOPE_DATA", str(ROOT.parent / "shared" / "data"))
    torch.manual_seed(0)
    console = Console(width=200)
    train = load_dataset(args.dataset, split=args.train_split, n=args.train_n, seed=0)
    dev = load_dataset(args.dataset, split=args.dev_split, n=args.dev_n, seed=0)
    t0 = time.perf_counter()
    model, info = finetune(default_encoder(), list(train.examples), labels=train.labels,
                           recipe=Recipe(epochs=args.epochs, max_length=args.max_length),
                           dev=list(dev.examples), device="cpu")
    console.print(f"{args.dataset}: fine-tuned on {len(train)} {args.train_split} examples "
                  f"({'cached' if info['cached'] else f'{time.perf_counter() - t0:.0f} s'}); "
                  f"accuracy on the {len(dev)} {args.dev_split} examples: "
                  f"{info.get('dev_accuracy', float('nan')):.3f}", highlight=False)
    specs = [(n, {**p, "n_samples": args.n_samples} if "n_samples" in p else p)
             for n, p in EXPLAINERS
             if not args.explainers or n in args.explainers or n == "random"]
    t0 = time.perf_counter()
    exps = fs.explain(model, list(dev.examples), specs, granularity="word", seed=0)
    t_explain = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = fs.evaluate(exps, model, args.metrics, examples=dev.examples, random=False)
    console.print(f"explained in {t_explain:.0f} s, evaluated in {time.perf_counter() - t0:.0f} s"
                  " (2-core CPU)", highlight=False)
    summary = fs.summarize(df)
    console.print(metric_table(summary, title=f"{args.dataset} {args.dev_split}, n={len(dev)}: "
                               "mean ± 95% bootstrap CI half-width"))
    out = Path(args.out) / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "summary.csv", index=False)
    df.assign(detail=df["detail"].map(json.dumps)).to_parquet(out / "metrics.parquet")
    if args.by_label:
        df = df.assign(gold=[dev.labels[int(v)] if v == v and v is not None else "?"
                             for v in df["label"]])
        by = fs.summarize(df, by=("explainer", "metric", "gold"))
        for gold, g in by.groupby("gold"):
            console.print(metric_table(g.drop(columns="gold"),
                                       title=f"gold label = {gold} (n={int(g['n'].max())})"))
        by.to_csv(out / "summary_by_label.csv", index=False)


if __name__ == "__main__":
    main()
