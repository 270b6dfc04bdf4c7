"""The report's generation section: explanations of generated text (generative models).

* perturbation curves per dataset and model: the drop of the explained quantity (e.g. the
  output's log-probability) as the top units are removed, one line per explainer, mean over
  examples (models' seeds pooled) with a bootstrap 95 % confidence band per point;
* a multi-level prompt heatmap of a typical example per explainer (the example whose
  ``perturbation_curve`` value is closest to the explainer's median): one row per segmentation
  level (sentence, phrase, word), each unit coloured by its score, with the generated output;
* queries per explanation: the mean number of distinct perturbed prompts the model scored
  (``info["queries"]``), per explainer and model.

Every text of the study goes through :func:`~faithscope.report.html.esc`.

Example
-------
>>> import json
>>> from faithscope.report.generation import curve_points
>>> curve_points(json.dumps({"y": [-1.0, -2.0, -4.0], "x_target": [0.25, 0.5]}))
([0.0, 0.25, 0.5], [0.0, 1.0, 3.0])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..explanation import Explanation
from .data import ReportData
from .figures import Figure, colours, grid, legend, slug, tx

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

CURVE_METRIC = "perturbation_curve"
N_BOOT = 1000


def generated(data: ReportData) -> dict[str, list[Explanation]]:
    """Explanations of generated text per dataset (every model and seed, in plan order)."""
    out: dict[str, list[Explanation]] = {}
    for (ds, _model, _seed), exps in sorted(data.explanations.items()):
        gen = [e for e in exps if e.output is not None]
        if gen:
            out.setdefault(ds, []).extend(gen)
    return out


def curve_points(detail: Any) -> tuple[list[float], list[float]] | None:
    """(fractions removed, drops) of one ``perturbation_curve`` row: x = 0 (no drop) then the
    nominal fractions, drop = value before - value after the removal."""
    try:
        d = json.loads(detail) if isinstance(detail, str) else dict(detail)
        y = [float(v) for v in d["y"]]
        xs = [float(v) for v in d.get("x_target") or []]
    except (TypeError, ValueError, KeyError):
        return None
    if len(xs) < 1 or len(y) != len(xs) + 1:
        return None  # a selection's two-point curve: no common axis
    return [0.0, *xs], [y[0] - v for v in y]


def bootstrap_band(v: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of the rows of ``v`` (examples x points) and the bootstrap 95 % percentile band."""
    mean = np.nanmean(v, axis=0)
    if len(v) < 2:
        return mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    boots = np.nanmean(v[idx], axis=1)
    return mean, np.nanpercentile(boots, 2.5, axis=0), np.nanpercentile(boots, 97.5, axis=0)


def _curves(rows: pd.DataFrame) -> tuple[list[float], np.ndarray] | None:
    pts = [curve_points(d) for d in rows["detail"]]
    ok = [p for p in pts if p is not None]
    if not ok:
        return None
    xs = ok[0][0]
    same = [p[1] for p in ok if p[0] == xs]
    return xs, np.asarray(same, dtype=float)


def curve_figure(data: ReportData, ds: str) -> Figure | None:
    m = data.metrics
    if m.empty:
        return None
    m = m[(m["dataset"] == ds) & (m["metric"] == CURVE_METRIC)]
    if m.empty:
        return None
    models = [x for x in data.model_order() if x in set(m["model"])] or sorted(set(m["model"]))
    names = [e for e in data.explainers if e in set(m["explainer"])]
    col = colours(data.explainers)
    fig, axes = grid(len(models), w=3.6, h=2.8)
    f = Figure(slug("generation-curve", ds), f"{ds}: perturbation curves",
               "Drop of the explained quantity of the generated output (the target, e.g. its "
               "log-probability) as the top-scored prompt units are removed, against the "
               "fraction of the prompt's words removed; mean over examples (seeds pooled), "
               "bands: bootstrap 95 % confidence intervals. Higher and earlier is more "
               "faithful.", "generation", ds, fig)
    for ax, model in zip(axes, models, strict=True):
        size = data.sizes.get(model, math.nan)
        ax.set_title(tx(model) + (f" ({size:.3g}M)" if not math.isnan(size) else ""))
        for e in names:
            rows = m[(m["model"] == model) & (m["explainer"] == e)]
            c = _curves(rows) if "detail" in rows else None
            if c is None or not len(c[1]):
                continue
            xs, v = c
            mean, lo, hi = bootstrap_band(v)
            x = np.asarray(xs, dtype=float)
            (line,) = ax.plot(x, mean, marker="o", ms=2.5, lw=1.3, color=col[e],
                              ls="--" if e == "random" else "-")
            ax.fill_between(x, lo, hi, color=col[e], alpha=0.13, lw=0)
            f.tip(line, f"{e} · {model} (n={len(v)})\n" + "\n".join(
                f"{xi:.0%} removed: {yi:.3f} [{a:.3f}, {b:.3f}]"
                for xi, yi, a, b in zip(x, mean, lo, hi, strict=True)))
        ax.set_xlabel("fraction of words removed")
        ax.set_ylabel("drop of the target")
    legend(fig, names, col)
    return f


