"""CLI: explain writes explanations and heatmaps; bad input gives one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

import faithscope as fs
from faithscope.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "faithscope.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_list_explainers(capsys):
    assert main(["list", "explainers"]) == 0
    names = capsys.readouterr().out.split()
    assert names == fs.registry.explainers.names() and len(names) == 19


def test_explain_writes_file_and_heatmap(model_dir, tmp_path, capsys):
    out = tmp_path / "e.jsonl"
    code = main(["explain", "--model", model_dir, "--text", "a good film", "--pair",
                 "a bad movie", "--explainer", "lime", "--explainer", "integrated_gradients",
                 "--param", "lime.n_samples=50", "--n-steps", "8", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "lime" in printed and "integrated_gradients" in printed and "good" in printed
    exps = fs.load_explanations(out)
    assert [e.explainer for e in exps] == ["lime", "integrated_gradients"]
    assert exps[0].params["n_samples"] == 50 and exps[1].params["n_steps"] == 8
    assert exps[0].pair == "a bad movie"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--text", "   "], "empty"),
        (["--text", "ok", "--explainer", "lmie"], "did you mean 'lime'"),
        (["--text", "ok", "--n-samples", "0"], "positive"),
        (["--text", "ok", "--explainer", "integrated_gradients", "--n-steps", "-3"], "positive"),
        (["--text", "ok", "--target", "7"], "out of range"),
        (["--text", "good " * 200, "--strict"], "more than the model"),
        (["--text", "ok", "--param", "lime.bogus=1"], "unknown hyper-parameter"),
    ],
)
def test_bad_input_one_line_exit_2(model_dir, args, needle):
    argv = ["explain", "--model", model_dir, *args]
    if "--explainer" not in args:
        argv += ["--explainer", "lime"]
    res = run(*argv)
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_model_path(tmp_path):
    res = run("explain", "--model", str(tmp_path / "nope"), "--text", "x", "--explainer", "lime")
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_too_long_text_is_truncated_with_warning(model_dir, capsys):
    assert main(["explain", "--model", model_dir, "--text", "good " * 200, "--explainer",
                 "gradient"]) == 0
    assert "truncated" in capsys.readouterr().out


def test_evaluate_prints_table_and_writes_results(model_dir, tmp_path):
    from pathlib import Path

    import pandas as pd

    data = Path(__file__).parent / "assets" / "data" / "sst2"
    out = tmp_path / "ev"
    res = run("evaluate", "--model", model_dir, "--dataset", "sst2_planted", "--data-path",
              str(data), "--n", "6", "--explainers", "leave_one_out", "gradient",
              "--metrics", "gt_overlap", "aopc_comprehensiveness", "--n-boot", "50",
              "--output", str(out))
    assert res.returncode == 0, res.stderr
    for word in ("gt_overlap ↑", "aopc_comprehensiveness ↑", "random", "leave_one_out", "±"):
        assert word in res.stdout
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["explainer"]) == {"leave_one_out", "gradient", "random"}
    tidy = pd.read_parquet(out / "metrics.parquet")
    assert len(tidy) == 6 * 3 * 2
    assert len(fs.load_explanations(out / "explanations.parquet")) == 6 * 3


def test_list_metrics_and_datasets(capsys):
    assert main(["list", "metrics"]) == 0
    names = capsys.readouterr().out.split()
    assert {"comprehensiveness", "iou_f1", "gt_overlap", "deletion_curve"} <= set(names)
    assert main(["list", "datasets"]) == 0
    assert {"sst2_planted", "esnli", "cose", "eraser", "hatexplain"} <= set(
        capsys.readouterr().out.split())


def test_evaluate_unknown_dataset_exit_2(model_dir):
    res = run("evaluate", "--model", model_dir, "--dataset", "sst3")
    assert res.returncode == 2 and "did you mean 'sst2'" in res.stderr
