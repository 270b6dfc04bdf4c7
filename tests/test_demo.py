"""The README's main job: `faithscope demo` runs a small study offline and resumes on rerun."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from faithscope.demo import demo_explainers, demo_spec, run_demo
from faithscope.studies import open_study
from helpers import torch_threads

pytestmark = pytest.mark.integration


def test_demo_is_a_resumable_study(tmp_path):
    buf = io.StringIO()
    console = Console(file=buf, width=160)
    with torch_threads(2):
        out = run_demo(n_examples=2, n_show=1, n_train=64, console=console, out_dir=tmp_path)
    text = buf.getvalue()
    assert "GLUE SST-2 dev accuracy" in text and "(872 sentences)" in text
    assert (tmp_path / "report.html").stat().st_size > 10_000 and "report.html" in text
    study = open_study(out)
    n = len(demo_explainers())  # random included
    assert study.progress() == {"finetune": (1, 1), "explain": (n, n), "metrics": (n, n),
                                "analysis": (0, 0)}
    df = study.metrics()
    # every registered explainer (random included) x 2 sentences x 4 metrics
    assert len(df) == n * 2 * 4 and set(df["explainer"]) == set(demo_explainers())
    assert (tmp_path / "explanations.jsonl").read_text().count("\n") == n
    buf2 = io.StringIO()
    with torch_threads(2):
        run_demo(n_examples=2, n_show=1, n_train=64, console=Console(file=buf2, width=160),
                 out_dir=tmp_path)
    total = sum(b for _, b in study.progress().values())
    assert f"{total} already done, 0 to run" in buf2.getvalue()
    assert demo_spec(encoder="x").recipe["epochs"] == 1
