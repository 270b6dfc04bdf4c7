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

import pandas as pd
from rich.table import Table
from rich.text import Text


def _fmt(mean: float, lo: float, hi: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {max(hi - mean, mean - lo):.3f}"


def metric_table(summary: pd.DataFrame, title: str | None = None, *,
                 explainer_rows: bool | None = None) -> Table:
    """Metric x explainer table; ``explainer_rows`` puts explainers on rows instead (default:
    whichever keeps the table narrow, i.e. explainers on rows when they outnumber metrics)."""
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

    table = Table(title=title, title_justify="left")
    heads = [f"{m} {'↑' if up[m] else '↓'}" for m in metrics]
    if explainer_rows:
        table.add_column("explainer", style="bold")
        for h in heads:
            table.add_column(h, justify="right")
        for e in explainers:
            table.add_row(e, *(cell(m, e) for m in metrics))
    else:
        table.add_column("metric", style="bold")
        for e in explainers:
            table.add_column(e, justify="right")
        for m, h in zip(metrics, heads, strict=True):
            table.add_row(h, *(cell(m, e) for e in explainers))
    return table
