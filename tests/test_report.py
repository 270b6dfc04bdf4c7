"""The HTML report: contents, escaping, figure export, determinism, the CLI, and the page driven
in headless Chromium (Playwright): no console errors, every section, the example browser, and a
hostile-text study that must run no script."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faithscope.cli import main
from faithscope.explanation import Explanation
from faithscope.models.tiny import tiny_classifier
from faithscope.report import agreement_matrix, build_report, esc, script_json, write_report
from faithscope.report.data import collect
from faithscope.report.figures import build_figures
from faithscope.report.html import render
from faithscope.studies import load_spec, open_study, run_study
from faithscope.units import Unit

pytestmark = pytest.mark.integration

SPEC = """\
name: {name}
models:
{models}
datasets:
  - {{name: {dataset}, split: dev, n: {n}, train_split: {train_split}, train_n: {train_n},
      params: {params}}}
explainers: [gradient, leave_one_out, {{name: lime, n_samples: 16}}]
metrics: [comprehensiveness, sufficiency, gt_overlap]
seeds: [0]
shard_size: 8
max_length: 32
recipe: {{epochs: 1, batch_size: 16, lr: 0.001, patience: null}}
"""

HOSTILE = [
    "<script>alert(1)</script> a fine film",
    "<img src=x onerror=alert(1)> a dull film",
    '"><svg onload=alert(1)> great acting',
    "</script><script>alert(2)</script> boring",
    "&lt;b&gt; &amp; ${x} $\\alpha$ {{ }} \u2028 end",
    "javascript:alert(3) plain words",
]
SECTIONS = ("overview", "tables", "plots", "examples", "provenance")


def _save_model(root: Path, name: str, layers: int) -> Path:
    t = tiny_classifier(layers=layers, seed=layers)
    t.model.save_pretrained(root / name)
    t.tokenizer.save_pretrained(root / name)
    return root / name


def _run(root: Path, **fields: str) -> Path:
    spec = root / "spec.yaml"
    spec.write_text(SPEC.format(**fields), encoding="utf-8")
    out = root / "study"
    run_study(load_spec(spec), out)
    return out


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """Two tiny models on planted-feature SST-2 (ground-truth rationales)."""
    root = tmp_path_factory.mktemp("report_study")
    a, b = _save_model(root, "a", 1), _save_model(root, "b", 2)
    return _run(root, name="tiny-report", models=f"  - {{name: tiny-a, path: {a}}}\n"
                f"  - {{name: tiny-b, path: {b}}}", dataset="sst2_planted", n=8,
                train_split="train", train_n=32, params="{bundled: true}")


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    """SST-2 read from a TSV whose sentences are HTML/JS injection attempts."""
    root = tmp_path_factory.mktemp("report_hostile")
    tsv = root / "hostile.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(HOSTILE)),
                   encoding="utf-8")
    a = _save_model(root, "a", 1)
    return _run(root, name="'<b>hostile</b>'", models=f"  - {{name: 'm<i>1</i>$x$', path: {a}}}",
                dataset="sst2", n=len(HOSTILE), train_split="dev", train_n=len(HOSTILE),
                params=f"{{path: '{tsv}'}}")


@pytest.fixture(scope="module")
def report(study_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_out")
    t0 = time.perf_counter()
    path = write_report(study_dir, out / "report.html", figures_dir=out / "figures")
    return path, out / "figures", time.perf_counter() - t0


@pytest.fixture(scope="module")
def hostile_report(hostile_dir, tmp_path_factory):
    return write_report(hostile_dir, tmp_path_factory.mktemp("hostile_out") / "report.html")


# ------------------------------------------------------------------------------- no browser
def test_escaping_helpers():
    assert esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    obj = {"t": HOSTILE, "n": [1.5, float("nan")], "u": "\u2028\u2029"}
    text = script_json(obj)
    assert not any(c in text for c in "<>&\u2028\u2029")
    assert json.loads(text) == {**obj, "n": [1.5, None]}


def _exp(name: str, scores, example_id: str = "0") -> Explanation:
    units = tuple(Unit(f"w{i}", 3 * i, 3 * i + 2, 0, (i,)) for i in range(len(scores)))
    return Explanation(example_id=example_id, text=" ".join(u.text for u in units), pair=None,
                       units=units, scores=np.asarray([scores], dtype=np.float32), targets=(1,),
                       target_labels=("pos",), probs=np.asarray([0.4, 0.6], dtype=np.float32),
                       explainer=name, params={})


def test_agreement_matrix_known_answers():
    rng = np.random.default_rng(0)
    exps = []
    for i in range(5):
        s = rng.normal(size=7)
        exps += [_exp("a", s, str(i)), _exp("same", s, str(i)), _exp("cubed", s**3, str(i)),
                 _exp("reversed", -s, str(i)), _exp("flat", np.zeros(7), str(i))]
    m, n = agreement_matrix(exps, with_counts=True)
    assert m.loc["a", "same"] == pytest.approx(1.0) and m.loc["same", "a"] == pytest.approx(1.0)
    assert m.loc["a", "cubed"] == pytest.approx(1.0)  # ranks: any monotone map agrees fully
    assert m.loc["a", "reversed"] == pytest.approx(-1.0)
    assert np.isnan(m.loc["a", "flat"]) and n.loc["a", "flat"] == 0  # constant: no ranking
    assert n.loc["a", "same"] == 5 and np.allclose(np.diag(m.drop(index="flat",
                                                                  columns="flat")), 1.0)


def test_report_contents_and_figure_export(report, study_dir):
    path, figures, seconds = report
    text = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert '<section id="curves">' not in text  # no sanity/stability metrics in this study
    # offline: no external resources, one inline script allowed by the CSP hash
    assert "<link" not in text and "<script src" not in text and "<img" not in text
    assert "script-src 'sha256-" in text and "default-src 'none'" in text
    for word in ("tiny-a", "tiny-b", "comprehensiveness ", "★", "random", "planted feature"):
        assert word in text, word
    names = sorted(p.name for p in figures.iterdir())
    stems = {Path(n).stem for n in names}
    assert {"runtime", "size-sst2-planted", "architecture-sst2-planted", "label-sst2-planted",
            "agreement-sst2-planted"} <= stems
    assert all((figures / f"{s}.png").stat().st_size > 1000 for s in stems)
    assert all((figures / f"{s}.svg").read_text().lstrip().startswith("<?xml") for s in stems)
    assert (figures / "runtime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.count("<svg ") >= len(stems)
    print(f"report {path.stat().st_size / 1024:.0f} KiB in {seconds:.1f} s")
    assert path.stat().st_size < 2_000_000
    again, _ = build_report(study_dir)  # deterministic: same study, same bytes
    assert again == text


def test_hostile_text_is_escaped(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    for raw in ("<script>alert", "<img src=x", "<svg onload", "<b>hostile", "<i>1</i>",
                "</script><script>"):
        assert raw not in text, raw
    assert text.count("<script") == 2  # the data block and the report's own script
    assert "&lt;b&gt;hostile&lt;/b&gt;" in text and "m&lt;i&gt;1&lt;/i&gt;$x$" in text


def test_sanity_curves_section_appears_only_with_such_metrics(study_dir):
    data = collect(open_study(study_dir), n_boot=50)
    assert data.analysis_families == []
    base = data.metrics[data.metrics["metric"] == "comprehensiveness"]
    layers = [0, 1, 2, 3]
    curve = base.assign(metric="layer_randomization", family="sanity",
                        detail=[json.dumps({"layers": layers, "values": [1.0, v, v / 2, 0.0]})
                                for v in base["value"]])
    flat = base.assign(metric="noise_stability", family="stability", detail="{}")
    data.metrics = pd.concat([data.metrics, curve, flat], ignore_index=True)
    data.metric_info["layer_randomization"] = {"family": "sanity", "higher_is_better": False,
                                               "bounds": (0.0, 1.0), "needs": ["model"]}
    data.metric_info["noise_stability"] = {"family": "stability", "higher_is_better": True,
                                           "bounds": (0.0, 1.0), "needs": ["model"]}
    data.analysis_families = ["sanity", "stability"]
    figs = build_figures(data)
    curves = [f for f in figs if f.section == "curves"]
    assert [f.slug for f in curves] == ["sanity-sst2-planted", "stability-sst2-planted"]
    assert "layers" in curves[0].svg()
    html = render(data, figs, {"runs": [], "examples": [], "explainers": [], "datasets": [],
                               "models": [], "study": "x"})
    assert '<section id="curves">' in html and 'href="#curves"' in html


def test_cli_report_exit_codes(study_dir, tmp_path, capsys):
    out = tmp_path / "r" / "report.html"
    assert main(["report", str(study_dir), "-o", str(out)]) == 0
    assert out.stat().st_size > 10_000 and "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert not (tmp_path / "missing").exists()  # a typo does not create a study folder
    assert "not a study directory" in capsys.readouterr().err
    assert main(["report", str(study_dir), "-o", str(tmp_path)]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["report", str(study_dir), "-o", str(out), "--figures",
                 str(tmp_path / "file")]) == 2
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["report"])
    assert err.value.code == 2


# ------------------------------------------------------------------------------- in Chromium
# (the `browser` fixture, headless Chromium through Playwright, is in conftest.py)


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    events: list[str] = []
    page.on("console", lambda m: events.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: events.append(f"pageerror: {e}"))
    page.on("dialog", lambda d: (events.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("request", lambda r: events.append(f"request: {r.url}")
            if not r.url.startswith(("file:", "data:", "about:")) else None)
    page.goto(path.as_uri())
    page.wait_for_selector("#ex-list .ex-item")
    return page, events


def test_report_in_chromium(browser, report, tmp_path):
    path, _, _ = report
    page, events = _open(browser, path)
    for section in SECTIONS:
        assert page.locator(f"section#{section}").is_visible(), section
    assert page.locator("section#curves").count() == 0
    assert page.locator("#plots figure svg").count() >= 4
    assert page.locator("#tables table").count() == 2  # one per model
    items = page.locator("#ex-list .ex-item")
    assert items.count() == 8
    detail = page.locator("#ex-detail")
    first = detail.inner_text()
    second_text = items.nth(1).locator(".txt").inner_text()
    items.nth(1).click()
    after = detail.inner_text()
    assert after != first and "Example 2 of 8" in after
    assert second_text.rstrip("…")[:30] in after
    assert page.locator("#ex-detail tr").count() == 5  # reference + gradient, loo, lime, random
    # LIME's scores carry standard errors: drawn as error bars (one bar and whisker per unit)
    bars = page.locator("#ex-detail svg.ebars")
    assert bars.count() == 1
    assert bars.locator("rect").count() == bars.locator("title").count() > 0
    assert "(95 %)" in bars.locator("title").first.text_content()
    page.locator("#ex-next").click()
    assert "Example 3 of 8" in detail.inner_text()
    page.select_option("#ex-model", label="tiny-b")  # another model: same example kept
    assert "Example 3 of 8" in detail.inner_text()
    page.select_option("#ex-outcome", "incorrect")
    n_wrong = page.locator("#ex-list .ex-item").count()
    assert n_wrong == page.locator("#ex-list .badge.bad").count()
    page.select_option("#ex-outcome", "")
    page.select_option("#ex-label", label="positive")
    assert 0 < page.locator("#ex-list .ex-item").count() < 8
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    try:
        shutil.copyfile(shot, "/tmp/report_screenshot.png")
    except OSError:
        pass
    assert events == []
    page.close()


def test_hostile_study_runs_no_script(browser, hostile_report):
    page, events = _open(browser, hostile_report)
    page.evaluate("window.__pwned = 0")
    items = page.locator("#ex-list .ex-item")
    assert items.count() == len(HOSTILE)
    for i in range(len(HOSTILE)):
        items.nth(i).click()
        shown = page.locator("#ex-detail").inner_text()
        assert HOSTILE[i].replace("\u2028", "").split()[0] in shown.replace("\u2028", "")
    listed = page.locator("#ex-list").inner_text()
    for raw in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
                '"><svg onload=alert(1)>', "&lt;b&gt; &amp; ${x} $\\alpha$"):
        assert raw in listed, raw
    assert page.locator("#examples script, #examples img, #examples iframe, "
                        "#ex-list svg, #ex-detail svg:not(.ebars)").count() == 0
    # the error bars are drawn by the report itself; unit texts reach them as text only
    assert page.locator("#ex-detail svg.ebars *:not(g):not(rect):not(line):not(title)"
                        ).count() == 0
    assert "<b>hostile</b>" in page.locator("header h1").inner_text()
    assert page.title().startswith("<b>hostile</b>")
    assert events == []
    page.close()
