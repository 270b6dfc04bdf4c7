"""``faithscope audit``: the verdict rule on hand-made numbers, and the whole command on a tiny
model (CLI, files, resume, a failing explainer, bad input, the HTML page in Chromium)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faithscope.audits.budgets import BUDGETS, audit_spec
from faithscope.audits.verdict import PLANTED_MIN, SANITY_MAX, STABILITY_MIN, judge
from faithscope.cli import main
from helpers import ASSETS, kill_9_midway, save_tiny

DATA = ASSETS / "data"


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``faithscope ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ the rule, by hand
def _rows(explainer: str, metric: str, values, details=None) -> list[dict]:
    details = details or [{}] * len(values)
    return [{"explainer": explainer, "metric": metric, "value": v, "detail": json.dumps(d)}
            for v, d in zip(values, details, strict=True)]


def _curve(final: float, n: int) -> list[dict]:
    return [{"steps": ["head", "layer 0", "embeddings"], "values": [0.9, 0.7, final]}] * n


def _explainer(name, comp, aopc, final, stab=None, det=True, n=40):
    rows = _rows(name, "comprehensiveness", comp)
    rows += _rows(name, "aopc_comprehensiveness", aopc)
    rows += _rows(name, "randomization", [0.5] * n, _curve(final, n))
    st = stab if stab is not None else [1.0] * n
    rows += _rows(name, "sampling_stability", st, [{"deterministic": det}] * n)
    return rows


def test_verdict_gates_and_tie_break_by_cost():
    rng = np.random.default_rng(0)
    n = 40
    high = list(0.6 + 0.02 * rng.standard_normal(n))
    low = list(0.1 + 0.02 * rng.standard_normal(n))
    rows = (_explainer("slow_best", high, list(np.array(high) - 0.01), 0.1)
            + _explainer("cheap_tied", high, list(np.array(high) - 0.012), 0.1)
            + _explainer("unfaithful", low, low, 0.1)
            + _explainer("insane", high, high, 0.95)
            + _explainer("noisy", high, high, 0.1, stab=[0.3] * n, det=False)
            + _explainer("misses_plant", high, high, 0.1)
            + _explainer("random", low, low, 1.0))
    planted = (_rows("slow_best", "gt_overlap", [1.0] * n) + _rows("cheap_tied", "gt_overlap",
                                                                  [1.0] * n)
               + _rows("misses_plant", "gt_overlap", [1.0] * 8 + [0.0] * 32)
               + _rows("random", "gt_overlap", [0.0] * 36 + [1.0] * 4))
    names = ["slow_best", "cheap_tied", "unfaithful", "insane", "noisy", "misses_plant",
             "crashed"]
    costs = {"slow_best": {"seconds_per_explanation": 2.0},
             "cheap_tied": {"seconds_per_explanation": 0.1}}
    v = judge(pd.DataFrame(rows), pd.DataFrame(planted), explainers=[(x, {}) for x in names],
              costs=costs, errors={"crashed": "explain failed: RuntimeError: boom"},
              planted_accuracy=1.0, planted_asked=True, rank_by="aopc_comprehensiveness",
              higher_is_better=True, n_boot=200)
    by = {e.name: e for e in v.explainers}
    assert by["slow_best"].passed and by["cheap_tied"].passed
    assert [g.name for g in by["unfaithful"].failures()] == ["faithful"]
    assert [g.name for g in by["insane"].failures()] == ["sanity"]
    assert str(SANITY_MAX) in by["insane"].gates["sanity"].reason
    assert [g.name for g in by["noisy"].failures()] == ["stable"]
    assert str(STABILITY_MIN) in by["noisy"].gates["stable"].reason
    assert [g.name for g in by["misses_plant"].failures()] == ["planted"]
    assert f"{PLANTED_MIN:.0%}" in by["misses_plant"].gates["planted"].reason
    assert by["slow_best"].gates["stable"].status == "n/a"  # deterministic
    assert by["crashed"].error and not by["crashed"].passed
    # slow_best has the best mean, cheap_tied's CI overlaps it and it is cheaper: it wins
    assert by["slow_best"].scores["aopc_comprehensiveness"]["mean"] > \
        by["cheap_tied"].scores["aopc_comprehensiveness"]["mean"]
    assert v.recommended == "cheap_tied" and set(v.tied) >= {"slow_best", "cheap_tied"}
    assert v.sentence.startswith("Use cheap_tied") and "cheapest" in v.sentence
    # an untrained planted model makes the planted gate inconclusive, never a failure
    v2 = judge(pd.DataFrame(rows), pd.DataFrame(planted), explainers=[("misses_plant", {})],
               costs={}, errors={}, planted_accuracy=0.6, planted_asked=True,
               rank_by="aopc_comprehensiveness", higher_is_better=True, n_boot=200)
    assert v2.explainers[0].gates["planted"].status == "inconclusive"
    assert v2.recommended == "misses_plant"


def test_no_explainer_passes_names_the_closest():
    n = 30
    low = [0.1] * n
    rows = _explainer("a", low, low, 0.1) + _explainer("random", low, low, 1.0)
    v = judge(pd.DataFrame(rows), None, explainers=[("a", {})], costs={}, errors={},
              planted_accuracy=None, planted_asked=False, rank_by="aopc_comprehensiveness",
              higher_is_better=True, n_boot=100)
    assert v.recommended is None
    assert v.sentence.startswith("No explainer passes every gate") and "closest is a" in v.sentence


def test_budgets_set_costs_and_the_plan():
    spec = audit_spec(source="m", data="sst2", data_params={}, split="dev", n=50,
                      explainers=["lime", "integrated_gradients"], budget=BUDGETS["fast"],
                      planted=True, train_split="train", generative=False, max_length=64,
                      seed=0, device="cpu")
    assert [e.params for e in spec.explainers] == [{"n_samples": 100}, {"n_steps": 16}]
    main_d, planted = spec.datasets
    assert main_d.finetune is False and planted.finetune is True
    assert main_d.metric_n == {"randomization": 3, "sampling_stability": 10}
    assert "avg_sensitivity" not in main_d.metrics  # not run by the fast budget
    std = audit_spec(source="m", data="sst2", data_params={}, split="dev", n=50,
                     explainers=["lime"], budget=BUDGETS["standard"], planted=False,
                     train_split="train", generative=False, max_length=64, seed=0,
                     device="cpu")
    assert std.datasets[0].metric_n["avg_sensitivity"] == 10 and len(std.datasets) == 1
    assert planted.name == "planted" and planted.params["base"] == "sst2"
    assert BUDGETS["fast"].samples < BUDGETS["standard"].samples < BUDGETS["thorough"].samples


# ------------------------------------------------------------------ the command, on a tiny model
ARGS = ["--data", "sst2", "--data-path", str(DATA / "sst2"), "--n", "5", "--explainers",
        "gradient", "leave_one_out", "lime"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_tiny(tmp_path_factory.mktemp("audit-model"), seed=3))


@pytest.fixture(scope="module")
def audited(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    res = run_cli(["audit", "--model", tiny_dir, *ARGS, "--planted", "--out", str(out)])
    return out, res


def test_audit_prints_the_table_and_writes_both_files(audited):
    out, (code, text, err) = audited
    assert code == 0, err
    for needed in ("faithful", "sanity", "stable", "planted", "gradient", "leave_one_out",
                   "lime", "random (baseline)", "budget fast", "rule:"):
        assert needed in text, needed
    assert "Use " in text or "No explainer passes every gate" in text
    data = json.loads((out / "audit.json").read_text())
    assert data["budget"]["name"] == "fast" and data["setting"]["n"] == 5
    assert {e["name"] for e in data["explainers"]} == {"gradient", "leave_one_out", "lime"}
    for e in data["explainers"]:
        assert set(e["gates"]) == {"faithful", "sanity", "stable", "planted"}
        assert e["cost"]["seconds_per_explanation"] > 0
        assert e["cost"]["model_rows_per_explanation"] > 0
        assert "comprehensiveness" in e["scores"] and "gt_overlap (planted)" in e["scores"]
    lime = next(e for e in data["explainers"] if e["name"] == "lime")
    assert lime["gates"]["stable"]["status"] in ("pass", "fail")  # measured: it samples
    gradient = next(e for e in data["explainers"] if e["name"] == "gradient")
    assert gradient["gates"]["stable"]["status"] == "n/a"  # deterministic
    # the tiny model cannot learn the planted word from 30 sentences: said, not judged
    assert data["setting"]["planted_accuracy"] < 0.9
    assert gradient["gates"]["planted"]["status"] == "inconclusive"
    assert "comprehensiveness" in data["random"]
    assert str(Path.home()) not in (out / "audit.json").read_text()
    assert (out / "audit.html").read_text().startswith("<!DOCTYPE html>")


def test_audit_resumes_without_recomputing(audited, tiny_dir):
    out, _ = audited
    shards = sorted((out / "study").rglob("*.parquet"))
    victim = next(p for p in shards if "metrics" in p.parts)
    victim.unlink()  # as if killed before this unit finished
    code, text, err = run_cli(["audit", "--model", tiny_dir, *ARGS, "--planted", "--out",
                               str(out)])
    assert code == 0, err
    assert "1 to run" in text


def _verdicts(out: Path) -> list[tuple]:
    data = json.loads((out / "audit.json").read_text())
    return [(e["name"], {g: v["status"] for g, v in e["gates"].items()},
             {m: round(v["mean"], 6) for m, v in e["scores"].items()})
            for e in data["explainers"]]


def test_kill_9_then_rerun_equals_an_uninterrupted_audit(audited, tiny_dir, tmp_path):
    """A real SIGKILL in the middle of an audit; the rerun recomputes only the unfinished units
    and gives the same table as the uninterrupted run."""
    import os
    import subprocess
    import sys

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "faithscope.cli", "audit", "--model", tiny_dir, *ARGS,
           "--planted", "--out", str(out)]
    n_before, total = kill_9_midway(cmd, out / "study")
    assert 0 < n_before < total and not (out / "audit.json").exists()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{n_before} already done" in done.stdout
    assert _verdicts(out) == _verdicts(audited[0])


def test_an_explainer_that_fails_mid_run_is_reported(tiny_dir, tmp_path, monkeypatch):
    import faithscope as fs
    from faithscope.explainers.perturbation import LeaveOneOut

    real = LeaveOneOut.attribute

    def flaky(self, adapter, items, target_fn):
        if len(items) > 1:  # the probe (one example) passes; the study's shard fails
            raise RuntimeError("out of luck")
        return real(self, adapter, items, target_fn)

    monkeypatch.setattr(LeaveOneOut, "attribute", flaky)
    r = fs.audit(tiny_dir, "sst2", data_params={"path": str(DATA / "sst2")}, n=4,
                 explainers=["gradient", "leave_one_out"], out=tmp_path, quiet=True)
    by = {e.name: e for e in r.verdict.explainers}
    assert "out of luck" in by["leave_one_out"].error and not by["leave_one_out"].passed
    assert by["gradient"].error is None and "comprehensiveness" in by["gradient"].scores


@pytest.mark.parametrize("extra,needle", [
    (["--n", "500"], "larger than the data"),
    (["--explainers", "self_explanation"], "does not apply"),
    (["--explainers", "nonsense"], "nonsense"),
    (["--budget", "fast", "--rank-by", "iou_f1"], "rank_by"),
])
def test_bad_input_is_one_line_exit_2(tiny_dir, tmp_path, extra, needle):
    args = ["audit", "--model", tiny_dir, "--data", "sst2", "--data-path", str(DATA / "sst2"),
            "--n", "3", "--explainers", "gradient", "--out", str(tmp_path / "o")]
    code, _, err = run_cli(args + extra)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_no_head_and_unlabelled_planted_are_refused(tmp_path):
    from faithscope.models.tiny import tiny_classifier
    bare = tmp_path / "bare"
    tiny = tiny_classifier()
    tiny.model.base_model.save_pretrained(bare)  # an encoder without its head
    tiny.tokenizer.save_pretrained(bare)
    code, _, err = run_cli(["audit", "--model", str(bare), "--data", "sst2", "--data-path",
                            str(DATA / "sst2"), "--n", "3"])
    assert code == 2 and "no classification head" in err, err
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text('{"text": "a fine film"}\n{"text": "a dull one"}\n')
    model = save_tiny(tmp_path / "m")
    code, _, err = run_cli(["audit", "--model", str(model), "--data", str(unlabelled),
                            "--split", "train", "--n", "2", "--planted"])
    assert code == 2 and "labelled" in err, err


def test_audit_page_in_chromium(browser, audited):
    out, _ = audited
    page = browser.new_page()
    events: list[str] = []
    page.on("console", lambda m: events.append(m.text))
    page.on("pageerror", lambda e: events.append(str(e)))
    page.on("request", lambda r: events.append(r.url)
            if not r.url.startswith(("file:", "data:", "about:")) else None)
    page.goto((out / "audit.html").as_uri())
    assert page.locator("section#verdict p.verdict").is_visible()
    rows = page.locator("section#verdict table tbody tr")
    assert rows.count() == 4  # three explainers and the random baseline
    assert page.locator("section#verdict td.fail, section#verdict td.pass").count() > 0
    assert "budget" in page.locator("section#setting").inner_text().lower()
    assert events == []
    page.close()


def test_generative_model_audit_measures_what_applies(tmp_path):
    """A causal LM goes through the same audit: faithfulness of generated text (log-prob
    target) against random; sanity and stability are analyses of classifiers (n/a, said)."""
    import faithscope as fs

    r = fs.audit(str(ASSETS / "stories260K"), "prompts", n=2, explainers=["leave_one_out"],
                 out=tmp_path, quiet=True)
    assert r.setting["kind"] == "generative"
    for e in r.verdict.explainers:
        assert e.error is None, e.error
        assert e.gates["faithful"].status in ("pass", "fail")
        assert e.gates["sanity"].status == "n/a" and e.gates["planted"].status == "n/a"
    with pytest.raises(fs.InputError, match="generative"):
        fs.audit(str(ASSETS / "stories260K"), "prompts", n=3, explainers=["gradient"],
                 planted=True, out=tmp_path / "p", quiet=True)


def test_study_uses_a_model_as_is_and_caps_costly_metrics(tiny_dir, tmp_path):
    """The study features an audit stands on: ``finetune: false`` (the model as it is, its
    accuracy recorded, no training) and ``metric_n`` (a metric scored on the first k examples
    only), both from YAML."""
    from faithscope.studies import open_study, parse_spec, run_study
    from faithscope.studies.spec import SpecError

    spec = parse_spec(f"""
