"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend).

Per dataset: every metric against model size (one line per explainer, 95 % CI bands), grouped bars
per architecture and per gold label, the explainer agreement matrix per model; runtime per
explainer; and, when the study has metrics of families other than faithfulness, ground truth and
plausibility (sanity or stability analyses), their curves. Each figure renders to SVG (inline in
the report, with ``<title>`` tooltips) and exports to PNG and SVG files.

Example
-------
>>> from faithscope.report.figures import slug
>>> slug("size", "e-SNLI <dev>")
'size-e-snli-dev'
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from .browser import agreement
from .data import ReportData

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
RANDOM_COLOUR = "#7f7f7f"
MAX_WIDTH = 13.0  # inches: a figure wider than the page would shrink its text
STYLE = {"svg.hashsalt": "faithscope", "svg.fonttype": "none", "font.size": 8.5,
         "font.family": "DejaVu Sans", "axes.titlesize": 9, "axes.labelsize": 8.5,
         "legend.fontsize": 8, "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True, "figure.dpi": 100}


@contextlib.contextmanager
def style(**extra: Any) -> Iterator[None]:
    import matplotlib

    rc: dict[Any, Any] = {**STYLE, **extra}
    with matplotlib.rc_context(rc):
        yield


def slug(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") or "x" for p in parts)


def tx(text: Any) -> str:
    """Data text for matplotlib: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def colours(explainers: Sequence[str]) -> dict[str, str]:
    real = [e for e in explainers if e != "random"]
    out = {e: PALETTE[i % len(PALETTE)] for i, e in enumerate(real)}
    out["random"] = RANDOM_COLOUR
    return out


@dataclass
class Figure:
    """One matplotlib figure of the report, with its caption and tooltips (artist gid -> text)."""

    slug: str
    title: str
    caption: str
    section: str  # "overview", "plots" or "curves"
    group: str  # heading it appears under (a dataset name, or "")
    fig: Any
    tips: dict[str, str] = field(default_factory=dict)

    def tip(self, artist: Any, text: str) -> None:
        gid = f"tip{len(self.tips)}"
        artist.set_gid(gid)
        self.tips[gid] = text

    def svg(self) -> str:
        """Inline SVG: no XML prolog, ids prefixed with the slug, tooltips as ``<title>``."""
        buf = io.StringIO()
        with style():
            self.fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        text = buf.getvalue()
        text = text[text.index("<svg"):]
        for gid, tip in self.tips.items():
            text = text.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(tip)}'
                                '</title>', 1)
        p = self.slug + "-"
        text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{p}{m.group(1)}"', text)
        text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{p}{m.group(1)})", text)
        text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{p}{m.group(1)}"', text)
        return text.replace("<svg ", f'<svg role="img" aria-label="{html.escape(self.title)}" ',
                            1)

    def save(self, directory: Path) -> list[Path]:
        """``<slug>.png`` (200 dpi) and ``<slug>.svg`` (text as paths: portable)."""
        paths = [directory / f"{self.slug}.png", directory / f"{self.slug}.svg"]
        with style(**{"svg.fonttype": "path"}):
            self.fig.savefig(paths[0], format="png", dpi=200, metadata={"Software": None})
            self.fig.savefig(paths[1], format="svg", metadata={"Date": None})
        return paths


def grid(n: int, *, w: float = 3.2, h: float = 2.5, ncols: int = 4) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure as MplFigure

    ncols = max(1, min(ncols, int(MAX_WIDTH // w)))  # wide panels: fewer per row
    nrows = max(1, math.ceil(n / ncols))
    ncols = max(1, math.ceil(n / nrows))  # balanced rows: 5 panels as 3 + 2, not 4 + 1
    fig = MplFigure(figsize=(w * ncols, h * nrows + 0.55), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def legend(fig: Any, names: Sequence[str], col: dict[str, str], *, line: bool = True) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=col[n], marker="o", ls="--" if n == "random" else "-")
               if line else Patch(color=col[n]) for n in names]
    fig.legend(handles, [tx(n) for n in names], loc="outside lower center",
               ncols=min(len(names), 6), frameon=False)


def _title(data: ReportData, metric: str) -> str:
    up = data.metric_info.get(metric, {}).get("higher_is_better", True)
    return f"{tx(metric)} {'↑' if up else '↓'}"


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.3f}, {hi:.3f}]"


def size_figure(data: ReportData, ds: str) -> Figure | None:
    s = data.summary
    s = s[s["dataset"] == ds] if not s.empty else s
    if s.empty or len({data.sizes.get(m) for m in set(s["model"])}) < 2:
        return None  # one size: nothing to plot against (the bar charts show the values)
    metrics = sorted(s["metric"].unique())
    models = [m for m in data.model_order() if m in set(s["model"])]
    names = [e for e in data.explainers if e in set(s["explainer"])]
    col = colours(data.explainers)
    fig, axes = grid(len(metrics))
    f = Figure(slug("size", ds), f"{ds}: metrics against model size",
               "Mean per explainer against the number of parameters (one point per model, seeds "
               "pooled); bands and bars are bootstrap 95 % confidence intervals.", "plots", ds, fig)
    x0 = np.asarray([data.sizes.get(m, math.nan) for m in models], dtype=float)
    finite = x0[~np.isnan(x0)]
    log = bool(len(finite) and finite.min() > 0 and finite.max() / finite.min() > 2.5)
    span = float(finite.max() - finite.min()) if len(finite) else 0.0
    for ax, metric in zip(axes, metrics, strict=True):
        for j, e in enumerate(names):
            shift = (j - (len(names) - 1) / 2) * 0.012  # dodge: points of one size side by side
            x = x0 * (1 + shift) if log else x0 + shift * span
            g = s[(s["metric"] == metric) & (s["explainer"] == e)].set_index("model").reindex(models)
            y, lo, hi = (g[c].to_numpy(dtype=float) for c in ("mean", "ci_low", "ci_high"))
            ok = ~np.isnan(y) & ~np.isnan(x)
            if not ok.any():
                continue
            ls = "--" if e == "random" else "-"
            (line,) = ax.plot(x[ok], y[ok], marker="o", ms=4, lw=1.4, ls=ls, color=col[e])
            f.tip(line, f"{e} · {metric}\n" + "\n".join(
                f"{m} ({data.sizes.get(m, math.nan):.3g}M): {y[i]:.3f} {_ci(lo[i], hi[i])}"
                for i, m in enumerate(models) if ok[i]))
            if ok.sum() >= 2:
                ax.fill_between(x[ok], lo[ok], hi[ok], color=col[e], alpha=0.13, lw=0)
            else:
                ax.errorbar(x[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], color=col[e],
                            ls="none", capsize=3, lw=1)
        ax.set_title(_title(data, metric))
        if log:
            ax.set_xscale("log")
        ticks: dict[float, list[str]] = {}
        for m, v in zip(models, x0, strict=True):
            if not math.isnan(v):
                ticks.setdefault(float(v), []).append(m)
        ax.set_xticks(list(ticks), [tx("/".join(v)) + f"\n{k:.3g}M" for k, v in ticks.items()])
        ax.minorticks_off()
        ax.set_xlabel("parameters (M)")
    legend(fig, names, col)
    return f


def bars_figure(data: ReportData, frame: pd.DataFrame, ds: str, by: str, groups: Sequence[str],
                *, kind: str, title: str, caption: str) -> Figure | None:
    s = frame[frame["dataset"] == ds] if not frame.empty else frame
    if s.empty:
        return None
    metrics = sorted(s["metric"].unique())
    names = [e for e in data.explainers if e in set(s["explainer"])]
    groups = [g for g in groups if g in set(s[by])]
    col = colours(data.explainers)
    fig, axes = grid(len(metrics), w=min(MAX_WIDTH, max(3.2, 0.5 + 0.22 * len(names) * len(groups))))
    f = Figure(slug(kind, ds), title, caption, "plots", ds, fig)
    width = 0.8 / max(1, len(names))
    for ax, metric in zip(axes, metrics, strict=True):
        for j, e in enumerate(names):
            g = s[(s["metric"] == metric) & (s["explainer"] == e)].set_index(by).reindex(groups)
            y, lo, hi = (g[c].to_numpy(dtype=float) for c in ("mean", "ci_low", "ci_high"))
            pos = np.arange(len(groups)) - 0.4 + width * (j + 0.5)
            ok = ~np.isnan(y)
            if not ok.any():
                continue
            bars = ax.bar(pos[ok], y[ok], width, color=col[e], alpha=0.55 if e == "random" else 1,
                          yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], error_kw={"lw": 0.8})
            for b, grp, i in zip(bars.patches, np.asarray(groups)[ok], np.flatnonzero(ok),
                                 strict=True):
                f.tip(b, f"{e} · {metric} · {grp}: {y[i]:.3f} {_ci(lo[i], hi[i])}, "
                      f"n={int(g['n'].iloc[i])}")
        ax.set_xticks(np.arange(len(groups)), [tx(g) for g in groups])
        ax.set_title(_title(data, metric))
        ax.axhline(0, color="#444", lw=0.6)
    legend(fig, names, col, line=False)
    return f


def agreement_figure(data: ReportData, ds: str, mats: dict[str, pd.DataFrame]) -> Figure | None:
    if not mats:
        return None
    k = max(len(m) for m in mats.values())
    side = 1.2 + 0.42 * k
    fig, axes = grid(len(mats), w=side + 0.6, h=side, ncols=2)
    f = Figure(slug("agreement", ds), f"{ds}: explainer agreement",
               "Mean Spearman rank correlation between two explainers' scores on the same "
               "examples (seeds pooled; examples with a constant ranking skipped).", "plots", ds,
               fig)
    image = None
    for ax, (model, mat) in zip(axes, mats.items(), strict=True):
        v = mat.to_numpy(dtype=float)
        image = ax.imshow(v, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(mat)), [tx(n) for n in mat.columns], rotation=60, ha="right")
        ax.set_yticks(range(len(mat)), [tx(n) for n in mat.index])
        ax.grid(False)
        ax.set_title(tx(model))
        if len(mat) <= 14:
            for i in range(len(mat)):
                for j in range(len(mat)):
                    if not math.isnan(v[i, j]):
                        ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                                color="white" if abs(v[i, j]) > 0.6 else "black")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="Spearman ρ")
    return f


def runtime_figure(data: ReportData) -> Figure | None:
    r = data.runtime
    if r.empty or r["s_per_explanation"].isna().all():
        return None
    names = [e for e in data.explainers if e in set(r["explainer"])]
    models = [m for m in data.model_order() if m in set(r["model"])] or sorted(set(r["model"]))
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(6.4, 0.9 + 0.28 * len(names) * max(1, len(models)) ** 0.6),
                    layout="constrained")
    ax = fig.subplots()
    f = Figure("runtime", "Runtime per explanation", "Seconds per explanation (unit runtime "
               "over explanations), by explainer and model; log scale.", "overview", "", fig)
    h = 0.8 / max(1, len(models))
    pal = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for j, m in enumerate(models):
        g = r[r["model"] == m].set_index("explainer").reindex(names)
        y = g["s_per_explanation"].to_numpy(dtype=float)
        pos = np.arange(len(names)) - 0.4 + h * (j + 0.5)
        ok = ~np.isnan(y) & (y > 0)
        bars = ax.barh(pos[ok], y[ok], h, color=pal[j % len(pal)], label=tx(m))
        for b, i in zip(bars.patches, np.flatnonzero(ok), strict=True):
            f.tip(b, f"{names[i]} · {m}: {y[i]:.4g} s per explanation")
    ax.set_yticks(np.arange(len(names)), [tx(n) for n in names])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds per explanation")
    ax.legend(frameon=False, loc="best")
    return f


_AXIS_KEYS = ("x", "layers", "layer", "steps", "step", "levels", "level", "noise", "fractions",
              "fraction", "k")


def _curve(details: Sequence[str]) -> tuple[str, list[Any], np.ndarray] | None:
    """(axis name, x values, examples x points) when every row's detail holds one curve."""
    try:
        ds = [json.loads(d) if isinstance(d, str) else dict(d) for d in details]
    except (TypeError, ValueError):
        return None
    if not ds or not all(isinstance(d, dict) and isinstance(d.get("values"), list) for d in ds):
        return None
    keys = [k for k in _AXIS_KEYS if all(isinstance(d.get(k), list) for d in ds)]
    keys += sorted(k for k in ds[0] if k != "values" and k not in keys
                   and all(isinstance(d.get(k), list) for d in ds))
    for k in keys:
        xs = ds[0][k]
        if all(d[k] == xs and len(d["values"]) == len(xs) for d in ds) and len(xs) >= 2:
            return k, xs, np.asarray([d["values"] for d in ds], dtype=float)
    return None


def curve_figure(data: ReportData, family: str, ds: str) -> Figure | None:
    m = data.metrics
    m = m[(m["dataset"] == ds) & (m["family"] == family)]
    if m.empty:
        return None
    metrics = sorted(m["metric"].unique())
    names = [e for e in data.explainers if e in set(m["explainer"])]
    col = colours(data.explainers)
    fig, axes = grid(len(metrics))
    f = Figure(slug(family, ds), f"{ds}: {family} analyses",
               "Mean curve per explainer over examples, models and seeds (band: ±1.96 standard "
               "errors); metrics without a curve show their mean per explainer.", "curves", ds,
               fig)
    for ax, metric in zip(axes, metrics, strict=True):
        ax.set_title(_title(data, metric))
        for j, e in enumerate(names):
            rows = m[(m["metric"] == metric) & (m["explainer"] == e)]
            curve = _curve(list(rows["detail"])) if "detail" in rows else None
            if curve is not None:
                key, xs, v = curve
                mean = np.nanmean(v, axis=0)
                se = np.nanstd(v, axis=0) / np.sqrt(max(1, len(v)))
                numeric = all(isinstance(x, int | float) for x in xs)
                xv = np.asarray(xs, dtype=float) if numeric else np.arange(len(xs))
                (line,) = ax.plot(xv, mean, marker="o", ms=3, color=col[e],
                                  ls="--" if e == "random" else "-")
                ax.fill_between(xv, mean - 1.96 * se, mean + 1.96 * se, color=col[e], alpha=0.13,
                                lw=0)
                f.tip(line, f"{e} · {metric}\n" + "\n".join(
                    f"{key}={x}: {y:.3f}" for x, y in zip(xs, mean, strict=True)))
                ax.set_xlabel(tx(key))
                if not numeric:
                    ax.set_xticks(xv, [tx(x) for x in xs])
            else:
                v = rows["value"].to_numpy(dtype=float)
                mu = float(np.nanmean(v)) if len(v) else math.nan
                b = ax.bar([j], [mu], color=col[e])
                f.tip(b.patches[0], f"{e} · {metric}: {mu:.3f} (n={len(v)})")
                ax.set_xticks(range(len(names)), [tx(n) for n in names], rotation=45, ha="right")
    legend(fig, names, col)
    return f


def build_figures(data: ReportData) -> list[Figure]:
    """Every figure of the report, in the order the report shows them."""
    figs: list[Figure | None] = []
    with style():
        figs.append(runtime_figure(data))
        mats = agreement(data)
        archs = sorted(set(data.by_arch["architecture"])) if not data.by_arch.empty else []
        for d in data.datasets:
            figs.append(size_figure(data, d.name))
            figs.append(bars_figure(
                data, data.by_arch, d.name, "architecture", archs, kind="architecture",
                title=f"{d.name}: per architecture", caption="Mean per explainer and model "
                "architecture (models and seeds of one architecture pooled), 95 % CI."))
            labels = [*d.labels, *sorted(set(data.by_label["label"]) - set(d.labels))] \
                if not data.by_label.empty else []
            figs.append(bars_figure(
                data, data.by_label, d.name, "label", labels, kind="label",
                title=f"{d.name}: per gold label", caption="Mean per explainer and gold label "
                "(models and seeds pooled), 95 % CI."))
            figs.append(agreement_figure(data, d.name, mats.get(d.name, {})))
        for family in data.analysis_families:
            for d in data.datasets:
                figs.append(curve_figure(data, family, d.name))
    return [f for f in figs if f is not None]


def export_figures(figures: Sequence[Figure], directory: str | os.PathLike[str]) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return [p for f in figures for p in f.save(out)]


__all__ = ["Figure", "build_figures", "colours", "export_figures", "slug"]
