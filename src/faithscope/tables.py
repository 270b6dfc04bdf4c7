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


def metric_table(summary: pd.DataFrame, title: str | None = None) -> Table:
    explainers = sorted(summary["explainer"].unique(), key=lambda e: (e == "random", e))
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    for e in explainers:
        table.add_column(e, justify="right")
    for metric, g in summary.groupby("metric", sort=True):
        up = bool(g["higher_is_better"].iloc[0])
        cells = {r.explainer: r for r in g.itertuples()}
        real = [r for e, r in cells.items() if e != "random" and not math.isnan(r.mean)]
        best = (max if up else min)(real, key=lambda r: r.mean).explainer if real else None
        row: list[str | Text] = [f"{metric} {'↑' if up else '↓'}"]
        for e in explainers:
            r = cells.get(e)
            if r is None:
                row.append(Text("—"))
                continue
            text = _fmt(r.mean, r.ci_low, r.ci_high)
            row.append(Text(text, style="bold green" if e == best else ""))
        table.add_row(*row)
    return table
