"""Studies: spec validation, planning, store, resume after kill -9, corrupt shards, locking,
results (DuckDB), CLI, and the Ray executor against the local one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faithscope.cli import main
from faithscope.models.tiny import tiny_classifier
from faithscope.studies import (
    SpecError,
    apply_overrides,
    load_preset,
    open_study,
    parse_spec,
    plan_study,
    preset_names,
    run_study,
)
from faithscope.studies.store import Store, StudyLockedError
from helpers import kill_9_midway

SPEC = """\
name: tiny
models:
  - {{name: tiny-a, path: {a}}}
  - {{name: tiny-b, path: {b}}}
datasets:
  - name: sst2_planted
    split: dev
    n: 10
    train_split: train
    train_n: 48
    params: {{bundled: true}}
explainers:
  - {{name: lime, n_samples: 16}}
  - gradient
metrics: [comprehensiveness, sufficiency, gt_overlap]
seeds: [0]
shard_size: 4
max_length: 32
recipe: {{epochs: 2, batch_size: 16, lr: 0.001, patience: null}}
"""

KEY_COLS = ["model", "seed", "dataset", "explainer", "metric", "example_id"]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name, layers in (("a", 1), ("b", 2)):
        t = tiny_classifier(layers=layers, seed=layers)
        t.model.save_pretrained(root / name)
        t.tokenizer.save_pretrained(root / name)
    path = root / "spec.yaml"
    path.write_text(SPEC.format(a=root / "a", b=root / "b"))
    return path


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory):
    """One uninterrupted local run: the results every other run must reproduce."""
    from faithscope.studies import load_spec

    out = tmp_path_factory.mktemp("ref") / "study"
    ran = []
    run_study(load_spec(spec_file), out, on_unit=lambda u, rt: ran.append(u.key))
    return out, ran


def _metrics(path) -> pd.DataFrame:
    df = open_study(path).metrics()
    return df.sort_values(KEY_COLS).reset_index(drop=True)


# ------------------------------------------------------------------------------------- spec
def test_presets_parse_and_cover_the_protocol():
    assert preset_names() == ["architectures", "generation", "scaling", "seeds"]
    for name in preset_names():
        if name == "generation":  # prompts for generative LMs: tests/test_generation_study.py
            spec = load_preset(name)
            assert {d.name for d in spec.datasets} == {"prompts"}
            assert all(m.kind == "generative" for m in spec.models)
            assert {"mexgen_lshap", "leave_one_out", "lime"} <= {e.name for e in spec.explainers}
            continue
        spec = load_preset(name)
        assert {d.name for d in spec.datasets} == {"sst2_planted", "esnli"}
        assert {"integrated_gradients", "lime", "kernel_shap"} <= {e.name for e in spec.explainers}
        assert spec.recipe == {} and all(m.recipe == {} for m in spec.models)  # published default
    assert len(load_preset("seeds").seeds) == 5
    scaling = load_preset("scaling")
    assert scaling.models[0].hub == "google/bert_uncased_L-2_H-128_A-2"  # the Hub series
    assert [m.name for m in scaling.offline_models] == ["minilm-l3", "minilm-l6"]


@pytest.mark.parametrize("text, message", [
    ("name: x\nmodels: []\ndatasets: []\nexplainers: []\nmetricz: []\n",
     "line 5: unknown key 'metricz'; did you mean 'metrics'?"),
    ("name: x\nmodels:\n  - name: m\n    hub: a/b\n    recipe: {epochz: 2}\n"
     "datasets: []\nexplainers: []\n", "line 5: unknown recipe key 'epochz'"),
    ("name: x\nmodels:\n  - name: m\n    hub: a/b\n    recipe: {epochs: 0}\n"
     "datasets: []\nexplainers: []\n", "line 5: invalid fine-tuning recipe"),
    ("name: x\nmodels: []\ndatasets:\n  - name: sst3\nexplainers: []\n",
     "line 4: unknown dataset 'sst3'"),
    ("name: x\nmodels: []\ndatasets: []\nexplainers:\n  - lime\n  - {name: lime, n_sample: 3}\n",
     "line 6: lime: unknown hyper-parameter"),
    ("name: x\nmodels: []\ndatasets: []\nexplainers: []\nseeds: [0, -1]\n",
     "line 5: seeds must be >= 0"),
    ("name: x\nmodels:\n  - name: m\ndatasets: []\nexplainers: []\n",
     "line 3: models[0]: give a local 'path' or a 'hub' id"),
    ("name: x\nmodels: []\ndatasets:\n  - {name: sst2, n: many}\nexplainers: []\n",
     "line 4: datasets[0].n must be int"),
    ("models: []\ndatasets: []\nexplainers: []\n", "missing required key 'name'"),
    ("name: x\nname: y\n", "line 2: duplicate key 'name'"),
    ("name: x\nmodels: [\n", "invalid YAML"),
    ("name: x\nmodels: []\ndatasets: []\nexplainers: []\nmetrics: [comprehensivenes]\n",
     "line 5: unknown metric 'comprehensivenes'"),
])
def test_spec_errors_name_line_and_key(text, message):
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="s.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("s.yaml")


def test_spec_env_expansion_and_overrides(monkeypatch):
    monkeypatch.setenv("FS_TEST_MODELS", "/models")
    spec = parse_spec("name: x\nmodels:\n  - {name: m, path: '${FS_TEST_MODELS}/m', "
                      "hub: '${FS_UNSET:-org/m}'}\ndatasets: [sst2]\nexplainers: [lime]\n")
    # kept as written (portable records), expanded where the model is loaded
    assert spec.models[0].path == "${FS_TEST_MODELS}/m" and spec.models[0].hub == "${FS_UNSET:-org/m}"
    assert spec.models[0].source() == "org/m"  # the path does not exist: the hub id is used
    spec2 = apply_overrides(spec, ["recipe.epochs=2", "datasets.n=7", "seeds=[1, 2]"])
    assert spec2.recipe == {"epochs": 2} and spec2.datasets[0].n == 7 and spec2.seeds == (1, 2)
    with pytest.raises(SpecError, match="unknown recipe key"):
        apply_overrides(spec, ["recipe.nope=1"])
    with pytest.raises(SpecError, match="FS_NOT_SET is not set"):
        parse_spec("name: x\nmodels: [{name: m, path: '${FS_NOT_SET}'}]\ndatasets: []\n"
                   "explainers: []\n")


# ------------------------------------------------------------------------------------- plan
def test_plan_keys_are_content_hashes():
    base = "name: x\nmodels: [{name: m, hub: o/m}]\ndatasets: [{name: sst2, n: 9}]\n" \
           "explainers: [lime]\nmetrics: [sufficiency]\nshard_size: 4\n"
    p1 = plan_study(parse_spec(base), {"sst2": 9})
    assert [len(p1.stage(s)) for s in ("finetune", "explain", "metrics")] == [1, 6, 6]
    assert len({u.key for u in p1.units}) == len(p1.units)
    assert p1.keys() == plan_study(parse_spec(base), {"sst2": 9}).keys()  # stable
    p2 = plan_study(parse_spec(base.replace("[sufficiency]", "[sufficiency, auprc]")),
                    {"sst2": 9})  # new metrics: explanations are reused, metrics rerun
    assert p2.keys()["explain"] == p1.keys()["explain"]
    assert not set(p2.keys()["metrics"]) & set(p1.keys()["metrics"])
    p3 = plan_study(parse_spec(base.replace("hub: o/m", "hub: o/m, recipe: {lr: 0.001}")),
                    {"sst2": 9})  # another recipe: everything downstream changes
    assert not set(p3.keys()["explain"]) & set(p1.keys()["explain"])


# ------------------------------------------------------------------------------------- store
def test_store_on_an_fsspec_url_and_corruption_detection():
    st = Store("memory://faithscope-test-store")
    st.write_shard("metrics", "k1", pd.DataFrame({"value": [1.0, 2.0]}), runtime_s=0.5)
    assert st.status("metrics", "k1") == "done" and st.marker("metrics", "k1")["rows"] == 2
    assert st.status("metrics", "k2") == "missing"
    with st.fs.open(st.shard_path("metrics", "k1"), "wb") as fh:
        fh.write(b"PAR1 garbage")
    assert st.status("metrics", "k1") == "corrupt"
    with st.lock():  # object stores: a lease; a second driver is refused
        with pytest.raises(StudyLockedError), Store("memory://faithscope-test-store").lock():
            pass
    with st.lock():  # released after the block
        pass


def test_second_run_on_the_same_directory_is_refused(tmp_path):
    a, b = Store(tmp_path), Store(tmp_path)
    with a.lock():
        with pytest.raises(StudyLockedError, match="being run by pid"), b.lock():
            pass
    with b.lock():
        pass


# ------------------------------------------------------------------------------------- runs
def test_study_results_and_resume(reference, spec_file, capsys):
    out, ran = reference
    study = open_study(out)
    plan = study.manifest["plan"]
    assert len(ran) == sum(len(v) for v in plan.values())
    models = study.models()
    assert set(models["model"]) == {"tiny-a", "tiny-b"} and models["accuracy"].between(0, 1).all()
    df = _metrics(out)
    # 2 models x 10 examples x 3 explainers (lime, gradient, random) x 3 metrics, no duplicates
    assert len(df) == 2 * 10 * 3 * 3 and not df.duplicated(KEY_COLS).any()
    assert set(df["explainer"]) == {"lime", "gradient", "random"}
    man = study.manifest
    assert man["spec"]["name"] == "tiny" and "torch" in man["versions"]
    assert man["runs"][-1]["finished"] >= man["runs"][-1]["started"]
    # DuckDB and pandas agree
    q = study.sql("select explainer, metric, avg(value) as v from metrics group by all")
    pdm = df.groupby(["explainer", "metric"])["value"].mean()
    for r in q.itertuples():
        assert r.v == pytest.approx(pdm[(r.explainer, r.metric)])
    exps = list(study.explanations(model="tiny-a", explainer="lime"))
    assert len(exps) == 10 and all(e.explainer == "lime" for e in exps)
    # rerun: nothing to do
    from faithscope.studies import load_spec

    again: list[str] = []
    run_study(load_spec(spec_file), out, on_unit=lambda u, rt: again.append(u.key))
    assert again == []


def test_corrupt_shard_is_reported_and_recomputed(reference, spec_file, tmp_path, capsys):
    import shutil

    from rich.console import Console

    from faithscope.studies import load_spec

    out = tmp_path / "study"
    shutil.copytree(reference[0], out)
    st = Store(out)
    key = open_study(out).manifest["plan"]["metrics"][3]
    path = Path(st.shard_path("metrics", key))
    path.write_bytes(path.read_bytes()[:-20])  # truncated shard
    ran: list[str] = []
    console = Console(file=open(os.devnull, "w"), record=True)  # noqa: SIM115
    run_study(load_spec(spec_file), out, on_unit=lambda u, rt: ran.append(u.key),
              console=console)
    assert ran == [key]
    assert "corrupt shard" in console.export_text()
    pd.testing.assert_frame_equal(_metrics(out), _metrics(reference[0]))


def test_kill_9_then_rerun_equals_an_uninterrupted_run(reference, spec_file, tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "faithscope.cli", "run", str(spec_file), "--out", str(out)]
    n_before, total = kill_9_midway(cmd, out, at_least=5)
    assert 0 < n_before < total  # really interrupted in the middle
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{n_before} already done" in done.stdout
    got, want = _metrics(out), _metrics(reference[0])
    assert not got.duplicated(KEY_COLS).any()
    pd.testing.assert_frame_equal(got.drop(columns=["unit"]), want.drop(columns=["unit"]))


def test_cli_list_presets_results_sql_and_export(reference, tmp_path, capsys):
    assert main(["list", "presets"]) == 0
    assert capsys.readouterr().out.split() == ["architectures", "generation", "scaling", "seeds"]
    out = str(reference[0])
    assert main(["results", out]) == 0
    text = capsys.readouterr().out
    assert "fine-tuned models" in text and "comprehensiveness" in text and "tiny-b" in text
    assert main(["results", out, "--sql", "select count(*) as n from metrics"]) == 0
    assert capsys.readouterr().out.split()[-1] == "180"
    assert main(["results", out, "--sql", "select nope from metrics"]) == 2
    assert "query failed" in capsys.readouterr().err
    assert main(["results", out, "--export", "csv", "--output", str(tmp_path / "m.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "m.csv")) == 180
    assert main(["results", str(tmp_path)]) == 2  # not a study
    assert main(["run", "--preset", "scalingg"]) == 2
    assert "did you mean 'scaling'" in capsys.readouterr().err


def test_ray_executor_equals_local(reference, spec_file, tmp_path, ray_serial):
    ray = pytest.importorskip("ray")
    from faithscope.studies import load_spec

    out = tmp_path / "ray-study"
    one_model = tmp_path / "spec.yaml"  # model tiny-a only: its units keep their keys
    one_model.write_text("\n".join(line for line in spec_file.read_text().splitlines()
                                   if "tiny-b" not in line))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        run_study(load_spec(one_model), out, executor="ray")
    finally:
        ray.shutdown()
    got, want = _metrics(out), _metrics(reference[0])
    want = want[want["model"] == "tiny-a"].reset_index(drop=True)
    assert len(got) == len(want) and not got.duplicated(KEY_COLS).any()
    pd.testing.assert_frame_equal(got.drop(columns=["value", "detail"]),
                                  want.drop(columns=["value", "detail"]))
    np.testing.assert_allclose(got["value"], want["value"], atol=1e-5)
    hosts = open_study(out).units()
    assert len(hosts) == sum(len(v) for v in open_study(out).manifest["plan"].values())
