"""Generation studies: spec keys, the prompts loader, the `generation` preset end to end (run,
resume, report with its generation section)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from faithscope.cli import main
from faithscope.data import load_dataset
from faithscope.explanation import Explanation
from faithscope.studies import load_preset
from faithscope.studies.plan import plan_study
from faithscope.studies.spec import SpecError, parse_spec
from faithscope.units import Unit

ASSETS = Path(__file__).parent / "assets"
STORIES = str((ASSETS / "stories260K").resolve())

BASE = """name: g
models:
  - name: lm
    path: {path}
    kind: generative
    generation: {{max_new_tokens: 8}}
datasets: [prompts]
explainers: [mexgen_lshap]
metrics: [perturbation_curve]
target_fn: log_prob
"""


def test_spec_generation_keys_and_errors():
    spec = parse_spec(BASE.format(path=STORIES) + "levels: [sentence, word]\ntop_fraction: 0.5\n")
    m = spec.models[0]
    assert (m.kind, m.generation, spec.levels, spec.top_fraction) == (
        "generative", {"max_new_tokens": 8}, ("sentence", "word"), 0.5)
    bad = {
        "    kind: generativ\n": "line 5: models[0].kind must be one of classifier, generative",
        "    generation: {max_new_token: 8}\n": "line 6: unknown generation key "
                                               "'max_new_token'; did you mean 'max_new_tokens'?",
        "    generation: {num_beams: 0}\n": "line 6: models[0].generation.num_beams must be >= 1",
        "target_fn: prob\n": "line 10: target_fn 'prob' does not apply to generated text",
    }
    text = BASE.format(path=STORIES)
    for line, msg in bad.items():
        key = line.split(":")[0]
        lines = [line if ln.startswith(key + ":") else ln + "\n"
                 for ln in text.splitlines()]
        with pytest.raises(SpecError, match=msg.replace("(", r"\(").replace("[", r"\[")):
            parse_spec("".join(lines))
    with pytest.raises(SpecError, match=r"line 11: levels must be coarse-to-fine"):
        parse_spec(text + "levels: [word, sentence]\n")
    with pytest.raises(SpecError, match=r"line 11: top_fraction must be in"):
        parse_spec(text + "top_fraction: 0\n")


def test_classifier_plan_keys_do_not_change():
    """Generation settings enter plan keys only when set: classifier studies keep theirs."""
    spec = load_preset("scaling").with_max_examples(10)
    keys = plan_study(spec, {d.name: 10 for d in spec.datasets}).keys()
    gen = parse_spec(BASE.format(path=STORIES))
    gen2 = parse_spec(BASE.format(path=STORIES) + "levels: [sentence, word]\n")
    k1 = plan_study(gen, {"prompts": 5}).keys()["explain"]
    k2 = plan_study(gen2, {"prompts": 5}).keys()["explain"]
    assert k1 != k2 and len(keys["explain"]) > 0


def test_prompts_loader(tmp_path):
    ds = load_dataset("prompts")
    assert len(ds) == 30 and ds.labels == () and all(ex.label is None for ex in ds.examples)
    assert len({ex.id for ex in ds.examples}) == 30
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\nsecond <b>prompt</b>\n", encoding="utf-8")
    ds = load_dataset("prompts", path=str(txt))
    assert [ex.text for ex in ds.examples] == ["first prompt", "second <b>prompt</b>"]
    js = tmp_path / "p.jsonl"
    js.write_text("\n".join(json.dumps({"prompt": f"p{i}", "x": i}) for i in range(5)),
                  encoding="utf-8")
    ds = load_dataset("prompts", path=str(js), text_column="prompt", n=3)
    assert [ex.text for ex in ds.examples] == ["p0", "p1", "p2"]
    with pytest.raises(ValueError, match="missing column 'text'"):
        load_dataset("prompts", path=str(js))


def test_heatmap_escapes_text():
    from faithscope.report.generation import heatmap

    text = "<script>alert(1)</script> and more."
    units = (Unit("<script>alert(1)</script>", 0, 25), Unit("and", 26, 29), Unit("more", 30, 34))
    e = Explanation(example_id="x", text=text, pair=None, units=units,
                    scores=np.array([[1.0, -0.5, 0.2]], dtype=np.float32), targets=(0,),
                    target_labels=("output",), probs=np.array([1.0], dtype=np.float32),
                    explainer="mexgen_lshap", params={}, output="<img src=x onerror=alert(1)>",
                    output_ids=(1, 2), levels=("sentence", "word", "word"))
    html = heatmap(e)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x" in html
    assert ">sentence (1)<" in html and ">word (2)<" in html


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    out = root / "study"
    old = os.environ.get("FAITHSCOPE_STORIES")
    os.environ["FAITHSCOPE_STORIES"] = STORIES
    try:
        assert main(["run", "--preset", "generation", "--max-examples", "3", "--out",
                     str(out)]) == 0
        yield out
    finally:
        if old is None:
            os.environ.pop("FAITHSCOPE_STORIES", None)
        else:
            os.environ["FAITHSCOPE_STORIES"] = old


def test_preset_runs_and_resumes(study, capsys):
    from faithscope.studies.results import open_study

    s = open_study(study)
    assert all(a == b for a, b in s.progress().values())
    models = s.models()
    assert models["architecture"].iloc[0] == "LlamaForCausalLM"
    assert models["params_m"].iloc[0] < 1
    m = s.metrics()
    assert set(m["explainer"]) == {"mexgen_lshap", "mexgen_clime", "mexgen_loo",
                                   "leave_one_out", "lime", "random"}
    assert m["example_id"].nunique() == 3 and "perturbation_curve" in set(m["metric"])
    capsys.readouterr()
    os.environ["FAITHSCOPE_STORIES"] = STORIES
    assert main(["run", "--preset", "generation", "--max-examples", "3", "--out",
                 str(study)]) == 0
    assert "0 to run" in capsys.readouterr().out  # resume: nothing reruns


def test_ray_executor_runs_a_generation_study_like_the_local_one(study, tmp_path, ray_serial):
    ray = pytest.importorskip("ray")
    from faithscope.studies.results import open_study

    os.environ["FAITHSCOPE_STORIES"] = STORIES
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1",
                                       "FAITHSCOPE_STORIES": STORIES}})
    try:
        assert main(["run", "--preset", "generation", "--max-examples", "3", "--out",
                     str(tmp_path / "ray"), "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    key = ["dataset", "model", "seed", "explainer", "metric", "example_id"]
    got = open_study(tmp_path / "ray").metrics().sort_values(key).reset_index(drop=True)
    want = open_study(study).metrics().sort_values(key).reset_index(drop=True)
    assert len(got) == len(want) > 0
    assert got[key].equals(want[key])
    np.testing.assert_allclose(got["value"].astype(float), want["value"].astype(float),
                               atol=1e-5)


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("genrep") / "report.html"
    assert main(["report", str(study), "-o", str(out)]) == 0
    return out


def test_report_generation_section(report):
    text = report.read_text(encoding="utf-8")
    assert '<a href="#generation">Generation</a>' in text
    sec = text[text.index('<section id="generation">'):]
    sec = sec[:sec.index("</section>")]
    assert "Perturbation curves" in sec and 'id="fig-generation-curve-prompts"' in sec
    assert sec.count("<svg") == 1 and "bootstrap 95 %" in sec
    assert "Queries per explanation" in sec and "queries/expl. stories260k" in sec
    for name in ("mexgen_lshap", "mexgen_clime", "mexgen_loo", "leave_one_out", "lime",
                 "random"):
        assert f"<h4>{name} · example " in sec, name
    assert sec.count('class="gen-heat"') == 6
    assert ">sentence (" in sec and ">output<" in sec


def test_generation_report_in_chromium(report, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        events: list[str] = []
        page.on("pageerror", lambda e: events.append(f"pageerror: {e}"))
        page.on("console", lambda m: events.append(f"console {m.type}: {m.text}"))
        page.goto(report.as_uri())
        sec = page.locator("section#generation")
        assert sec.is_visible()
        assert sec.locator("figure svg").count() == 1
        assert sec.locator("table.gen-heat").count() == 6
        assert sec.locator(".gen-heat .gu").count() > 6
        assert "Queries per explanation" in sec.inner_text()
        assert events == []
    finally:
        page.close()


@pytest.fixture(scope="module")
def per_token_report(tmp_path_factory):
    """A study whose target is per output token: the report draws token x unit matrices."""
    root = tmp_path_factory.mktemp("pertok")
    spec = root / "s.yaml"
    spec.write_text(BASE.format(path=STORIES).replace("target_fn: log_prob",
                                                      "target_fn: log_prob_per_token")
                    .replace("explainers: [mexgen_lshap]", "explainers: [leave_one_out, "
                             "gradient_x_input]") + "levels: [word]\n", encoding="utf-8")
    assert main(["run", str(spec), "--max-examples", "2", "--out", str(root / "st")]) == 0
    out = root / "report.html"
    assert main(["report", str(root / "st"), "-o", str(out)]) == 0
    return out


def test_per_token_matrices_in_the_report(per_token_report, browser):
    text = per_token_report.read_text(encoding="utf-8")
    sec = text[text.index('<section id="generation">'):]
    sec = sec[:sec.index("</section>")]
    assert sec.count('class="gen-matrix"') == 3  # leave_one_out, gradient_x_input, random
    assert "<i>probability</i>" in sec and "<i>entropy</i>" in sec
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(per_token_report.as_uri())
        tables = page.locator("section#generation table.gen-matrix")
        assert tables.count() == 3 and tables.first.is_visible()
        # a header cell per generated token (8 new tokens at most) after the unit column
        n_cols = tables.first.locator("thead th").count()
        assert 2 <= n_cols <= 9 + 1
        assert tables.first.locator("tbody tr").count() >= 3  # units + probability + entropy
        assert errors == []
    finally:
        page.close()
