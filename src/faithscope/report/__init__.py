"""A self-contained interactive HTML report of a study: ``faithscope report STUDY -o FILE``.

One file that works offline (inline CSS, SVG figures and script; no network): an overview
(models, datasets, explainers, runtime and memory), metric tables (mean ± 95 % CI, direction,
best per row, random baseline), plots (metric against model size, per architecture, per gold
label, explainer agreement; sanity and stability curves when the study has them), an example
browser (every explainer's heatmap against the human rationale or planted feature), for
generative models a generation section (perturbation curves with bootstrap CI bands, multi-level
prompt heatmaps, queries per explanation) and the study's provenance. The same study always gives the same bytes.

Example
-------
>>> from faithscope.report import write_report
>>> write_report("studies/scaling", "report.html", figures_dir="figures")  # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .browser import agreement_matrix, browser_payload
from .data import ReportData, collect
from .figures import Figure, build_figures, export_figures, style
from .generation import generation_figures
from .html import esc, render, script_json
from .seeds import seed_figures


def build_report(study: Any, *, n_boot: int = 1000) -> tuple[str, list[Figure]]:
    """The report's HTML and its figures for a :class:`~faithscope.studies.Study` or a path."""
    from ..studies.results import Study, open_study

    if not isinstance(study, Study):
        study = open_study(study)
    data = collect(study, n_boot=n_boot)
    with style():
        gen = generation_figures(data)
    figures = build_figures(data) + seed_figures(data) + gen
    return render(data, figures, browser_payload(data)), figures


def write_report(study: Any, out_html: str | os.PathLike[str], *,
                 figures_dir: str | os.PathLike[str] | None = None, n_boot: int = 1000) -> Path:
    """Write the report of ``study`` (a Study or a study directory) to ``out_html``; with
    ``figures_dir``, also every figure as ``<name>.png`` and ``<name>.svg``. Returns the path."""
    text, figures = build_report(study, n_boot=n_boot)
    out = Path(out_html)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    if figures_dir is not None:
        export_figures(figures, figures_dir)
    for f in figures:
        f.fig.clear()
    return out


__all__ = ["Figure", "ReportData", "agreement_matrix", "browser_payload", "build_figures",
           "build_report", "collect", "esc", "export_figures", "script_json", "write_report"]
