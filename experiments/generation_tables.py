"""Markdown tables of ``experiments/generation.py``'s outputs (``experiments/out/generation``).

Part 1 (summary.csv, queries.csv, curves.csv, outputs.csv): one table per query budget
(mexgen_loo's, mexgen_lshap's), each with the MExGen kernel that sets it, the explainers
matched to it and random, flat word-level rows then multi-level rows. Columns: the perturbation
curves over the fraction of the prompt's words (log p(output) and BERTScore drops, as removed
and at exact word fractions), the words removed at the 50 % step, the flip rate at the top-1
unit and that unit's words, queries per prompt, queries / budget and units per prompt; under
each table, the prompts whose queries stayed outside the tolerance, kernel_shap runs whose
regression is underdetermined, and C-LIME's ceiling. Then the mean curves step by step (with the
fractions actually reached) and the multi-level / flat query ratio of the MExGen kernels.

Part 2 (classifiers.csv, self_explanations.csv, answers.csv): per task and classifier (prompted,
LoRA fine-tuned) its accuracy next to the majority-class baseline on the same dev examples, the
predicted classes, the training loss against ln(number of classes), the dev loss and the answer
coverage per template; a bold line wherever the classifier does not beat the majority baseline
(that table does not rank the explainers); the table (token F1, IOU F1, flip rate, coverage);
and what the answers contained.

    python experiments/generation_tables.py > experiments/out/generation/tables.md
    GEN_OUT=path/to/other/output python experiments/generation_tables.py   # another run
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__import__("os").environ.get("GEN_OUT", Path(__file__).resolve().parent / "out" / "generation"))
BUDGET_TITLE = {
    "mexgen_loo": "mexgen_loo's: one query per unit (and refinement round), plus the prompt",
    "mexgen_lshap": "mexgen_lshap's: about 8 queries per unit (each removal of at most 2 of its "
                    "4 neighbours, with and without the unit)",
}


def ci(s: pd.DataFrame, explainer: str, metric: str) -> str:
    r = s[(s.explainer == explainer) & (s.metric == metric)]
    if r.empty or pd.isna(r.iloc[0]["mean"]):
        return "—"
    r = r.iloc[0]
    return f"{r['mean']:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


def part1() -> None:
    s = pd.read_csv(OUT / "summary.csv")
    q = pd.read_csv(OUT / "queries.csv", keep_default_na=False)
    n = q.example_id.nunique()
    tol = q[q.budget_of != ""].groupby("mode").tol.first()
    print(f"## Part 1: MExGen vs baselines at equal query budgets ({n} prompts)\n")
    print("stories260K (the bundled TinyStories decoder); each prompt's greedy 16-token "
          "continuation is explained on flat word units (`words`) and on multi-level units "
          "(`sentence > phrase > word`: the top 30 % of each level refined per round).\n")
    print("- **Perturbation curves: the x axis is the fraction of the prompt's WORDS removed** "
          "(`fraction_of=\"words\"`): the top units (ranked by score per word) are removed "
          "whole until they cover each fraction; log p(original output): 10 steps up to 50 % "
          "of the words; BERTScore (MiniLM-L6) between the original and the re-generated "
          "output: 5 steps up to 50 %. *As removed*: the metric's value, the mean drop over the "
          "steps at the fractions actually reached; whole units overshoot, little for words "
          "but a lot for sentences (column *words removed at the 50 % step*; the curve tables "
          "below give every step), so multi-level rows remove more text than flat ones. *At "
          "exact fractions*: each prompt's drop interpolated linearly at the nominal fractions "
          "(from 0 words, drop 0) and averaged: comparable between flat and multi-level rows. "
          "Higher = better.")
    print("- Flip rate: share of prompts whose greedy output changes once the top-1 unit alone "
          "is removed (the smallest removal; column *words in top-1 unit*: one word in flat "
          "rows, often a phrase or a sentence in multi-level rows, so compare within a unit "
          "type).")
    print("- Queries: distinct perturbed prompts the model scored per prompt (all refinement "
          "rounds). The MExGen kernel named in the title runs first with its default "
          "hyper-parameters; lime / kernel_shap (`n_samples`), partition_shap (`max_evals`) "
          "and, in the second table, mexgen_clime (`oversampling`) then get their parameter "
          "set per prompt so that their queries on that prompt match its budget (within "
          f"{float(tol['flat']):.0%} flat / {float(tol['multi']):.0%} multi-level, or one "
          "query; at most 5 runs per prompt; the run closest to the budget is kept). "
          "*queries / budget*: total over the prompts.")
    print("- random (no queries) is the chance level of each unit type; compare multi-level "
          "rows with random (multi), whose coarse units alone remove large contiguous spans. "
          "95 % bootstrap CIs over prompts.\n")
    cv = pd.read_csv(OUT / "curves.csv")
    for m, title in BUDGET_TITLE.items():
        rows = q[(q.budget_of == m) | (q.method.isin([m, "random"]) & (q.budget_of == ""))]
        print(f"### Budget = {title}\n")
        print("| explainer | units | log-prob drop, as removed ↑ | log-prob drop at exact "
              "word fractions ↑ | BERTScore drop, as removed ↑ | BERTScore drop at exact word "
              "fractions ↑ | words removed at the 50 % step | flip rate, top-1 unit ↑ | words "
              "in top-1 unit | queries / prompt | queries / budget | units / prompt |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        last = cv[(cv.metric == "perturbation_curve") & (cv.step == cv.step.max())]
        last = last.set_index("explainer").x_reached
        for mode in ("flat", "multi"):
            order = [m, "mexgen_clime", "lime", "kernel_shap", "partition_shap", "random"]
            for meth in order:
                g = rows[(rows["mode"] == mode) & (rows.method == meth)]
                if g.empty:
                    continue
                e = g.explainer.iloc[0]
                ratio = "—" if meth == "random" else f"{g.queries.sum() / g.budget.sum():.3f}"
                units = "words" if mode == "flat" else "sentence > phrase > word"
                print(f"| {e} | {units} | {ci(s, e, 'perturbation_curve')} | "
                      f"{ci(s, e, 'perturbation_curve_interp')} | "
                      f"{ci(s, e, 'perturbation_curve_bertscore')} | "
                      f"{ci(s, e, 'perturbation_curve_bertscore_interp')} | {last[e]:.0%} | "
                      f"{ci(s, e, 'flip_rate')} | {g.top1_words.mean():.1f} | "
                      f"{g.queries.mean():.1f} | {ratio} | {g.n_units.mean():.1f} |")
        notes = []
        for e, g in rows[rows.budget_of == m].groupby("explainer", sort=False):
            t = pd.to_numeric(g.tol)
            off = g[(g.queries - g.budget).abs() > np.maximum(t * g.budget, 1)]
            if len(off):
                r = off.queries / off.budget
                notes.append(f"{e} on {len(off)} of {len(g)} prompts (queries / budget "
                             f"{r.min():.2f}-{r.max():.2f})")
        if notes:
            print("\nOutside the tolerance after 5 runs: " + "; ".join(notes) + ".")
        ks = rows[(rows.method == "kernel_shap") & (rows.budget_of == m)]
        under = ks[pd.to_numeric(ks.param) < 2 * (ks.n_units - 1)]
        if len(under):
            print(f"kernel_shap is underdetermined on {len(under)} of {len(ks)} (prompt, mode) "
                  "runs at this budget (final round: `n_samples` < 2 (units - 1), the least "
                  "its paired-sampling regression needs; the last unit absorbs the remainder).")
        if "mexgen_clime" in set(rows.method):
            print("mexgen_clime cannot spend more queries than there are removals of at most "
                  "`max_units_replace` = 2 units (1 + n + n(n-1)/2 per round); with the few "
                  "units of multi-level rounds it uses all of them below L-SHAP's budget, which "
                  "also removes 3 units (a unit and two neighbours).")
        print()
    for metric, what in (("perturbation_curve", "log p(output)"),
                         ("perturbation_curve_bertscore", "BERTScore")):
        c = cv[cv.metric == metric]
        steps = sorted(c.x_target.unique())
        print(f"### Perturbation curves, drop of {what} at each step (x = fraction of words)\n")
        print("Mean drop after removing the top units covering each fraction of the prompt's "
              "words; in parentheses the mean fraction actually removed (whole units overshoot) "
              "where it differs from the nominal one by more than 0.01.\n")
        print("| explainer | " + " | ".join(f"{x:.0%}" for x in steps) + " |")
        print("|---|" + "---|" * len(steps))
        for e, g in c.groupby("explainer", sort=False):
            cells = []
            for x in steps:
                r = g[g.x_target == x].iloc[0]
                extra = f" ({r.x_reached:.2f})" if abs(r.x_reached - x) > 0.01 else ""
                cells.append(f"{r['drop']:.{3 if 'bert' in metric else 2}f}{extra}")
            print(f"| {e} | " + " | ".join(cells) + " |")
        print()
    flat = q[(q["mode"] == "flat") & (q.budget_of == "")].groupby("method").queries.mean()
    multi = q[(q["mode"] == "multi") & (q.budget_of == "")].groupby("method").queries.mean()
    print("MExGen queries per prompt, multi-level / flat word level: " + ", ".join(
        f"{k}: {multi[k]:.1f} / {v:.1f} = {multi[k] / v:.2f}"
        for k, v in flat.items() if k in multi and v > 0))
    out = pd.read_csv(OUT / "outputs.csv")
    print("\nexample output:", repr(out.prompt[0]), "->", repr(out.output[0]))


def part2() -> None:
    path = OUT / "self_explanations.csv"
    if not path.exists():
        return
    se = pd.read_csv(path)
    clf = pd.read_csv(OUT / "classifiers.csv")
    ans = pd.read_csv(OUT / "answers.csv", keep_default_na=False)
    ans["n_parsed"] = ans.parsed.map(lambda x: len(json.loads(x)))
    ans["n_unmatched"] = ans.unmatched.map(lambda x: len(json.loads(x)))
    print("\n## Part 2: self-explanations of prompted classifiers (stories260K)\n")
    print("The LM answers a classification prompt through verbalizers (before and after LoRA "
          "fine-tuning of its attention on the verbalizers' cross-entropy); self_explanation[t] "
          "asks it, with template t, which words of the text its answer rests on, parsed into a "
          "word selection. Token F1 / IOU F1 against the rationale (rationale-less examples "
          "left out), flip rate (predicted class changes once the selected words, or the top "
          "20 % of the units for rankings, are removed), coverage (share of answers that "
          "select any word of the text). Majority baseline = accuracy of always predicting the "
          "most frequent gold class of the same dev examples. Training loss: cross-entropy "
          "over the verbalizers on the training examples (the prompted model: before any "
          "training; LoRA: mean over the last epoch), to compare with ln(number of classes), "
          "the loss of a uniform guess.\n")
    for _, c in clf.iterrows():
        g = se[(se.task == c.task) & (se.model == c.model)]
        a = ans[(ans.task == c.task) & (ans.model == c.model)]
        print(f"### {c.task}: {c.model}\n")
        cov = ", ".join(f"template {t}: {gg.n_selected.gt(0).mean():.2f}"
                        for t, gg in a.groupby("template"))
        lossline = (f"{c.train_loss:.3f} (before training)" if c.model == "prompted" else
                    f"{c.train_loss:.3f} after {int(c.epochs)} epochs (per epoch: "
                    f"{', '.join(f'{v:.3f}' for v in json.loads(c.loss_history))})")
        print(f"- accuracy **{c.accuracy:.2f}** vs majority baseline **{c.majority:.2f}** "
              f"({int(c.n_dev)} dev examples; predicted classes {c.predicted})")
        print(f"- training loss {lossline} vs ln {int(c.n_classes)} = "
              f"{math.log(c.n_classes):.3f}; dev loss {c.dev_loss:.3f}")
        print(f"- answer coverage (answers selecting any word of the text): {cov}\n")
        if c.accuracy <= c.majority:
            print(f"**Classifier does not beat the majority baseline (acc {c.accuracy:.2f} vs "
                  f"{c.majority:.2f}): this table does not rank the explainers.**\n")
        print("| explainer | token F1 ↑ | IOU F1 ↑ | flip rate ↑ | coverage |")
        print("|---|---|---|---|---|")
        for e in g.explainer.unique():
            print(f"| {e} | {ci(g, e, 'token_f1')} | {ci(g, e, 'iou_f1')} | "
                  f"{ci(g, e, 'flip_rate')} | {ci(g, e, 'coverage')} |")
        print()
        for t, gg in a.groupby("template"):
            print(f"- template {t}: answers with >= 1 word found in the text "
                  f"{gg.n_selected.gt(0).mean():.2f}, words selected {gg.n_selected.mean():.1f}, "
                  f"items parsed {gg.n_parsed.mean():.1f} of which not in the text "
                  f"{gg.n_unmatched.mean():.1f}; e.g. {gg.answer.iloc[0][:80]!r}")
        print()


def main() -> None:
    part1()
    part2()


if __name__ == "__main__":
    main()
