"""Sanity checks, ensembles and attacks on MiniLM-L6 fine-tuned on the bundled SST-2 sentences.

1. Layer randomization, cascading and independent, for the gradient family, attention and
   rollout (and the random baseline): per-step Spearman curves with 95 % bootstrap CIs over
   ``--n`` dev sentences (tables, CSV, PNG).
2. Ensembles (``ensemble_top3``, ``ensemble_all``) next to their members on the removal metrics
   of issue 2, on ``--eval-n`` dev sentences.
3. Explanation attacks, both objectives, on ``--attack-n`` dev sentences for gradient,
   gradient x input and Integrated Gradients: RankChange, TopkSumChange, ProbabilityChange and
   the share of attacks that kept the prediction.
4. Optionally (``--sensitivity-samples N``) max / average sensitivity under embedding noise and
   word deletion.

The fine-tuned checkpoint is cached (``~/.cache/faithscope/finetuned``), so reruns skip the
fine-tuning. The defaults are the thesis settings (500 attack steps); on a 2-core CPU one attack
step on 16 sentences costs about 0.8 s (gradient), 0.7 s (gradient x input) and 0.7 s per
Integrated Gradients step, so the suggested run below (about 15 minutes after fine-tuning)
shortens the attacks:

    python experiments/sanity_attacks.py --n 32 --eval-n 24 --attack-n 16 --steps 40 \\
        --attack-ig-steps 4 --n-samples 200
    python experiments/sanity_attacks.py --train-n 64 --n 2 --eval-n 2 --attack-n 2 \\
        --steps 5 --ig-steps 4 --attack-ig-steps 4 --n-samples 32 --accuracy-n 16  # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import faithscope as fs
from faithscope.data import Example, bundled_sst2
from faithscope.demo import default_encoder
from faithscope.metrics import attack_table, curve_table
from faithscope.models.finetune import Recipe, accuracy, finetune

ROOT = Path(__file__).resolve().parents[1]
RANDOMIZED = ["gradient", "gradient_x_input", "integrated_gradients", "attention",
              "attention_rollout"]
ATTACKED = ["gradient", "gradient_x_input", "integrated_gradients"]
FAITHFULNESS = ["comprehensiveness", "sufficiency", "aopc_comprehensiveness",
                "aopc_sufficiency"]


def pick_dev(n: int, *, seed: int = 0, offset: int = 0, min_words: int = 6,
             max_words: int = 30) -> list[Example]:
    """``n`` GLUE dev sentences of ``min_words``..``max_words`` words, in a seeded order;
    ``offset`` skips the first ones (disjoint sets for the three analyses)."""
    dev = [ex for ex in bundled_sst2("dev") if min_words <= len(ex.text.split()) <= max_words]
    order = np.random.default_rng(seed).permutation(len(dev))
    return [dev[i] for i in order[offset: offset + n]]


def cell(mean: float, lo: float, hi: float) -> str:
    return "—" if not np.isfinite(mean) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def curve_markdown(curves: pd.DataFrame, metric: str) -> str:
    sub = curves[curves["metric"] == metric]
    names = [e for e in [*RANDOMIZED, "random"] if e in set(sub["explainer"])]
    steps = list(dict.fromkeys(sub.sort_values("step_index")["step"]))
    lines = ["| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for step in steps:
        row = []
        for e in names:
            r = sub[(sub["explainer"] == e) & (sub["step"] == step)]
            row.append("—" if r.empty else cell(*r[["mean", "ci_low", "ci_high"]].iloc[0]))
        lines.append(f"| {step} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_curves(curves: pd.DataFrame, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = curves[curves["metric"] == metric]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for e, g in sub.groupby("explainer", sort=False):
        g = g.sort_values("step_index")
        x = g["step_index"].to_numpy()
        ax.plot(x, g["mean"], marker="o", ms=3, label=e, ls="--" if e == "random" else "-")
        ax.fill_between(x, g["ci_low"], g["ci_high"], alpha=0.15, lw=0)
    steps = list(dict.fromkeys(sub.sort_values("step_index")["step"]))
    ax.set_xticks(range(len(steps)), steps, rotation=30, ha="right")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("Spearman (|scores|) with the original")
    ax.set_title(f"{metric} (MiniLM-L6, SST-2 dev; band: 95 % bootstrap CI)")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def attack_markdown(table: pd.DataFrame) -> str:
    lines = ["| explainer | objective | n | RankChange | TopkSumChange | ProbabilityChange | "
             "kept prediction |", "|---" * 7 + "|"]
    for r in table.itertuples():
        q = [cell(getattr(r, f), getattr(r, f"{f}_ci_low"), getattr(r, f"{f}_ci_high"))
             for f in ("rank_change", "topk_sum_change", "probability_change")]
        lines.append(f"| {r.explainer} | {r.objective} | {r.n} | " + " | ".join(q)
                     + f" | {r.kept_prediction:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-n", type=int, default=4000, help="bundled SST-2 train sentences")
    ap.add_argument("--accuracy-n", type=int, default=872, help="dev sentences for accuracy")
    ap.add_argument("--n", type=int, default=32, help="sentences for the randomization curves")
    ap.add_argument("--eval-n", type=int, default=32, help="sentences for the ensemble table")
    ap.add_argument("--attack-n", type=int, default=16, help="sentences attacked")
    ap.add_argument("--steps", type=int, default=500, help="attack steps (thesis: 500)")
    ap.add_argument("--epsilon", type=float, default=2.0, help="attack L-inf bound")
    ap.add_argument("--ig-steps", type=int, default=20, help="Integrated Gradients steps")
    ap.add_argument("--attack-ig-steps", type=int, default=20,
                    help="Integrated Gradients steps of the attacked explainer (each attack "
                    "step differentiates through all of them)")
    ap.add_argument("--n-samples", type=int, default=300, help="LIME / KernelSHAP samples")
    ap.add_argument("--sensitivity-samples", type=int, default=0,
                    help="also max/avg sensitivity with this many samples (0: skip)")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["randomization", "ensembles", "attacks"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 avoids oversubscribing a shared machine; 0: torch's"
                    " default)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out" / "sanity_attacks"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        report.append(text)

    t0 = time.perf_counter()
    model, info = finetune(default_encoder(), bundled_sst2("train", limit=args.train_n),
                           recipe=Recipe(epochs=1, batch_size=32, lr=5e-5, patience=None),
                           device="cpu")
    acc = accuracy(model, bundled_sst2("dev", limit=args.accuracy_n))
    say(f"# Sanity checks, ensembles and attacks: MiniLM-L6 on SST-2\n\nfine-tuned on "
        f"{info['n_train']} bundled SST-2 train sentences "
        f"({'cached' if info.get('cached') else f'{time.perf_counter() - t0:.0f} s'}); GLUE dev "
        f"accuracy {acc:.3f} on {args.accuracy_n} sentences; {torch.get_num_threads()} threads")
    ig = ("integrated_gradients", {"n_steps": args.ig_steps})

    def spec(name: str) -> tuple[str, dict]:
        return ig if name == "integrated_gradients" else (name, {})

    if "randomization" not in args.skip:
        t0 = time.perf_counter()
        sents = pick_dev(args.n, seed=args.seed)
        exps = fs.explain(model, sents, [spec(n) for n in RANDOMIZED], seed=args.seed)
        metrics = ["randomization", "randomization_independent"]
        if args.sensitivity_samples:
            p = {"n_samples": args.sensitivity_samples}
            metrics += [(m, p) for m in ("max_sensitivity", "avg_sensitivity",
                                         "max_sensitivity_word", "avg_sensitivity_word")]
        df = fs.evaluate(exps, model, metrics, seed=args.seed)
        df.assign(detail=df["detail"].map(json.dumps)).to_parquet(out / "analysis_rows.parquet")
        curves = curve_table(df[df["family"] == "sanity"])
        curves.to_csv(out / "randomization_curves.csv", index=False)
        for metric in ("randomization", "randomization_independent"):
            mode = "cascading" if metric == "randomization" else "independent"
            say(f"\n## {mode} randomization (Spearman of |scores|, n={len(sents)}, 95 % CI)\n")
            say(curve_markdown(curves, metric))
            plot_curves(curves, metric, out / f"{metric}.png")
        if args.sensitivity_samples:
            from md_table import markdown

            rob = fs.summarize(df[df["family"] == "robustness"])
            rob.to_csv(out / "sensitivity_summary.csv", index=False)
            say(f"\n## Sensitivity ({args.sensitivity_samples} samples, lower is better)\n")
            say(markdown(rob))
        say(f"\n(randomization: {time.perf_counter() - t0:.0f} s)")

    if "ensembles" not in args.skip:
        from md_table import markdown

        t0 = time.perf_counter()
        sents = pick_dev(args.eval_n, seed=args.seed, offset=args.n)
        budget = {"n_samples": args.n_samples}
        lime, shap = ("lime", budget), ("kernel_shap", budget)
        top3 = [lime, shap, ig]
        everything = [lime, shap, ("shapley_sampling", {"n_permutations": 20}),
                      ("partition_shap", {"max_evals": args.n_samples}), ("leave_one_out", {}),
                      ig, ("gradient", {}), ("gradient_x_input", {}), ("attention", {}),
                      ("attention_rollout", {})]
        specs = [*top3, ("ensemble_top3", {"members": top3}),
                 ("ensemble_all", {"members": everything})]
        exps = fs.explain(model, sents, specs, seed=args.seed)
        df = fs.evaluate(exps, model, FAITHFULNESS, seed=args.seed)
        summary = fs.summarize(df)
        # The removal operator of each metric's rows (fs.evaluate's default, recorded per row).
        ops = {m: "/".join(sorted({str(o) for o in g["operator"] if isinstance(o, str) and o}))
               for m, g in df.groupby("metric")}
        summary["operator"] = [ops.get(m.split(" (")[0], "") for m in summary["metric"]]
        summary.to_csv(out / "ensembles_summary.csv", index=False)
        say(f"\n## Ensembles next to their members (n={len(sents)}, mean [95 % CI])\n")
        say("Removal operator (the rows' `operator` column): " + "; ".join(
            f"`{m}`: `{o}`" for m, o in sorted(ops.items())) + ".\n")
        say(markdown(summary))
        say(f"\n(ensembles: {time.perf_counter() - t0:.0f} s)")

    if "attacks" not in args.skip:
        t0 = time.perf_counter()
        sents = pick_dev(args.attack_n, seed=args.seed, offset=args.n + args.eval_n)
        attacked = [("integrated_gradients", {"n_steps": args.attack_ig_steps})
                    if n == "integrated_gradients" else (n, {}) for n in ATTACKED]
        exps = fs.explain(model, sents, attacked, seed=args.seed)
        params = {"steps": args.steps, "epsilon": args.epsilon}
        df = fs.evaluate(exps, model, [("explanation_attack", params),
                                       ("explanation_attack_constrained", params)],
                         random=False, seed=args.seed)
        df.assign(detail=df["detail"].map(json.dumps)).to_parquet(out / "attack_rows.parquet")
        table = attack_table(df)
        table.to_csv(out / "attack_table.csv", index=False)
        steps = [d["steps"] for d in df["detail"]]
        say(f"\n## Attacks on explanations (epsilon {args.epsilon}, k = 15 %, up to "
            f"{args.steps} steps (median run {int(np.median(steps))}), n={len(sents)})\n")
        say(attack_markdown(table))
        say(f"\n(attacks: {time.perf_counter() - t0:.0f} s)")
    (out / "report.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    print(f"\nwrote {out}/report.md, CSV tables, PNG curves and row-level parquet files")


if __name__ == "__main__":
    main()
