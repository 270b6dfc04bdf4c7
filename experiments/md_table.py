"""Print a summary CSV (from evaluate_dataset.py or `faithscope results`) as Markdown tables:
explainer rows x metric columns, mean [95 % CI]; one table per value of --group columns.

    python experiments/md_table.py experiments/out/esnli/summary_by_label.csv --group gold
"""

from __future__ import annotations

import argparse

import pandas as pd


def markdown(summary: pd.DataFrame) -> str:
    metrics = sorted(summary["metric"].unique())
    up = {m: bool(g["higher_is_better"].iloc[0]) for m, g in summary.groupby("metric")}
    explainers = sorted(summary["explainer"].unique(), key=lambda e: (e == "random", e))
    cells = {(r.explainer, r.metric): r for r in summary.itertuples()}
    lines = ["| explainer | " + " | ".join(f"{m} {'↑' if up[m] else '↓'}" for m in metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for e in explainers:
        row = []
        for m in metrics:
            r = cells.get((e, m))
            row.append("—" if r is None else f"{r.mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]")
        lines.append(f"| {e} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--group", nargs="*", default=[])
    ap.add_argument("--metrics", nargs="*")
    args = ap.parse_args()
    df = pd.read_csv(args.csv)
    if args.metrics:
        df = df[df["metric"].isin(args.metrics)]
    if not args.group:
        print(markdown(df))
        return
    for key, g in df.groupby(args.group):
        key = key if isinstance(key, tuple) else (key,)
        print(f"\n**{', '.join(f'{c} = {k}' for c, k in zip(args.group, key, strict=True))}** "
              f"(n = {int(g['n'].max())})\n")
        print(markdown(g))


if __name__ == "__main__":
    main()
