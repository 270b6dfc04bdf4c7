"""Terminal heatmaps of explanations (rich).

Positive scores are red, negative blue; intensity is the score over the largest magnitude.
A per-token explanation of generated text (:attr:`Explanation.per_token`) is drawn as a prompt
unit x generated token matrix with the step scores below it (:func:`matrix_table`).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> from faithscope.render import heatmap_text
>>> (exp,) = fs.explain(tiny_classifier(), ["a good film"], ["leave_one_out"])
>>> heatmap_text(exp).plain
'a good film'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .explanation import Explanation


def _colour(v: float) -> str:
    a = min(abs(v), 1.0)
    base = (255, 255, 255)
    tint = (220, 38, 38) if v >= 0 else (37, 99, 235)
    r, g, b = (round(base[i] + a * (tint[i] - base[i])) for i in range(3))
    fg = "white" if a > 0.55 else "black"
    return f"{fg} on rgb({r},{g},{b})"


def heatmap_text(exp: Explanation, target: int | None = None) -> Text:
    """The text with every unit coloured by its score (pair parts separated by ' || ')."""
    s = exp.row(target).astype(np.float64)
    scale = float(np.max(np.abs(s))) if s.size else 1.0
    scale = scale or 1.0
    out = Text()
    part = 0
    for u, v in zip(exp.units, s, strict=True):
        if u.part != part:
            out.append(" || ")
            part = u.part
        elif len(out):
            out.append(" ")
        out.append(u.text, style=_colour(v / scale))
    return out


def matrix_table(exp: Explanation) -> Table:
    """A per-token explanation of generated text as Inseq draws it: a row per prompt unit, a
    column per generated token, each cell the unit's score for that token (coloured per column,
    by the column's largest magnitude); then a row per step score (probability, entropy)."""
    table = Table(show_lines=False, title=Text(f"{exp.explainer}: prompt units x generated "
                                                f"tokens ({exp.target_fn})"),
                  title_justify="left")
    table.add_column("unit", overflow="fold")
    tokens = exp.output_tokens or tuple(exp.target_labels)
    for t in tokens:
        table.add_column(Text(repr(t)[1:-1] or "\u2205"), justify="right", no_wrap=True)
    cols = exp.scores.astype(np.float64)  # tokens x units
    scale = np.max(np.abs(cols), axis=1) if cols.size else np.ones(len(tokens))
    scale = np.where(scale > 0, scale, 1.0)
    for j, u in enumerate(exp.units):
        table.add_row(Text(u.text), *[Text(f"{cols[t, j]:+.2f}",
                                           style=_colour(cols[t, j] / scale[t]))
                                      for t in range(len(tokens))])
    for name, values in (exp.step_scores or {}).items():
        table.add_row(Text(name, style="italic"), *[Text(f"{v:.2f}", style="italic")
                                                     for v in values])
    return table


def errors_table(exp: Explanation, target: int | None = None) -> Table:
    """A sampling explainer's scores with their 95 % error bars (score +- 1.96 standard
    errors, :attr:`Explanation.errors`): a row per unit, the bar drawn to scale with its
    interval marked (``|`` ends on a dotted span)."""
    s = exp.row(target).astype(np.float64)
    assert exp.errors is not None
    k = 0 if target is None else exp.targets.index(target)
    half = 1.96 * exp.errors[k].astype(np.float64)
    table = Table(title=Text(f"{exp.explainer}: score \u00b1 95 % error bar "
                             f"({exp.info.get('n_samples', '?')} samples)"),
                  title_justify="left")
    table.add_column("unit", overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("\u00b1", justify="right", no_wrap=True)
    table.add_column("bar", no_wrap=True)
    width = 15
    top = float(np.nanmax(np.abs(s) + np.nan_to_num(half))) if s.size else 1.0
    top = top or 1.0
    for u, v, h in zip(exp.units, s, half, strict=True):
        table.add_row(Text(u.text), f"{v:+.3f}", f"{h:.3f}", _bar(v, h, top, width))
    return table


def _bar(v: float, h: float, top: float, width: int) -> Text:
    """``-width .. +width`` cells around a centre line: the score as a block bar in its colour,
    the error bar's ends as ``|`` and its span as dots."""
    cells = [" "] * (2 * width + 1)
    cells[width] = "\u2502"
    pos = round(v / top * width)
    lo, hi = (round((v - h) / top * width), round((v + h) / top * width)) if np.isfinite(h) \
        else (-width, width)
    for i in range(min(0, pos), max(0, pos) + 1):
        if i != 0:
            cells[width + i] = "\u2588"
    for i in range(max(lo, -width), min(hi, width) + 1):
        if cells[width + i] == " ":
            cells[width + i] = "\u00b7"
    for i in (lo, hi):
        if -width <= i <= width:
            cells[width + i] = "|"
    return Text("".join(cells), style="red" if v >= 0 else "blue")


def print_explanations(explanations: Sequence[Explanation], console: Console | None = None
                       ) -> None:
    """One table per example: a row per explainer with its heatmap and runtime. Every text is
    printed verbatim (Text objects: no markup is read from the data)."""
    console = console or Console()
    by_example: dict[str, list[Explanation]] = {}
    for e in explanations:
        by_example.setdefault(e.example_id, []).append(e)
    for exps in by_example.values():
        first = exps[0]
        label = first.target_labels[0] if first.target_labels else str(first.targets[0])
        title = f"{first.text!r}" + (f" / {first.pair!r}" if first.pair else "")
        what = (f"explaining the output's {first.target_fn} ({len(first.targets)} target(s))"
                 if first.generated else
                 f"explaining {label} (p={first.probs.max():.2f}, target {first.target_fn})")
        table = Table(title=Text(f"{title}\n{what}"), show_lines=False, title_justify="left")
        table.add_column("explainer", style="bold", overflow="fold")
        table.add_column("heatmap (red +, blue -)", overflow="fold")
        table.add_column("s/expl", justify="right", no_wrap=True)
        matrices = [e for e in exps if e.per_token]
        for e in exps:
            if not e.per_token:
                table.add_row(Text(e.explainer), heatmap_text(e), f"{e.runtime_s:.3f}")
        if table.row_count:
            console.print(table)
        elif matrices:
            console.print(Text(f"{title}\n{what}"))
        for e in matrices:
            console.print(matrix_table(e))
        for e in exps:
            if e.errors is not None and not e.per_token and e.units:
                console.print(errors_table(e))
