"""LRP on fine-tuned MiniLM-L6 checkpoints: conservation, runtime, and the issue-2 metrics
against Integrated Gradients and gradient x input.

    python experiments/lrp_check.py --checkpoint sst2_planted=DIR --checkpoint esnli=DIR

Conservation is measured with the ``logit`` target (relative error |sum R - logit| / |logit|;
MiniLM has biases, which absorb relevance); the metrics use the default ``prob`` target.
Writes ``experiments/out/lrp/{conservation,summary,checkpoints}.csv`` (``summary.csv`` with the
removal ``operator`` of each metric; ``checkpoints.csv`` with each checkpoint's model id, training
size and recipe, read from its ``faithscope_finetune.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import faithscope as fs
from faithscope.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
EXPLAINERS = [("lrp", {"rule": "cp"}), ("lrp", {"rule": "attnlrp"}),
              ("integrated_gradients", {"n_steps": 32}), ("gradient_x_input", {}),
              ("gradient", {}), ("random", {})]
METRICS = {"sst2_planted": ["gt_overlap", "recovery_depth", "mean_rank", "comprehensiveness", "sufficiency"],
           "esnli": ["token_f1", "auprc", "comprehensiveness", "sufficiency"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", action="append", required=True, help="DATASET=DIR")
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    cons, rows, ckpts = [], [], []
    for item in args.checkpoint:
        ds, path = item.split("=", 1)
        meta = Path(path) / "faithscope_finetune.json"
        rec = json.loads(meta.read_text()) if meta.exists() else {}
        ckpts.append({"dataset": ds, "model_id": rec.get("model_id", ""),
                      "base_model": rec.get("base_model", ""), "n_train": rec.get("n_train"),
                      "recipe": json.dumps(rec.get("recipe", {}), sort_keys=True)})
        model = fs.load_model(path, max_length=96)
        dev = load_dataset(ds, split="dev", n=args.n, seed=0)
        for name, params in EXPLAINERS[:2]:
            t0 = time.perf_counter()
            exps = fs.explain(model, dev.examples, (name, params), target_fn="logit")
            dt = (time.perf_counter() - t0) / len(exps)
            err = np.array([abs(e.info["conservation_error"][0]) for e in exps])
            val = np.array([abs(e.info["target_value"][0]) for e in exps])
            cons.append({"dataset": ds, "rule": params["rule"], "n": len(exps),
                         "median_rel_error": float(np.median(err / val)),
                         "mean_rel_error": float(np.mean(err / val)),
                         "s_per_explanation": dt})
        for name, params in EXPLAINERS:
            t0 = time.perf_counter()
            exps = fs.explain(model, dev.examples, (name, params))
            dt = (time.perf_counter() - t0) / len(exps)
            label = name if name != "lrp" else f"lrp[{params['rule']}]"
            df = fs.evaluate(exps, model, METRICS[ds], examples=dev.examples, random=False)
            s = fs.summarize(df)
            # The removal operator of each metric's rows (empty where nothing is removed).
            ops = {m: "/".join(sorted({str(o) for o in g["operator"] if isinstance(o, str) and o}))
                   for m, g in df.groupby("metric")}
            s["operator"] = [ops.get(m.split(" (")[0], "") for m in s["metric"]]
            rows += [{**r, "dataset": ds, "explainer": label, "s_per_explanation": dt}
                     for r in s.to_dict("records")]
            print(ds, label, f"{dt * 1000:.1f} ms/explanation", flush=True)
    out = ROOT / "experiments" / "out" / "lrp"
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(cons).to_csv(out / "conservation.csv", index=False)
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    pd.DataFrame(ckpts).to_csv(out / "checkpoints.csv", index=False)
    print(pd.DataFrame(ckpts).to_string(index=False))
    print(pd.DataFrame(cons).to_string(index=False))
    print(pd.DataFrame(rows).pivot_table(index=["dataset", "explainer"], columns="metric",
                                         values="mean").round(3).to_string())


if __name__ == "__main__":
    main()
