"""Fine-tune MiniLM on a dataset's training split, explain its dev examples with every
explainer, score them, and print metric tables with 95 % bootstrap CIs (also by gold label).

Reads the full data from ``$FAITHSCOPE_DATA`` (default: ../shared/data beside the checkout).

    python experiments/evaluate_dataset.py --dataset sst2_planted --train-n 8000 --dev-n 200
    python experiments/evaluate_dataset.py --dataset esnli --train-split test --train-n 8000 \
        --dev-n 200 --metrics iou_f1 token_f1 auprc average_precision comprehensiveness \
        sufficiency --by-label

Writes ``summary.csv`` (with the removal ``operator`` of each metric), ``metrics.parquet``,
``summary_by_label.csv`` with ``--by-label``, and ``tables.md``: the Markdown tables with the
removal operator read from the rows, the aggregate of each row, the model's dev accuracy beside
the majority-class baseline, and the random explainer's row beside the others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from rich.console import Console

import faithscope as fs
from faithscope.data import load_dataset
from faithscope.demo import default_encoder
from faithscope.models.finetune import Recipe, accuracy, finetune
from faithscope.tables import metric_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from md_table import markdown  # noqa: E402

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
    t_train = time.perf_counter() - t0
    # Measured here, not read from the fine-tuning record: a cached checkpoint keeps the dev
    # accuracy of the run that trained it, which may have used another dev set (or none).
    dev_acc = accuracy(model, list(dev.examples))
    # Majority-class baseline: the most frequent training label predicted for every dev example.
    major, _ = Counter(ex.label for ex in train.examples).most_common(1)[0]
    major_acc = sum(ex.label == major for ex in dev.examples) / len(dev)
    console.print(f"{args.dataset}: fine-tuned on {len(train)} {args.train_split} examples "
                  f"({'cached' if info['cached'] else f'{t_train:.0f} s'}); "
                  f"accuracy on the {len(dev)} {args.dev_split} examples: {dev_acc:.3f} "
                  f"(majority class {train.labels[major]!r}: {major_acc:.3f})", highlight=False)
    specs = [(n, {**p, "n_samples": args.n_samples} if "n_samples" in p else p)
             for n, p in EXPLAINERS
             if not args.explainers or n in args.explainers or n == "random"]
    t0 = time.perf_counter()
    exps = fs.explain(model, list(dev.examples), specs, granularity="word", seed=0)
    t_explain = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = fs.evaluate(exps, model, args.metrics, examples=dev.examples, random=False)
    t_eval = time.perf_counter() - t0
    console.print(f"explained in {t_explain:.0f} s, evaluated in {t_eval:.0f} s"
                  " (2-core CPU)", highlight=False)
    summary = fs.summarize(df)
    # The operator each metric's rows record (empty for metrics that remove nothing); the pooled
    # rows ("token_f1 (micro)" ...) take their metric's.
    ops = {m: "/".join(sorted({str(o) for o in g["operator"] if isinstance(o, str) and o}))
           for m, g in df.groupby("metric")}
    summary["operator"] = [ops.get(m.split(" (")[0], "") for m in summary["metric"]]
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
    else:
        by = None
    (out / "tables.md").write_text(tables_md(
        args, n_train=len(train), n_dev=len(dev), dev_acc=dev_acc,
        major=(train.labels[major], major_acc), cached=bool(info["cached"]),
        times=(t_train, t_explain, t_eval), summary=summary, ops=ops, by=by))


NOTES = {
    "auprc": "`auprc` is ERASER's AUPRC: the trapezoidal area under the precision-recall curve of "
             "the soft scores against the human token rationale (sklearn `precision_recall_curve` "
             "then `auc`, ERASER's `_auprc`), averaged over the examples.",
    "average_precision": "`average_precision` is the step-wise sum over thresholds "
                         "(sklearn `average_precision_score`); committed tables before the "
                         "change called this value `auprc`.",
    "recovery_depth": "`recovery_depth` is the smallest depth d of the ranking whose top d "
                      "units hold every planted unit, over the number of units n (committed "
                      "tables before the change called this `mean_rank`).",
    "mean_rank": "`mean_rank` is the mean rank (1 = top; ties share the average rank) of "
                 "the planted units, over n: (|L| + 1) / (2n) is perfect, about (n + 1) / (2n) "
                 "random.",
}


def tables_md(args: argparse.Namespace, *, n_train: int, n_dev: int, dev_acc: float,
              major: tuple[str, float], cached: bool, times: tuple[float, float, float],
              summary, ops: dict[str, str], by) -> str:
    """tables.md: everything stated is read from this run's outputs."""
    removal = {m: o for m, o in ops.items() if o}
    lines = [f"# {args.dataset}: {args.dev_split} split, n = {n_dev}",
             "",
             "Written by `experiments/evaluate_dataset.py` (do not edit by hand): "
             f"`--dataset {args.dataset} --train-split {args.train_split} --train-n "
             f"{args.train_n} --dev-n {args.dev_n} --metrics {' '.join(args.metrics)}"
             f"{' --by-label' if args.by_label else ''}`.",
             "",
             f"- Model: MiniLM-L6 fine-tuned on {n_train} `{args.train_split}` examples "
             f"({args.epochs} epoch, max length {args.max_length}). Accuracy on the {n_dev} "
             f"`{args.dev_split}` examples: **{dev_acc:.3f}**; majority-class baseline (the most "
             f"frequent training label, `{major[0]}`, for every example): **{major[1]:.3f}**.",
             f"- Times (2-core CPU): fine-tuning "
             f"{'cached' if cached else f'{times[0]:.0f} s'}, explaining {times[1]:.0f} s, "
             f"evaluating {times[2]:.0f} s.",
             "- Removal operator (the rows' `operator` column): "
             + ("; ".join(f"`{m}`: `{o}`" for m, o in sorted(removal.items())) if removal
                else "no removal metric in this run") + "."
             + (" `delete` removes the tokens from the input (ERASER, ferret)."
                if set(removal.values()) == {"delete"} else ""),
             ]
    lines += [f"- {NOTES[m]}" for m in NOTES if m in set(args.metrics)]
    agg = summary.groupby("aggregate")["metric"].unique()
    lines.append("- Aggregates (the summary's `aggregate` column): " + "; ".join(
        f"`{a}`: {', '.join(f'`{m}`' for m in sorted(ms))}" for a, ms in agg.items()) + ". "
        + "`mean` is the mean of per-example values; `micro` is ERASER's F1 of the counts pooled "
          "over the examples; `macro` is ERASER's macro (token_f1: mean of per-example F1; "
          "iou_f1: F1 of mean precision and mean recall)." if len(agg) > 1 else
        "- Every row is the mean of per-example values (`aggregate` = `mean`).")
    ns = summary.groupby("metric")["n"].agg(["min", "max"])
    lines.append("- Examples with a value, per metric (min-max over explainers): " + ", ".join(
        f"`{m}` {r['min']}" + (f"-{r['max']}" if r["max"] != r["min"] else "")
        for m, r in ns.iterrows()) + ".")
    lines += ["- `random` (last row) is the random explainer, explained and scored like the "
              "others: the chance level of every column.",
              "",
              "Mean [95 % bootstrap CI] over the examples; ↑ higher is better, ↓ lower is better.",
              "", markdown(summary), ""]
    if by is not None:
        for gold, g in by.groupby("gold"):
            lines += [f"## gold label = {gold} (n = {int(g['n'].max())})", "",
                      markdown(g.drop(columns="gold")), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
