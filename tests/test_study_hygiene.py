"""A study never reuses work it should not: plan keys hash the package version and the code
of each unit's explainer and metrics; leftovers of a killed run (temporary files, partial
checkpoints) are removed at start; a checkpoint missing on this machine is trained again only
when the retrained model is the recorded one (same accuracy), and the retraining is recorded."""

from __future__ import annotations

import inspect
import json
import shutil

import pytest

import faithscope
from faithscope.cli import main
from faithscope.studies import load_spec, open_study, plan_study, run_study
from faithscope.studies import plan as plan_mod

SPEC = """\
name: hygiene
models: [{{name: tiny, path: {model}}}]
datasets: [{{name: sst2_planted, n: 4, train_n: 16, params: {{bundled: true}}}}]
explainers: [gradient]
metrics: [comprehensiveness]
shard_size: 4
recipe: {{epochs: 1, batch_size: 8, patience: null}}
"""


@pytest.fixture()
def study(model_dir, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(model=model_dir))
    out = tmp_path / "study"
    run_study(load_spec(spec), out)
    return spec, out


def _keys(spec_path):
    return {u.key: u.stage for u in plan_study(load_spec(spec_path), {"sst2_planted": 4}).units}


def test_plan_keys_hash_the_version_and_the_code(study, monkeypatch):
    spec, _ = study
    before = _keys(spec)
    monkeypatch.setattr(faithscope, "__version__", faithscope.__version__ + ".dev1")
    assert not set(_keys(spec)) & set(before)  # every unit is new code's work
    monkeypatch.undo()
    assert _keys(spec) == before
    # an edit of the module defining an explainer changes its explain (and metrics) keys only
    real = inspect.getsource

    def edited(obj):
        src = real(obj)
        return src + "\n# edited\n" if getattr(obj, "__name__", "") == \
            "faithscope.explainers.gradient" else src

    plan_mod.code_digest.cache_clear()
    monkeypatch.setattr(plan_mod.inspect, "getsource", edited)
    after = _keys(spec)
    plan_mod.code_digest.cache_clear()
    changed = {before[k] for k in set(before) - set(after)}
    assert changed == {"explain", "metrics"}  # the gradient unit and its metrics
    kept = set(before) & set(after)
    assert {before[k] for k in kept} >= {"finetune"}  # fine-tuning does not depend on it
    # the random baseline's units are untouched: its module did not change
    assert sum(before[k] == "explain" for k in kept) == 1


def test_leftovers_of_a_killed_run_are_removed(study, capsys):
    spec, out = study
    shard_dir = out / "units" / "explain"
    (shard_dir / ".tmp-0123-abc.parquet").write_bytes(b"half")
    (out / ".tmp-4567-manifest.json").write_bytes(b"{")
    partial = out / "checkpoints" / ".0123abcd-xyz"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    capsys.readouterr()
    assert main(["run", str(spec), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "removed 3 leftover" in text and "0 to run" in text
    assert not list(out.rglob(".tmp-*")) and not partial.exists()


def test_a_missing_checkpoint_is_retrained_only_as_the_recorded_model(study, monkeypatch):
    spec, out = study
    shutil.rmtree(out / "checkpoints")
    more = spec.read_text().replace("metrics: [comprehensiveness]",
                                    "metrics: [comprehensiveness, sufficiency]")
    spec.write_text(more)  # new metric units: they need the fine-tuned model again
    with pytest.warns(UserWarning, match="was trained again; the retrained model has the "
                                         "recorded accuracy"):
        run_study(load_spec(spec), out)
    s = open_study(out)
    markers = [json.loads(p.read_text()) for p in (out / "units" / "metrics").glob("*.done.json")]
    assert any(m.get("retrained") for m in markers)
    assert "sufficiency" in set(s.metrics()["metric"])
    # a retrained model that differs from the recorded one stops the run with one line
    shutil.rmtree(out / "checkpoints")
    spec.write_text(more.replace("sufficiency]", "sufficiency, flip_rate]"))
    from faithscope.studies import work

    n_shards = len(list((out / "units" / "metrics").glob("*.done.json")))
    real = work.accuracy
    monkeypatch.setattr(work, "accuracy", lambda *a, **k: real(*a, **k) + 0.25)
    with pytest.raises(faithscope.InputError, match=r"training it again gave another model "
                                                     r"\(accuracy .* recorded .*\); share"):
        run_study(load_spec(spec), out)
    assert len(list((out / "units" / "metrics").glob("*.done.json"))) == n_shards  # none added
