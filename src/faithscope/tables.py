"""Terminal tables of metric summaries: metric x explainer, mean ± CI, direction arrows.

The best explainer of each row (by the metric's direction) is bold; ``random`` is always a
column when present, so every number is read against chance.

Example
-------
>>> import pandas as pd
>>> from faithscope.tables import metric_table
>>> s = pd.DataFrame([{"explainer": "lime", "metric": "gt_overlap", "mean": 0.9,
...                    "ci_low": 0.8, "ci_high": 1.0, "n": 20, "higher_is_better": True}])
>>> metric_table(s).row_count
1
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._lazy import lazy_import

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table
else:
    pd = lazy_import("pandas")


def _fmt(mean: float, lo: float, hi: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {max(hi - mean, mean - lo):.3f}"


def metric_table(summary: pd.DataFrame, title: str | None = None, *,
                 explainer_rows: bool | None = None) -> Table:
    """Metric x explainer table; ``explainer_rows`` puts explainers on rows instead (default:
    whichever keeps the table narrow, i.e. explainers on rows when they outnumber metrics)."""
    from rich.table import Table
    from rich.text import Text
    explainers = sorted(summary["explainer"].unique(), key=lambda e: (e == "random", e))
    metrics = sorted(summary["metric"].unique())
    if explainer_rows is None:
        explainer_rows = len(explainers) > len(metrics)
    cells: dict[tuple[str, str], object] = {(r.metric, r.explainer): r
                                            for r in summary.itertuples()}
    up = {m: bool(g["higher_is_better"].iloc[0]) for m, g in summary.groupby("metric")}
    best: dict[str, str | None] = {}
    for m in metrics:
        real = [r for (mm, e), r in cells.items()
                if mm == m and e != "random" and not math.isnan(r.mean)]  # type: ignore[attr-defined]
        pick = max if up[m] else min
        best[m] = pick(real, key=lambda r: r.mean).explainer if real else None  # type: ignore[attr-defined]

    def cell(m: str, e: str) -> Text:
        r = cells.get((m, e))
        if r is None:
            return Text("—")
        text = _fmt(r.mean, r.ci_low, r.ci_high)  # type: ignore[attr-defined]
        return Text(text, style="bold green" if e == best[m] else "")

    # names fold onto several lines in a narrow terminal rather than being cut with an ellipsis;
    # numbers never wrap; titles and names are Text, so no markup is read from them
    table = Table(title=Text(title) if title is not None else None, title_justify="left")
    heads = [f"{m} {'↑' if up[m] else '↓'}" for m in metrics]
    if explainer_rows:
        table.add_column("explainer", style="bold", overflow="fold")
        for h in heads:
            table.add_column(Text(h), justify="right", overflow="fold")
        for e in explainers:
            table.add_row(Text(str(e)), *(cell(m, e) for m in metrics))
    else:
        table.add_column("metric", style="bold", overflow="fold")
        for e in explainers:
            table.add_column(Text(str(e)), justify="right", overflow="fold")
        for m, h in zip(metrics, heads, strict=True):
            table.add_row(Text(h), *(cell(m, e) for e in explainers))
    return table


FORMATS = ("table", "csv", "json", "markdown")


def format_summary(summary: pd.DataFrame, fmt: str) -> str:
    """A metric summary (one row per explainer x metric, ...) as ``csv``, ``json`` (one JSON
    document: a list of row objects) or ``markdown`` (a pipe table, mean ± CI half-width)."""
    if fmt == "csv":
        return str(summary.to_csv(index=False))
    if fmt == "json":
        return str(summary.to_json(orient="records", indent=1, force_ascii=False)) + "\n"
    if fmt == "markdown":
        return markdown_table(summary)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def markdown_table(summary: pd.DataFrame) -> str:
    """Explainer rows x metric columns (with direction arrows), ``mean ± half-width``, random
    last; other grouping columns (dataset, model) become leading columns."""
    if summary.empty:
        return "(no results)\n"
    keys = [c for c in ("dataset", "model", "seed") if c in summary.columns]
    metrics = sorted(summary["metric"].unique())
    up = {m: bool(g["higher_is_better"].iloc[0]) for m, g in summary.groupby("metric")}
    heads = [*keys, "explainer", *(f"{m} {'↑' if up[m] else '↓'}" for m in metrics)]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    ordered = summary.assign(_random=summary["explainer"] == "random").sort_values(
        [*keys, "_random", "explainer"])
    for k, g in ordered.groupby([*keys, "explainer"], sort=False):
        g = g.set_index("metric")
        vals = [_fmt(g.at[m, "mean"], g.at[m, "ci_low"], g.at[m, "ci_high"])
                if m in g.index else "—" for m in metrics]
        cells = [str(x).replace("|", "\\|") for x in (*k, *vals)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
