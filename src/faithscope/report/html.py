"""The report page: one HTML document with inline CSS, inline SVG figures, the example data as
JSON and one inline script; a Content-Security-Policy that allows that script (by hash) and no
network at all.

All text from the study goes through :func:`esc` (HTML) or :func:`script_json` (data for the
script), so dataset texts, labels and model names can never become markup or code.

Example
-------
>>> esc('<img src=x onerror="alert(1)">')
'&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
>>> script_json({"t": "</script><script>alert(1)</script>"})
'{"t":"\\\\u003c/script\\\\u003e\\\\u003cscript\\\\u003ealert(1)\\\\u003c/script\\\\u003e"}'
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .assets import CSS, JS
from .data import ReportData
from .figures import Figure


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def finite(x: Any) -> Any:
    """``x`` with every non-finite float (in nested dicts, lists, tuples) replaced by None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def script_json(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` and the JS
    line separators are ``\\u`` escapes, non-finite floats are null."""
    text = json.dumps(finite(obj), ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def num(x: Any, fmt: str = ".3f") -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else format(v, fmt)


def _time(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "—"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller); ``head`` is escaped here."""
    first = rows[0] if rows else []
    left = [i < len(first) and first[i].startswith(('<td class="l', '<td class="wrap'))
            for i in range(len(head))]
    h = "".join(f'<th class="l">{esc(c)}</th>' if left[i] else f"<th>{esc(c)}</th>"
                for i, c in enumerate(head))
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in r)
                   + "</tr>" for r in rows)
    return (f'<div class="scroll"><table class="{esc(cls)}"><thead><tr>{h}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _n_models(data: ReportData) -> int:
    return max(len(data.sizes), len(data.manifest.get("spec", {}).get("models", [])))


# ------------------------------------------------------------------------------- sections
def overview(data: ReportData, figures: Sequence[Figure]) -> str:
    out = ['<section id="overview"><h2>Overview</h2>']
    prog = ", ".join(f"{esc(s)} {a}/{b}" for s, (a, b) in data.progress.items())
    seeds = data.manifest.get("seeds") or data.manifest.get("spec", {}).get("seeds", [])
    out.append(f"<p>Study <b>{esc(data.name)}</b>: {_n_models(data)} model(s), "
               f"{len(data.datasets)} dataset(s), {len(data.explainers)} explainer(s), seeds "
               f"{esc(', '.join(map(str, seeds)))}. Units finished: {prog}.</p>")
    out.append("<h3>Models</h3>")
    m = data.models
    if m.empty:
        out.append('<p class="note">No fine-tuned model yet.</p>')
    else:
        order = {n: i for i, n in enumerate(data.model_order())}
        m = m.assign(_o=m["model"].map(order)).sort_values(["dataset", "_o", "seed"])
        rows = [[f'<td class="l">{esc(r.dataset)}</td>', f'<td class="l">{esc(r.model)}</td>',
                 f'<td class="l">{esc(r.architecture)}</td>', num(r.params_m, ".3g"),
                 esc(r.seed), num(r.accuracy), num(getattr(r, "val_accuracy", None)),
                 esc(getattr(r, "epochs_run", "—")), num(getattr(r, "train_seconds", None), ".1f")]
                for r in m.itertuples()]
        out.append(table(["dataset", "model", "architecture", "params (M)", "seed", "accuracy",
                          "val acc", "epochs", "train s"], rows))
    out.append("<h3>Datasets</h3>")
    rows = [[f'<td class="l">{esc(d.name)}</td>', f'<td class="l">{esc(d.split)}</td>',
             esc(d.n), f'<td class="wrap">{esc(", ".join(d.labels))}</td>',
             f'<td class="l">{esc(d.reference or "none")}</td>',
             f'<td class="wrap">{esc(", ".join(d.metrics))}</td>',
             f'<td class="wrap">{esc(d.note)}</td>'] for d in data.datasets]
    out.append(table(["dataset", "split", "examples", "labels", "reference", "metrics", "note"],
                     rows))
    out.append("<h3>Explainers: runtime and memory</h3>")
    models = data.model_order()
    r = data.runtime
    rows = []
    for e in data.explainers:
        g = r[r["explainer"] == e] if not r.empty else r
        per = {row.model: row for row in g.itertuples()}
        params = "baseline" if e == "random" and e not in data.explainer_params else \
            json.dumps(data.explainer_params.get(e, {}), sort_keys=True)
        rows.append([f'<td class="l">{esc(e)}</td>', f'<td class="wrap">{esc(params)}</td>',
                     *[num(per[mm].s_per_explanation, ".4g") if mm in per else "—"
                       for mm in models],
                     num(g["peak_rss_mb"].max() if len(g) else None, ".0f"),
                     num(g["cuda_peak_mb"].max() if len(g) else None, ".0f")])
    out.append(table(["explainer", "hyper-parameters", *[f"s/expl. {mm}" for mm in models],
                      "peak RSS MB", "GPU peak MB"], rows))
    out.append('<p class="note">Seconds per explanation are unit runtimes over explanations; '
               "peak RSS is the explaining process's peak so far (an upper bound).</p>")
    out.extend(figure_html(f) for f in figures if f.section == "overview")
    out.append("<h3>Metrics</h3>")
    rows = []
    for name, i in data.metric_info.items():
        lo, hi = i["bounds"]
        rows.append([f'<td class="l">{esc(name)}</td>', f'<td class="l">{esc(i["family"])}</td>',
                     f'<td class="l">{"↑ higher is better" if i["higher_is_better"] else "↓ lower is better"}</td>',
                     esc(f"[{lo:g}, {hi:g}]"), f'<td class="l">{esc(", ".join(i["needs"]))}</td>'])
    out.append(table(["metric", "family", "direction", "bounds", "needs"], rows))
    out.append("</section>")
    return "".join(out)


def _metric_cells(data: ReportData, g: Any, names: list[str], metric: str) -> dict[str, str]:
    """One ``<td>`` per explainer for one metric: mean ± CI half-width, best and chance marks."""
    cells = {r.explainer: r for r in g[g["metric"] == metric].itertuples()}
    up = data.metric_info.get(metric, {}).get("higher_is_better", True)
    real = [cells[e] for e in names if e != "random" and e in cells
            and not math.isnan(cells[e].mean)]
    top = (max if up else min)(r.mean for r in real) if real else math.nan
    best = {r.explainer for r in real if r.mean == top}
    best = best if len(best) < len(real) or len(real) == 1 else set()  # all tie: none
    rnd = cells.get("random")
    out = {}
    for e in names:
        c = cells.get(e)
        if c is None or math.isnan(c.mean):
            out[e] = "<td>—</td>"
            continue
        half = max(c.ci_high - c.mean, c.mean - c.ci_low)
        cls = ["baseline"] if e == "random" else []
        if e in best:
            cls.append("best")
        elif (e != "random" and rnd is not None and not math.isnan(rnd.mean)
              and c.ci_low <= rnd.mean <= c.ci_high):
            cls.append("chance")
        title = f"{e} · {metric}: 95% CI [{c.ci_low:.4f}, {c.ci_high:.4f}], n={c.n}"
        out[e] = (f'<td class="{" ".join(cls)}" title="{esc(title)}">'
                  f"{c.mean:.3f} ± {half:.3f}</td>")
    return out


def metric_tables(data: ReportData) -> str:
    """Metric x explainer per dataset and model; explainers on rows when they outnumber the
    metrics (as in the terminal tables), so that wide studies stay readable."""
    out = ['<section id="tables"><h2>Metric tables</h2><p class="note">Mean ± half-width of the '
           "bootstrap 95 % CI (seeds pooled; hover for the interval and n). ★ best explainer for "
           "the metric by its direction (none when all tie); grey: the CI contains the random "
           "baseline's mean.</p>"]
    s = data.summary
    if s.empty:
        out.append('<p class="note">No metric results yet.</p></section>')
        return "".join(out)
    for d in data.datasets:
        for model in data.model_order():
            g = s[(s["dataset"] == d.name) & (s["model"] == model)]
            if g.empty:
                continue
            names = [e for e in data.explainers if e in set(g["explainer"])]
            metrics = sorted(g["metric"].unique())
            cells = {m: _metric_cells(data, g, names, m) for m in metrics}
            arrows = {m: "↑" if data.metric_info.get(m, {}).get("higher_is_better", True)
                      else "↓" for m in metrics}
            if len(names) > len(metrics):
                head = ["explainer", *[f"{m} {arrows[m]}" for m in metrics]]
                rows = [[f'<td class="l{" baseline" if e == "random" else ""}">{esc(e)}</td>',
                         *[cells[m][e] for m in metrics]] for e in names]
            else:
                head = ["metric", *names]
                rows = [[f'<td class="l">{esc(m)} <span class="arrow">{arrows[m]}</span></td>',
                         *[cells[m][e] for e in names]] for m in metrics]
            size = data.sizes.get(model, math.nan)
            out.append(f"<h3>{esc(d.name)} · {esc(model)} ({num(size, '.3g')}M)</h3>")
            t = table(head, rows, "metric-table")
            if "random" in head:
                t = t.replace("<th>random</th>", '<th class="baseline">random</th>', 1)
            out.append(t)
    if "random" not in data.explainers:
        out.append('<p class="note">This study has no random baseline.</p>')
    out.append("</section>")
    return "".join(out)


def figure_html(f: Figure) -> str:
    return (f'<figure id="fig-{esc(f.slug)}">{f.svg()}<figcaption><b>{esc(f.title)}.</b> '
            f"{esc(f.caption)}</figcaption></figure>")


def plots(data: ReportData, figures: Sequence[Figure], section: str, title: str,
          intro: str) -> str:
    out = [f'<section id="{section}"><h2>{esc(title)}</h2><p class="note">{esc(intro)}</p>']
    figs = [f for f in figures if f.section == section]
    if not figs:
        out.append('<p class="note">Nothing to plot yet.</p>')
    for group in dict.fromkeys(f.group for f in figs):
        if group:
            out.append(f"<h3>{esc(group)}</h3>")
        out.extend(figure_html(f) for f in figs if f.group == group)
    out.append("</section>")
    return "".join(out)


def examples() -> str:
    return """<section id="examples"><h2>Example browser</h2>
<p class="note">Pick an example to see every explainer's heatmap of the explained class (red:
supports it, blue: speaks against it; intensity relative to the explanation's largest magnitude;
hover a word for its score; <span class="trunc">dotted grey</span> text lies beyond the
model's maximum length). <span class="refkey">Underlined</span> words overlap the human
rationale or planted feature, shown <mark>highlighted</mark> in the first row.
Scale: &minus; <span class="scale"></span> +</p>
<div class="controls">
<label>dataset<select id="ex-dataset"></select></label>
<label>model<select id="ex-model"></select></label>
<label>seed<select id="ex-seed"></select></label>
<label>gold label<select id="ex-label"></select></label>
<label>prediction<select id="ex-outcome"><option value="">all</option>
<option value="correct">correct</option><option value="incorrect">incorrect</option></select></label>
<label>search<input id="ex-search" type="search" placeholder="text or id"></label>
<button type="button" id="ex-prev">&larr; previous</button>
<button type="button" id="ex-next">next &rarr;</button>
<span id="ex-count" class="note"></span>
</div>
<div class="browser"><ol id="ex-list" class="ex-list"></ol><div id="ex-detail" class="ex-detail"
aria-live="polite"></div></div>
<noscript><p class="note">The example browser needs JavaScript.</p></noscript>
</section>"""


def provenance(data: ReportData) -> str:
    man = data.manifest
    out = ['<section id="provenance"><h2>Provenance</h2>']
    rows = [[f'<td class="l">{esc(k)}</td>', f'<td class="l">{esc(v)}</td>'] for k, v in (
        ("study", data.name), ("spec digest", man.get("spec_digest", "—")),
        ("git", man.get("git") or "—"),
        *sorted((str(k), str(v)) for k, v in (man.get("versions") or {}).items()))]
    out.append(table(["item", "value"], rows))
    runs = man.get("runs") or []
    rows = []
    for r in runs:
        dev = r.get("device") or {}
        rows.append([f'<td class="l">{_time(r.get("started"))}</td>',
                     f'<td class="l">{_time(r.get("finished"))}</td>',
                     f'<td class="l">{esc(r.get("executor", "—"))}</td>',
                     f'<td class="l">{esc(dev.get("host", "—"))}</td>',
                     f'<td class="wrap">{esc(dev.get("platform", "—"))}</td>',
                     esc(dev.get("cpus", "—")), esc(dev.get("cuda", "—")),
                     esc(r.get("units_run", "—")), num(r.get("runtime_s"), ".1f")])
    out.append("<h3>Runs</h3>" + table(["started", "finished", "executor", "host", "platform",
                                        "cpus", "cuda", "units run", "unit seconds"], rows))
    spec = json.dumps(man.get("spec", {}), indent=2, sort_keys=False, default=str)
    out.append(f"<details><summary>Study spec as run</summary><pre>{esc(spec)}</pre></details>")
    out.append("</section>")
    return "".join(out)


def render(data: ReportData, figures: Sequence[Figure], payload: dict[str, Any]) -> str:
    """The whole document."""
    digest = base64.b64encode(hashlib.sha256(JS.encode()).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
           "img-src data:; font-src data:; base-uri 'none'; form-action 'none'")
    nav = [("overview", "Overview"), ("tables", "Metric tables"), ("plots", "Plots")]
    curves = any(f.section == "curves" for f in figures)
    if curves:
        nav.append(("curves", "Sanity & stability"))
    seeds = not data.stability_pairs.empty or not data.ling_accuracy.empty
    if seeds:
        nav.append(("seeds", "Seed stability"))
    from .generation import generated, generation_section

    gen = bool(generated(data))
    if gen:
        nav.append(("generation", "Generation"))
    nav += [("examples", "Examples"), ("provenance", "Provenance")]
    version = (data.manifest.get("versions") or {}).get("faithscope", "")
    body = [
        overview(data, figures), metric_tables(data),
        plots(data, figures, "plots", "Plots", "Metric against model size, per architecture, "
              "per gold label, and how far explainers agree. Every figure is also exported as PNG "
              "and SVG with `faithscope report --figures DIR`."),
    ]
    if curves:
        body.append(plots(data, figures, "curves", "Sanity and stability analyses",
                          "Curves of the study's " + ", ".join(data.analysis_families)
                          + " metrics."))
    if seeds:
        from .seeds import seeds_section

        body.append(seeds_section(data, figures))
    if gen:
        body.append(generation_section(data, figures))
    body += [examples(), provenance(data)]
    links = "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="faithscope {esc(version)}">'
        f"<title>{esc(data.name)} · faithscope report</title><style>{CSS}</style></head>\n"
        f"<body><header><h1>{esc(data.name)} · faithscope report</h1>"
        f'<div class="sub">{_n_models(data)} model(s) × {len(data.datasets)} dataset(s) × '
        f"{len(data.explainers)} explainer(s) · faithscope {esc(version)}</div>"
        f"<nav>{links}</nav></header>\n<main>{''.join(body)}</main>\n"
        f'<script type="application/json" id="report-data">{script_json(payload)}</script>\n'
        f"<script>{JS}</script>\n</body></html>\n")


__all__ = ["esc", "finite", "num", "render", "script_json", "table"]