def generation_figures(data: ReportData) -> list[Figure]:
    figs = [curve_figure(data, ds) for ds in generated(data)]
    return [f for f in figs if f is not None]


# ----------------------------------------------------------------------------- HTML parts
def queries_table(data: ReportData) -> str:
    from .html import esc, num, table

    per: dict[tuple[str, str], list[float]] = {}
    for (_ds, model, _seed), exps in sorted(data.explanations.items()):
        for exp in exps:
            q = exp.info.get("queries") if exp.output is not None else None
            if isinstance(q, int | float) and not isinstance(q, bool):
                per.setdefault((exp.explainer, model), []).append(float(q))
    if not per:
        return '<p class="note">No explanation recorded its queries.</p>'
    models = [m for m in data.model_order() if any(k[1] == m for k in per)]
    models += sorted({k[1] for k in per} - set(models))
    names = [e for e in data.explainers if any(k[0] == e for k in per)]
    rows = []
    for e in names:
        cells = []
        for m in models:
            q = per.get((e, m))
            cells.append(f'<td title="{esc(f"{e} · {m}: n={len(q)}")}">{num(np.mean(q), ".1f")}'
                         "</td>" if q else "<td>—</td>")
        rows.append([f'<td class="l{" baseline" if e == "random" else ""}">{esc(e)}</td>',
                     *cells])
    return table(["explainer", *[f"queries/expl. {m}" for m in models]], rows)


def _typical(data: ReportData, ds: str, model: str, seed: int, explainer: str,
             exps: Sequence[Explanation]) -> Explanation:
    """The explanation whose perturbation-curve value is closest to the explainer's median
    (ties: the first in example order); the first explanation without that metric."""
    m = data.metrics
    if not m.empty:
        rows = m[(m["dataset"] == ds) & (m["model"] == model) & (m["seed"] == seed)
                 & (m["explainer"] == explainer) & (m["metric"] == CURVE_METRIC)]
        vals = dict(zip(rows["example_id"].astype(str), rows["value"].astype(float),
                        strict=True))
        scored = [(e, vals[e.example_id]) for e in exps
                  if e.example_id in vals and not math.isnan(vals[e.example_id])]
        if scored:
            med = float(np.median([v for _, v in scored]))
            return min(scored, key=lambda ev: abs(ev[1] - med))[0]
    return exps[0]


def _colour(score: float, top: float) -> str:
    a = 0.0 if top <= 0 or math.isnan(score) else min(1.0, abs(score) / top) * 0.85
    rgb = "214,39,40" if score > 0 else "31,119,180"
    return f"background:rgba({rgb},{a:.2f})"


def heatmap(e: Explanation) -> str:
    """The prompt once per level: that level's units coloured by score (red: raises the
    target, blue: lowers it), the rest of the prompt plain; then the generated output."""
    from .html import esc

    row = e.row().astype(float)
    top = float(np.nanmax(np.abs(row))) if len(row) else 0.0
    levels = list(e.levels or ["unit"] * len(e.units))
    lines = []
    for lv in dict.fromkeys(levels):
        parts, pos = [], 0
        for u, s, ulv in sorted(zip(e.units, row, levels, strict=True),
                                key=lambda t: t[0].start):
            if u.start < pos:
                continue
            parts.append(esc(e.text[pos:u.start]))
            if ulv == lv:
                parts.append(f'<span class="gu" style="{_colour(float(s), top)}" '
                             f'title="{esc(f"{lv}: {s:+.4f}")}">{esc(u.text)}</span>')
            else:
                parts.append(f'<span class="go">{esc(u.text)}</span>')
            pos = u.end
        parts.append(esc(e.text[pos:]))
        n = levels.count(lv)
        lines.append(f'<tr><td class="l">{esc(lv)} ({n})</td><td class="wrap gen-text">'
                     f'{"".join(parts)}</td></tr>')
    return (f'<div class="scroll"><table class="gen-heat"><tbody>{"".join(lines)}'
            f'<tr><td class="l">output</td><td class="wrap gen-out">{esc(e.output or "")}</td>'
            "</tr></tbody></table></div>")


