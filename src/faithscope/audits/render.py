"""The audit in the terminal (a rich table, the failure reasons, one recommendation) and as a
self-contained HTML page in the report's style (inline CSS, no script, no network; every text
from the audit goes through :func:`faithscope.report.html.esc`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..report.assets import CSS
from ..report.html import esc, num, table

if TYPE_CHECKING:
    from .run import AuditResult
    from .verdict import ExplainerAudit

MARK = {"pass": "✓", "fail": "✗", "n/a": "–", "inconclusive": "?"}
STYLE = {"pass": "green", "fail": "red", "n/a": "dim", "inconclusive": "yellow"}
COLUMNS = (("faithful", "faithful"), ("sanity", "sanity"), ("stable", "stable"),
           ("planted", "planted"))


def _score(e: ExplainerAudit | dict[str, Any], metric: str, ci: bool = True) -> str:
    scores = e.scores if hasattr(e, "scores") else e
    s = scores.get(metric)
    if not s:
        return "—"
    if not ci:
        return num(s["mean"])
    return f"{num(s['mean'])} [{num(s['ci_low'])}, {num(s['ci_high'])}]"


def _gate_text(e: ExplainerAudit, gate: str) -> tuple[str, str]:
    g = e.gates.get(gate)
    if g is None:
        return "", "dim"
    value = "" if g.value is None or g.status == "n/a" else f" {g.value:.2f}"
    return MARK[g.status] + value, STYLE[g.status]


def _verdict_text(e: ExplainerAudit, recommended: str | None) -> str:
    if e.error:
        return "failed to run"
    if e.name == recommended:
        return "recommended"
    return "passes" if e.passed else "fails " + ", ".join(g.name for g in e.failures())


def _extra_metrics(result: AuditResult) -> list[str]:
    """Plausibility and robustness columns that were measured."""
    seen = {m for e in result.verdict.explainers for m in e.scores}
    return [m for m in ("token_f1", "auprc", "avg_sensitivity") if m in seen]


def print_audit(result: AuditResult, console: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    v, s = result.verdict, result.setting
    acc = "" if s.get("accuracy") is None else f", accuracy {num(s['accuracy'])}"
    maj = ("" if s.get("majority_baseline") is None
           else f" (majority baseline {num(s['majority_baseline'])})")
    title = (f"audit of {s['model']} on {s['data']} ({s['split']}, n = {s['n']}{acc}{maj}), "
             f"budget {result.budget.name}")
    t = Table(title=title, title_justify="left")
    t.add_column("explainer")
    for _, head in COLUMNS:
        t.add_column(head, justify="center")
    extra = _extra_metrics(result)
    for m in extra:
        t.add_column(m, justify="right")
    t.add_column(f"{v.rank_by} {'↑' if v.higher_is_better else '↓'}", justify="right")
    t.add_column("s / expl", justify="right")
    t.add_column("rows / expl", justify="right")
    t.add_column("verdict")
    for e in v.explainers:
        cells: list[Any] = [Text(e.name, style="bold" if e.name == v.recommended else "")]
        for gate, _ in COLUMNS:
            text, style = _gate_text(e, gate)
            cells.append(Text(text, style=style))
        cells += [_score(e, m, ci=False) for m in extra]
        cells.append(_score(e, v.rank_by))
        cells.append(num(e.cost.get("seconds_per_explanation"), ".3f"))
        cells.append(num(e.cost.get("model_rows_per_explanation"), ".0f"))
        verdict = _verdict_text(e, v.recommended)
        cells.append(Text(verdict, style="green" if e.passed else "red"))
        t.add_row(*cells)
    rnd = ["random (baseline)", "", "", "", ""]
    rnd += [_score(v.random, m, ci=False) for m in extra]
    rnd += [_score(v.random, v.rank_by), "", "", "chance level"]
    t.add_row(*[Text(c, style="dim") for c in rnd])
    console.print(t)
    for e in v.explainers:
        for g in e.failures():
            console.print(Text(f"  ✗ {e.name} · {g.name}: {g.reason}", style="red"))
        if e.error:
            console.print(Text(f"  ✗ {e.name}: {e.error}", style="red"))
        for g in e.gates.values():
            if g.status == "inconclusive":
                console.print(Text(f"  ? {e.name} · {g.name}: {g.reason}", style="yellow"))
                break
    for name, why in result.not_applicable.items():
        console.print(Text(f"  – {name}: not applicable ({why})", style="dim"))
    console.print(Text(v.sentence, style="bold"))
    b = result.budget
    console.print(Text(
        f"budget {b.name}: n {s['n']}, IG {b.ig_steps} steps, {b.samples} samples (LIME, "
        f"KernelSHAP), {b.max_evals} evaluations (PartitionSHAP), randomization on "
        f"{b.sanity_n}, stability on {b.stability_n}, "
        + (f"sensitivity on {b.sensitivity_n} examples" if b.sensitivity_n
           else "sensitivity not run (standard and thorough budgets run it)")
        + (f", planted fine-tune on {b.planted_train_n}" if s.get("planted") else "")
        + f"; {result.seconds:.0f} s", style="dim"))
    console.print(Text(f"rule: {s['rule']}", style="dim"))


def _gate_cell(e: ExplainerAudit, gate: str) -> str:
    g = e.gates.get(gate)
    if g is None:
        return "<td></td>"
    value = "" if g.value is None or g.status == "n/a" else f" {g.value:.2f}"
    cls = {"pass": "pass", "fail": "fail", "n/a": "na", "inconclusive": "inc"}[g.status]
    return f'<td class="{cls}" title="{esc(g.reason)}">{esc(MARK[g.status] + value)}</td>'


_PAGE_CSS = """
td.pass{color:#1a7f37;font-weight:600}td.fail{color:#cf222e;font-weight:600}
td.na{color:#888}td.inc{color:#9a6700}p.verdict{font-size:1.15em;font-weight:600}
ul.why li{margin:.2em 0}
"""


def html_page(result: AuditResult) -> str:
    """The audit as one self-contained HTML document."""
    v, s, b = result.verdict, result.setting, result.budget
    extra = _extra_metrics(result)
    head = ["explainer", *(h for _, h in COLUMNS), *extra,
            f"{v.rank_by} {'↑' if v.higher_is_better else '↓'}", "comprehensiveness ↑",
            "sufficiency ↓", "s / explanation", "model rows / explanation", "peak MB", "verdict"]
    rows = []
    for e in v.explainers:
        rows.append([f'<td class="l">{esc(e.name)}</td>',
                     *(_gate_cell(e, g) for g, _ in COLUMNS),
                     *(esc(_score(e, m)) for m in extra), esc(_score(e, v.rank_by)),
                     esc(_score(e, "comprehensiveness")), esc(_score(e, "sufficiency")),
                     esc(num(e.cost.get("seconds_per_explanation"))),
                     esc(num(e.cost.get("model_rows_per_explanation"), ".0f")),
                     esc(num(e.cost.get("peak_rss_mb"), ".0f")),
                     f'<td class="l">{esc(_verdict_text(e, v.recommended))}</td>'])
    rows.append(['<td class="l">random (baseline)</td>', *([""] * len(COLUMNS)),
                 *(esc(_score(v.random, m)) for m in extra), esc(_score(v.random, v.rank_by)),
                 esc(_score(v.random, "comprehensiveness")),
                 esc(_score(v.random, "sufficiency")), "", "", "",
                 '<td class="l">chance level</td>'])
    why = [f"<li><b>{esc(e.name)}</b> · {esc(g.name)}: {esc(g.reason)}</li>"
           for e in v.explainers for g in e.failures()]
    why += [f"<li><b>{esc(e.name)}</b>: {esc(e.error)}</li>" for e in v.explainers if e.error]
    why += [f"<li><b>{esc(k)}</b>: not applicable ({esc(r)})</li>"
            for k, r in result.not_applicable.items()]
    evidence = [f"<li><b>{esc(e.name)}</b> · {esc(g.name)} ({esc(g.status)}): "
                f"{esc(g.reason)}</li>" for e in v.explainers for g in e.gates.values()
                if g.status != "n/a"]
    setting = [(k, s.get(k)) for k in ("model", "kind", "data", "split", "n", "accuracy",
                                       "majority_baseline", "planted", "planted_accuracy",
                                       "planted_train_n", "seed", "device")]
    setting_rows = [[f'<td class="l">{esc(k)}</td>', f'<td class="l">{esc(_plain(val))}</td>']
                    for k, val in setting]
    budget_rows = [[f'<td class="l">{esc(k)}</td>', f'<td class="l">{esc(val)}</td>']
                   for k, val in b.to_dict().items()]
    csp = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
           "form-action 'none'")
    body = (
        f'<section id="verdict"><h2>Verdict</h2><p class="verdict">{esc(v.sentence)}</p>'
        f"{table(head, rows)}"
        + (f'<h3>Why explainers fail</h3><ul class="why">{"".join(why)}</ul>' if why else "")
        + f'<p class="sub">Rule: {esc(s["rule"])}</p></section>'
        f'<section id="evidence"><h2>Evidence per gate</h2><ul class="why">'
        f'{"".join(evidence)}</ul></section>'
        f'<section id="setting"><h2>Setting</h2>{table(["", ""], setting_rows)}'
        f'<h3>Budget</h3>{table(["", ""], budget_rows)}'
        f'<p class="sub">{result.seconds:.0f} s in all. Every interval is a 95 % percentile '
        "bootstrap over examples. The numbers behind this page are in audit.json.</p></section>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>faithscope audit · {esc(s['model'])}</title>"
            f"<style>{CSS}{_PAGE_CSS}</style></head>\n"
            f"<body><header><h1>faithscope audit · {esc(s['model'])}</h1>"
            f'<div class="sub">{esc(s["data"])} ({esc(s["split"])}, n = {esc(s["n"])}) · '
            f"budget {esc(b.name)}</div></header>\n<main>{body}</main>\n</body></html>\n")


def _plain(x: Any) -> str:
    if isinstance(x, float):
        return num(x)
    return "—" if x is None else str(x)
