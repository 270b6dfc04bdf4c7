"""Markdown tables of ``experiments/generation.py``'s outputs (``experiments/out/generation``).

    python experiments/generation_tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "out" / "generation"


def ci(g: pd.DataFrame, metric: str) -> str:
    r = g[g.metric == metric]
    if r.empty:
        return "—"
    r = r.iloc[0]
    return f"{r['mean']:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


def main() -> None:
    s = pd.read_csv(OUT / "summary.csv")
    q = pd.read_csv(OUT / "queries.csv")
    print("| explainer | perturbation curve (log-prob drop) ↑ | perturbation curve (BERTScore "
          "drop) ↑ | comprehensiveness ↑ | sufficiency ↓ | flip rate ↑ | queries / prompt | "
          "units | s / prompt |")
    print("|---|---|---|---|---|---|---|---|---|")
    for e, g in s.groupby("explainer", sort=False):
        qq = q[q.explainer == e]
        print(f"| {e} | {ci(g, 'perturbation_curve')} | {ci(g, 'perturbation_curve_bertscore')}"
              f" | {ci(g, 'comprehensiveness')} | {ci(g, 'sufficiency')} | "
              f"{ci(g, 'flip_rate')} | {qq.queries.mean():.0f} | {qq.n_units.mean():.1f} | "
              f"{qq.s_per_explanation.iloc[0]:.2f} |")
    flat = q[~q.explainer.str.contains("multi")].groupby("explainer").queries.mean()
    multi = q[q.explainer.str.contains("multi")].groupby("explainer").queries.mean()
    print("\nqueries, multi-level / flat word level: " + ", ".join(
        f"{k}: {multi[k + ' (multi)']:.0f} / {v:.0f} = {multi[k + ' (multi)'] / v:.2f}"
        for k, v in flat.items() if k + " (multi)" in multi))
    out = pd.read_csv(OUT / "outputs.csv")
    print("\nexample output:", repr(out.prompt[0]), "->", repr(out.output[0]))
    path = OUT / "self_explanations.csv"
    if path.exists():
        se = pd.read_csv(path)
        print("\n| model | accuracy | explainer | token F1 ↑ | IOU F1 ↑ | flip rate ↑ |")
        print("|---|---|---|---|---|---|")
        for (m, e), g in se.groupby(["model", "explainer"], sort=False):
            print(f"| {m} | {g.accuracy.iloc[0]:.2f} | {e} | {ci(g, 'token_f1')} | "
                  f"{ci(g, 'iou_f1')} | {ci(g, 'flip_rate')} |")
        ans = pd.read_csv(OUT / "answers.csv")
        ans["n_parsed"] = ans.parsed.map(lambda x: len(json.loads(x)))
        ans["n_unmatched"] = ans.unmatched.map(lambda x: len(json.loads(x)))
        for (m, t), g in ans.groupby(["model", "template"]):
            print(f"{m}, template {t}: answers with >= 1 word found in the text "
                  f"{(g.n_selected > 0).mean():.2f}, words selected {g.n_selected.mean():.1f}, "
                  f"items parsed {g.n_parsed.mean():.1f} of which not in the text "
                  f"{g.n_unmatched.mean():.1f}; e.g. {g.answer.iloc[0][:90]!r}")
        lora = json.loads((OUT / "lora.json").read_text())
        print("LoRA loss per epoch:", np.round(lora["loss_history"], 3).tolist())


if __name__ == "__main__":
    main()