name: caps
models: [{{name: m, path: {tiny_dir}}}]
datasets:
  - {{name: sst2, n: 4, finetune: false, params: {{path: {DATA / 'sst2'}}},
     metric_n: {{sufficiency: 2}}}}
explainers: [gradient]
metrics: [comprehensiveness, sufficiency]
""")
    run_study(spec, tmp_path / "s", console=None)
    study = open_study(tmp_path / "s")
    rows = study.metrics()
    counts = rows[rows.explainer == "gradient"].groupby("metric").size().to_dict()
    assert counts == {"comprehensiveness": 4, "sufficiency": 2}
    m = study.models().iloc[0]
    assert not m["finetuned"] and m["train_seconds"] == 0 and 0 <= m["accuracy"] <= 1
    with pytest.raises(SpecError, match="metric_n"):
        parse_spec("name: x\nmodels: [{name: m, hub: a/b}]\ndatasets: [{name: sst2, "
                   "metric_n: {sufficiency: 0}}]\nexplainers: [gradient]\n")


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_budget_gives_every_explainer_valid_settings(budget):
    """A budget's sample counts go to each explainer under its own parameter name (C-LIME's
    ``oversampling``, Shapley sampling's ``n_permutations``), and every one validates."""
    import faithscope as fs
    from faithscope.audits.budgets import (
        CLASSIFIER_EXPLAINERS,
        GENERATIVE_EXPLAINERS,
        explainer_params,
    )

    for name in {*CLASSIFIER_EXPLAINERS, *GENERATIVE_EXPLAINERS, "shapley_sampling",
                 "mexgen_lshap", "mexgen_loo"}:
        exp = fs.make_explainer((name, explainer_params(BUDGETS[budget], name)))
        assert exp.name == name


def test_readme_budget_table_is_the_code():
    """The README's budget table states what `BUDGETS` runs (it once fell behind the code)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in readme.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in BUDGETS}
    assert set(rows) == set(BUDGETS)
    for name, b in BUDGETS.items():
        n, ig, samples, evals, checks, planted = rows[name]
        assert int(n.replace(",", "")) == b.n and int(ig) == b.ig_steps
        assert int(samples.replace(",", "")) == b.samples
        assert int(evals.replace(",", "")) == b.max_evals
        sens = "not run" if b.sensitivity_n == 0 else str(b.sensitivity_n)
        assert checks == f"{b.sanity_n} / {b.stability_n} / {sens}"
        train, _, planted_n = planted.partition(" / ")
        assert train.startswith(f"{b.planted_train_n:,} sentences")
        assert f"{b.planted_recipe['epochs']} epoch" in train and int(planted_n) == b.planted_n
