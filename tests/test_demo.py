"""The README's main job: `faithscope demo` runs a small study offline, shows fine-tuning
progress per step, caches the checkpoint in the user cache and resumes on rerun."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from faithscope.demo import (
    DEMO_EXPLAINERS,
    DEMO_METRICS,
    demo_explainers,
    demo_spec,
    run_demo,
    spare_threads,
)
from faithscope.models.finetune import Recipe
from faithscope.studies import open_study
from helpers import torch_threads

pytestmark = pytest.mark.integration


def test_demo_is_a_resumable_study(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAITHSCOPE_CACHE", str(cache))
    out_dir = tmp_path / "demo"
    buf = io.StringIO()
    console = Console(file=buf, width=160)  # not a terminal: progress comes as lines
    with torch_threads(2):
        out = run_demo(n_examples=2, n_show=1, n_train=64, console=console, out_dir=out_dir)
    text = buf.getvalue()
    assert "GLUE SST-2 dev accuracy" in text and "(872 sentences; majority baseline 0.509)" in text
    study = open_study(out)
    acc = float(study.models().iloc[0]["accuracy"])
    assert ("WARNING: this classifier is weak" in text) == (acc < 0.75)  # 64 sentences: weak
    # fine-tuning progress per step (64 sentences, batches of 16: 4 steps), stage times
    assert "fine-tune step 4/4  loss" in text and "eta 0 s" in text
    assert "time per stage (wall): load" in text and "fine-tune" in text and "report" in text
    # the checkpoint went to the user cache, not the study
    assert [p.name for p in (cache / "finetuned").iterdir() if not p.name.startswith(".")]
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    assert (out_dir / "report.html").stat().st_size > 10_000 and "report.html" in text
    n = len(DEMO_EXPLAINERS)  # the quick set, random included
    assert study.progress() == {"finetune": (1, 1), "explain": (n, n), "metrics": (n, n),
                                "analysis": (0, 0)}
    df = study.metrics()
    # quick explainers x 2 sentences x 4 metrics
    assert len(df) == n * 2 * 4 and set(df["explainer"]) == {e for e, _ in DEMO_EXPLAINERS}
    assert (out_dir / "explanations.jsonl").read_text().count("\n") == n
    buf2 = io.StringIO()
    with torch_threads(2):
        run_demo(n_examples=2, n_show=1, n_train=64, console=Console(file=buf2, width=160),
                 out_dir=out_dir)
    total = sum(b for _, b in study.progress().values())
    assert f"{total} already done, 0 to run" in buf2.getvalue()
    assert "resumed" in buf2.getvalue() and "fine-tune step" not in buf2.getvalue()


def test_demo_spec_quick_and_full():
    quick, full = demo_spec(encoder="x"), demo_spec(encoder="x", full=True)
    names = [e.name for e in quick.explainers]
    assert names == [e for e, _ in DEMO_EXPLAINERS] and "random" in names
    assert set(names) < set(demo_explainers())
    # --full: every registered classifier explainer with its defaults (the old demo)
    assert [e.name for e in full.explainers] == demo_explainers()
    assert all(e.params == {} for e in full.explainers)
    assert quick.metrics == full.metrics == DEMO_METRICS
    # one fast recipe for both: the last layers + head, one epoch, cached in the user cache
    assert quick.recipe == full.recipe and quick.recipe["epochs"] == 1
    r = Recipe(**quick.recipe)
    assert r.train_layers == 2 and r.group_by_length and r.max_length == 48
    assert quick.datasets[0].train_n == 1500 and quick.datasets[0].accuracy_n == 872


def test_spare_threads_never_adds_threads():
    assert 1 <= spare_threads(2, interval=0.05) <= 2
    assert spare_threads(1, interval=0.05) == 1