def matrix(e: Explanation) -> str:
    """A per-token explanation (:attr:`Explanation.per_token`) as an HTML table: a row per
    prompt unit, a column per generated token (coloured per column by its largest magnitude;
    hover for the value), then the step scores (probability, entropy) per token."""
    from .html import esc

    sc = e.scores.astype(float)  # tokens x units
    tokens = e.output_tokens or tuple(e.target_labels)
    tops = [float(np.nanmax(np.abs(r))) if len(r) else 0.0 for r in sc]
    head = "".join(f"<th>{esc(t)}</th>" for t in tokens)
    rows = []
    for j, u in enumerate(e.units):
        cells = "".join(f'<td style="{_colour(float(sc[t, j]), tops[t])}" '
                        f'title="{esc(f"{u.text} -> {tokens[t]}: {sc[t, j]:+.4f}")}">'
                        f"{sc[t, j]:+.2f}</td>" for t in range(len(tokens)))
        rows.append(f'<tr><td class="l">{esc(u.text)}</td>{cells}</tr>')
    for name, values in (e.step_scores or {}).items():
        cells = "".join(f"<td><i>{v:.2f}</i></td>" for v in values)
        rows.append(f'<tr><td class="l"><i>{esc(name)}</i></td>{cells}</tr>')
    return (f'<div class="scroll"><table class="gen-matrix"><thead><tr><th>unit \\ '
            f'token</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def heatmaps(data: ReportData) -> str:
    """Per dataset, the smallest model's first seed: a typical example per explainer."""
    from .html import esc

    order = data.model_order()
    rank = {m: i for i, m in enumerate(order)}
    keys = sorted((k for k, exps in data.explanations.items()
                   if any(e.output is not None for e in exps)),
                  key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1], k[2]))
    out, seen = [], set()
    for ds, model, seed in keys:
        if ds in seen:
            continue
        seen.add(ds)
        gen = [e for e in data.explanations[(ds, model, seed)] if e.output is not None]
        out.append(f"<h3>{esc(ds)} · {esc(model)} · seed {esc(seed)}</h3>")
        for name in [x for x in data.explainers if any(e.explainer == x for e in gen)]:
            e = _typical(data, ds, model, seed, name, [e for e in gen if e.explainer == name])
            out.append(f"<h4>{esc(name)} · example {esc(e.example_id)}</h4>"
                       f"{matrix(e) if e.per_token else heatmap(e)}")
    return "".join(out)


def generation_section(data: ReportData, figures: Sequence[Figure]) -> str:
    from .html import figure_html

    out = ['<section id="generation"><h2>Generation</h2><p class="note">Explanations of '
           "generated text: the units are segments of the prompt (coarse to fine levels, as in "
           "MExGen), the explained quantity is a target of the model's own output.</p>",
           "<h3>Perturbation curves</h3>"]
    figs = [f for f in figures if f.section == "generation"]
    out.extend(figure_html(f) for f in figs)
    if not figs:
        out.append('<p class="note">No perturbation_curve results yet.</p>')
    out.append("<h3>Queries per explanation</h3><p class=\"note\">Mean number of distinct "
               "perturbed prompts the model scored per explanation.</p>")
    out.append(queries_table(data))
    out.append('<h3>Prompt heatmaps</h3><p class="note">A typical example per explainer (its '
               "perturbation-curve value closest to the explainer's median): the prompt once "
               "per segmentation level, that level's units coloured (red: raises the target, "
               "blue: lowers it; hover for the score), then the generated output. With a "
               "per-token target, a matrix instead: a row per prompt unit, a column per "
               "generated token (coloured per column), and the step scores (probability of the "
               "token, entropy of the next-token distribution) below.</p>")
    out.append(heatmaps(data))
    out.append("</section>")
    return "".join(out)


__all__ = ["bootstrap_band", "curve_figure", "curve_points", "generated", "generation_figures",
           "generation_section", "heatmap", "matrix", "queries_table"]
