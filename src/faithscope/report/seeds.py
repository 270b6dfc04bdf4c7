"""The report's "Seed stability" section: agreement distributions and per-unit uncertainty.

Drawn from a study's ``seed_stability`` and ``ling_lr`` analyses (see
:mod:`faithscope.studies.analyses`): per dataset and model, box plots of the agreement between
seeds (Spearman, top-k Jaccard) next to the within-model agreement of repeated stochastic
explainers; per-unit uncertainty bands (mean ± one standard deviation across seeds of
L1-normalised scores) on a typical example; tables of accuracy per seed, agreement by prediction
agreement, and LING-LR / LING-LR-E against the transformer.

Example
-------
>>> import pandas as pd
>>> from faithscope.report.seeds import typical_example
>>> units = pd.DataFrame({"explainer": ["lime"] * 6, "example_id": ["a"] * 3 + ["b"] * 3,
...                       "unit": [0, 1, 2] * 2})
>>> pairs = pd.DataFrame({"explainer": ["lime", "lime"], "example_id": ["a", "b"],
...                       "source": ["between_seeds"] * 2, "spearman": [0.9, 0.2]})
>>> typical_example(pairs, units, max_units=5)  # the example nearest the median agreement
'a'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..metrics.stability import agreement_table
from .data import ReportData
from .figures import RANDOM_COLOUR, Figure, colours, grid, slug, tx
from .html import esc, table

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

WITHIN_COLOUR = "#bbbbbb"


def typical_example(pairs: pd.DataFrame, units: pd.DataFrame, *, max_units: int = 14
                    ) -> str | None:
    """The example whose median between-seed Spearman is nearest the overall median, among
    examples with 3 to ``max_units`` units (so its bars stay legible)."""
    n = units.groupby("example_id")["unit"].nunique()
    ok = set(n[(n >= 3) & (n <= max_units)].index) or set(n.index)
    b = pairs[(pairs["source"] == "between_seeds") & pairs["example_id"].isin(ok)]
    med = b.groupby("example_id")["spearman"].median().dropna()
    if med.empty:
        return min(ok) if ok else None
    return str((med - med.median()).abs().sort_values(kind="stable").index[0])


def _groups(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    if frame.empty:
        return []
    return [(str(d), str(m), g) for (d, m), g in frame.groupby(["dataset", "model"], sort=True)]


def agreement_figure(data: ReportData, ds: str, model: str, pairs: pd.DataFrame) -> Figure:
    names = [e for e in data.explainers if e in set(pairs["explainer"])]
    col = colours(data.explainers)
    fig, axes = grid(2, w=4.6, h=0.5 + 0.32 * len(names), ncols=2)
    f = Figure(slug("seeds", ds, model), f"{ds} · {model}: agreement between seeds",
               "Distribution over examples and pairs of seeds of the agreement between two "
               "seeds' explanations of the same example (coloured boxes), and between repeats of "
               "a stochastic explainer with other sampling seeds on one model (grey boxes: the "
               "explainer's own noise). Boxes: quartiles; whiskers: 5-95 %; dot: mean.",
               "seeds", ds, fig)
    for ax, measure in zip(axes, ("spearman", "jaccard"), strict=True):
        for i, e in enumerate(names):
            for src, off, colour in (("between_seeds", 0.17, col[e]),
                                     ("within_model", -0.17, WITHIN_COLOUR)):
                v = pairs[(pairs["explainer"] == e) & (pairs["source"] == src)][measure]
                v = v.to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                if not len(v):
                    continue
                y = len(names) - 1 - i + off
                q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
                ax.plot([q[0], q[4]], [y, y], color="#555", lw=0.8)
                (box,) = ax.barh(y, q[3] - q[1], left=q[1], height=0.3, color=colour,
                                 edgecolor="#333", lw=0.5)
                ax.plot([q[2], q[2]], [y - 0.15, y + 0.15], color="#111", lw=1)
                ax.plot([v.mean()], [y], "o", ms=3, color="white", mec="#111", mew=0.6)
                f.tip(box, f"{e} · {measure} · {src.replace('_', ' ')}: mean {v.mean():.3f}, "
                      f"median {q[2]:.3f}, quartiles [{q[1]:.3f}, {q[3]:.3f}], n={len(v)}")
        ax.set_yticks(np.arange(len(names))[::-1], [tx(n) for n in names])
        ax.set_xlim(-1.05 if measure != "jaccard" else -0.02, 1.02)
        ax.set_title("Spearman rho" if measure == "spearman" else "top-k Jaccard")
        ax.grid(axis="y", visible=False)
    from matplotlib.patches import Patch

    fig.legend([Patch(facecolor="#ffffff", edgecolor="#333"),
                Patch(facecolor=WITHIN_COLOUR, edgecolor="#333")],
               ["between training seeds (explainer's colour)",
                "within one model (sampling seeds)"], loc="outside lower center", ncols=2,
               frameon=False)
    return f


def uncertainty_figure(data: ReportData, ds: str, model: str, pairs: pd.DataFrame,
                       units: pd.DataFrame) -> Figure | None:
    ex = typical_example(pairs, units)
    if ex is None:
        return None
    u = units[units["example_id"] == ex]
    names = [e for e in data.explainers if e in set(u["explainer"]) and e != "random"][:12]
    if not names:
        return None
    n_units = int(u["unit"].nunique())
    fig, axes = grid(len(names), w=max(3.2, 0.32 * n_units + 1.0), h=2.1,
                      ncols=max(1, int(12 // max(3.2, 0.32 * n_units + 1.0))))
    n_runs = int(u["n_runs"].max())
    f = Figure(slug("uncertainty", ds, model), f"{ds} · {model}: one explanation with its "
               f"uncertainty (example {ex})",
               f"Each unit's L1-normalised score across {n_runs} training seeds: bar = mean, "
               "error bar = ± one standard deviation (hover a bar for raw scores). The example "
               "is the one with the most typical between-seed agreement.", "seeds", ds, fig)
    col = colours(data.explainers)
    for ax, e in zip(axes, names, strict=True):
        g = u[u["explainer"] == e].sort_values("unit")
        x = np.arange(len(g))
        mean, std = g["mean_l1"].to_numpy(float), g["std_l1"].to_numpy(float)
        bars = ax.bar(x, mean, yerr=std, color=col.get(e, RANDOM_COLOUR), capsize=2,
                      error_kw={"lw": 0.8})
        for b, (_, r) in zip(bars, g.iterrows(), strict=True):
            f.tip(b, f"{e} · {r['text']}: mean {r['mean_l1']:.3f} ± {r['std_l1']:.3f} "
                  f"(raw {r['mean']:.3g} ± {r['std']:.3g}); top unit in "
                  f"{r['top1_share']:.0%} of seeds")
        ax.set_xticks(x, [tx(t) for t in g["text"]], rotation=60, ha="right")
        ax.axhline(0, color="#444", lw=0.6)
        ax.set_title(tx(e))
    return f


def seed_figures(data: ReportData) -> list[Figure]:
    out: list[Figure] = []
    for ds, model, pairs in _groups(data.stability_pairs):
        out.append(agreement_figure(data, ds, model, pairs))
        units = data.stability_units
        units = units[(units["dataset"] == ds) & (units["model"] == model)]
        fig = uncertainty_figure(data, ds, model, pairs, units)
        if fig is not None:
            out.append(fig)
    return out


def _cell(r: Any, name: str) -> str:
    m = getattr(r, f"{name}_mean")
    if m != m:
        return "—"
    return (f"{m:.3f} <span class=\"ci\">[{getattr(r, f'{name}_q25'):.2f}, "
            f"{getattr(r, f'{name}_q75'):.2f}]</span>")


def seeds_section(data: ReportData, figures: Sequence[Figure]) -> str:
    from .html import figure_html

    out = ['<section id="seeds"><h2>Seed stability</h2><p class="note">The same model '
           "fine-tuned with different seeds: how far do its explanations agree, compared with "
           "the explainer's own sampling noise, and do seeds that agree on the label agree on "
           "the explanation? Cells: mean [quartiles] over examples × pairs of seeds.</p>"]
    for ds, model, pairs in _groups(data.stability_pairs):
        out.append(f"<h3>{esc(ds)} · {esc(model)}</h3>")
        acc = data.models[(data.models["dataset"] == ds) & (data.models["model"] == model)]
        if not acc.empty:
            a = acc.sort_values("seed")["accuracy"].to_numpy(float)
            out.append('<p class="note">Accuracy per seed: ' + ", ".join(
                f"{int(s)}: {v:.3f}" for s, v in zip(acc.sort_values("seed")["seed"], a,
                                                      strict=True))
                + f" (mean {a.mean():.3f}, spread {a.max() - a.min():.3f}).</p>")
        compares = sorted(set(agreement_table(pairs)["compares"])) if len(pairs) else []
        if compares:
            out.append('<p class="note">Compared: explanations of the '
                       + esc(" / ".join(compares)) + " in every seed.</p>")
        for measure in ("spearman", "jaccard"):
            rows = [[f'<td class="l">{esc(r.explainer)}</td>', _cell(r, "between"),
                     _cell(r, "within"), _cell(r, "unanimous"), _cell(r, "split")]
                    for r in agreement_table(pairs, measure).itertuples()]
            out.append(f"<h4>{esc(measure)}</h4>" + table(
                ["explainer", "between seeds", "within model (sampling seeds)",
                 "seeds agree on the label", "seeds disagree"], rows))
        out.extend(figure_html(f) for f in figures
                   if f.section == "seeds" and f.slug in (slug("seeds", ds, model),
                                                          slug("uncertainty", ds, model)))
    for ds, model, acc in _groups(data.ling_accuracy):
        rows = [[f'<td class="l">{esc(r.classifier)}</td>',
                 "—" if r.seed < 0 else esc(int(r.seed)), f"{r.accuracy:.3f}",
                 "—" if r.n_features != r.n_features else esc(int(r.n_features))]
                for r in acc.itertuples()]
        out.append(f"<h3>LING-LR · {esc(ds)} · {esc(model)}</h3><p class=\"note\">Logistic "
                   "regression on linguistic features (LING-LR), enriched with lexicons of the "
                   "transformer's most attributed words (LING-LR-E: pooled over seeds; single "
                   "seed: one seed's lexicon), against the transformer's seeds.</p>"
                   + table(["classifier", "seed", "accuracy", "features"], rows))
    out.append("</section>")
    return "".join(out)


__all__ = ["seed_figures", "seeds_section", "typical_example"]
