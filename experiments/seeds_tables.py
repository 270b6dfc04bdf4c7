"""Markdown tables of a seed study (``experiments/seeds/spec.yaml``): accuracy per seed,
between-seed vs within-model agreement per explainer, agreement by prediction agreement,
LING-LR vs LING-LR-E vs the transformer, determinism of LING-LR(-E), lexicon overlap.

    python experiments/seeds_tables.py studies/seeds > experiments/out/seeds/tables.md
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from faithscope.metrics.stability import agreement_table
from faithscope.studies import open_study


def cell(r: pd.Series, name: str) -> str:
    m = r[f"{name}_mean"]
    if m != m:
        return "—"
    return f"{m:.2f} [{r[f'{name}_q25']:.2f}, {r[f'{name}_q75']:.2f}]"


def main(path: str) -> None:
    study = open_study(path)
    out = Path(__file__).resolve().parent / "out" / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    models = study.models().sort_values(["dataset", "seed"])
    models[["dataset", "seed", "accuracy", "n_accuracy", "train_seconds"]].to_csv(
        out / "accuracy.csv", index=False)
    print("## Accuracy per seed (MiniLM-L6, CPU)\n")
    print("| dataset | " + " | ".join(f"seed {s}" for s in sorted(models.seed.unique()))
          + " | mean ± sd |")
    print("|---" * (len(models.seed.unique()) + 2) + "|")
    for ds, g in models.groupby("dataset"):
        a = g.sort_values("seed")["accuracy"].to_numpy()
        print(f"| {ds} (n={int(g.n_accuracy.iloc[0])}) | " + " | ".join(f"{v:.3f}" for v in a)
              + f" | {a.mean():.3f} ± {a.std(ddof=1):.3f} |")
    pairs = study.analysis("seed_stability", "pairs")
    if len(pairs):
        pairs.to_parquet(out / "pairs.parquet")
        units = study.analysis("seed_stability", "units")
        units.groupby(["dataset", "explainer"])[["std", "std_l1", "top1_share"]].mean().to_csv(
            out / "unit_spread.csv")
        for ds, g in pairs.groupby("dataset"):
            for measure in ("spearman", "kendall", "jaccard"):
                t = agreement_table(g, measure)
                t.to_csv(out / f"agreement_{ds}_{measure}.csv", index=False)
                print(f"\n## {ds}: {measure} between two runs' explanations of the same example "
                      "(mean [quartiles] over examples x pairs)\n")
                print("| explainer | between seeds | within model (sampling) | seeds agree on "
                      "label | seeds disagree |")
                print("|---|---|---|---|---|")
                for _, r in t.iterrows():
                    print(f"| {r.explainer} | {cell(r, 'between')} | {cell(r, 'within')} | "
                          f"{cell(r, 'unanimous')} (n={int(r.unanimous_n)}) | {cell(r, 'split')}"
                          f" (n={int(r.split_n)}) |")
            u = units[units.dataset == ds]
            spread = u.groupby("explainer").agg(std_l1=("std_l1", "mean"),
                                                top1=("top1_share", "max"))
            print(f"\n{ds}: mean per-unit std of L1-normalised scores across seeds: "
                  + ", ".join(f"{e} {v:.3f}" for e, v in spread["std_l1"].items()))
    acc = study.analysis("ling_lr", "accuracy")
    if len(acc):
        acc.to_csv(out / "ling_lr_accuracy.csv", index=False)
        for ds, g in acc.groupby("dataset"):
            print(f"\n## {ds}: LING-LR vs LING-LR-E vs the transformer (accuracy)\n")
            tr = g[g.classifier == "transformer"]["accuracy"].to_numpy()
            single = g[g.classifier == "ling_lr_e_single_seed"]["accuracy"].to_numpy()
            print("| classifier | accuracy | features |\n|---|---|---|")
            for name in ("ling_lr", "ling_lr_e"):
                r = g[g.classifier == name].iloc[0]
                print(f"| {name} | {r.accuracy:.3f} | {int(r.n_features)} |")
            print(f"| ling_lr_e, one seed's lexicon ({len(single)} seeds) | {single.mean():.3f} "
                  f"[{single.min():.3f}, {single.max():.3f}] | |")
            print(f"| transformer ({len(tr)} seeds) | {tr.mean():.3f} [{tr.min():.3f}, {tr.max():.3f}] "
                  "| |")
        det = study.analysis("ling_lr", "determinism")
        det.to_csv(out / "ling_lr_determinism.csv", index=False)
        print("\nLING-LR(-E) explanations (coef x feature) refitted: same order max |diff| = "
              + ", ".join(f"{r.classifier}/{r.dataset}: {r.max_abs_diff:.1e}"
                          for r in det[det.order == "same"].itertuples())
              + "; training data permuted by each seed: max |diff| = "
              + ", ".join(f"{c}/{d}: {g.max_abs_diff.max():.1e}"
                          for (c, d), g in det[det.order != "same"].groupby(["classifier",
                                                                               "dataset"])))
        lex = study.analysis("ling_lr", "lexicon")
        lex.to_csv(out / "ling_lr_lexicon.csv", index=False)
        for ds, g in lex.groupby("dataset"):
            seeds = sorted(x for x in g.lexicon.unique() if x.startswith("seed"))
            jac = []
            for a, b in itertools.combinations(seeds, 2):
                for c in g["class"].unique():
                    sa = set(g[(g.lexicon == a) & (g["class"] == c)].word)
                    sb = set(g[(g.lexicon == b) & (g["class"] == c)].word)
                    jac.append(len(sa & sb) / max(len(sa | sb), 1))
            pooled = {int(c): g[(g.lexicon == "pooled") & (g["class"] == c)].sort_values("rank")
                      .word.tolist()[:10] for c in sorted(g["class"].unique())}
            print(f"\n{ds}: per-seed lexicons overlap (Jaccard, per class) "
                  f"{np.mean(jac):.2f} [{np.min(jac):.2f}, {np.max(jac):.2f}]; pooled top-10 "
                  f"per class: {pooled}")


if __name__ == "__main__":
    main(sys.argv[1])
