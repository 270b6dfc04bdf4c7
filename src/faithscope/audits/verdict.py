"""The audit's verdict: gates first, then a ranking, by a rule stated here and in every output.

Every number comes from the audit's study (its metric rows, the fine-tuned planted model's
accuracy, the explain units' cost records); every interval is a 95 % percentile bootstrap over
examples (:func:`faithscope.metrics.stats.bootstrap_ci`). An explainer is **recommendable**
when it passes every gate that applies:

1. **faithful**: its ``comprehensiveness`` (ERASER) beats the random explainer's with
   non-overlapping intervals (its lower bound above random's upper bound);
2. **sanity** (classifiers): after cascading layer randomization of the whole model
   (Adebayo et al. 2018), the mean Spearman correlation of its explanation with the trained
   model's (absolute scores) is below :data:`SANITY_MAX`: an explanation that survives the
   destruction of the weights explains the input, not the model (the CI is shown: budgets
   check few examples here, since each re-runs the explainer once per parameter group);
3. **stable** (sampling explainers): the mean Spearman correlation of two explanations under two
   sampling seeds (``sampling_stability``) is at least :data:`STABILITY_MIN`; deterministic
   explainers pass by construction;
4. **planted feature** (with ``planted``): on a copy of the model fine-tuned on the same data
   with a planted label word, it ranks the planted word first (``gt_overlap``) in a share of
   planted examples whose lower bound is at least :data:`PLANTED_MIN`. When the planted model
   does not reach :data:`PLANTED_ACCURACY_MIN` accuracy it has not learnt the feature, and the
   gate is *inconclusive* for every explainer (it neither passes nor fails them).

Among recommendable explainers the one with the best mean of the ranking metric
(``aopc_comprehensiveness`` by default; its direction is the metric's) wins; explainers whose
interval contains the best one's mean are tied with it (statistically indistinguishable from
it), and the tie goes to the cheapest (seconds per explanation). An explainer that failed to run is reported with its error and never recommended.

Example
-------
>>> from faithscope.audits.verdict import Gate
>>> Gate("faithful", "fail", "comprehensiveness 0.21 [0.13, 0.29] does not beat random").ok
False
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..metrics.stats import bootstrap_ci

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

SANITY_MAX = 0.5
STABILITY_MIN = 0.7
PLANTED_MIN = 0.5
PLANTED_ACCURACY_MIN = 0.9
GATES = ("faithful", "sanity", "stable", "planted")
RULE = (f"gates: comprehensiveness beats random (non-overlapping 95 % CIs); after cascading "
        f"layer randomization, mean Spearman with the trained model's explanation < "
        f"{SANITY_MAX}; mean Spearman between two sampling seeds >= {STABILITY_MIN}; with "
        f"--planted, the planted word ranked first in >= {PLANTED_MIN:.0%} of planted examples "
        f"(CI lower bound; inconclusive when the planted model's accuracy < "
        f"{PLANTED_ACCURACY_MIN}). Then: best mean of the ranking metric; explainers whose CI "
        "contains the best mean are tied with it, and the cheapest of them wins.")


@dataclass(frozen=True)
class Gate:
    """One gate of one explainer: ``status`` is pass, fail, n/a or inconclusive."""

    name: str
    status: str
    reason: str = ""
    value: float | None = None
    ci: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.status != "fail"


@dataclass
class ExplainerAudit:
    name: str
    params: dict[str, Any]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> mean/lo/hi/n
    gates: dict[str, Gate] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(g.ok for g in self.gates.values())

    def failures(self) -> list[Gate]:
        return [g for g in self.gates.values() if not g.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "scores": self.scores,
                "gates": {k: {"status": g.status, "reason": g.reason, "value": g.value,
                              "ci": list(g.ci) if g.ci else None} for k, g in self.gates.items()},
                "cost": self.cost, "error": self.error, "passed": self.passed}


def _ci(values: Sequence[float], n_boot: int, seed: int) -> dict[str, float]:
    mean, lo, hi = bootstrap_ci(np.asarray(values, dtype=np.float64), n_boot=n_boot, seed=seed)
    return {"mean": mean, "ci_low": lo, "ci_high": hi,
            "n": int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())}


def _fmt(s: Mapping[str, float]) -> str:
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def _detail(d: Any) -> dict[str, Any]:
    if isinstance(d, str):
        try:
            return dict(json.loads(d))
        except ValueError:
            return {}
    return dict(d) if isinstance(d, Mapping) else {}


def score_table(rows: pd.DataFrame, *, n_boot: int, seed: int) -> dict[str, dict[str, dict]]:
    """explainer -> metric -> {mean, ci_low, ci_high, n}; plus ``randomization (final)``: the
    similarity at the last cascading step (the fully randomized model)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (expl, metric), g in rows.groupby(["explainer", "metric"], sort=True):
        vals = g["value"].to_numpy(dtype=np.float64)
        out.setdefault(str(expl), {})[str(metric)] = _ci(vals, n_boot, seed)
        if metric == "randomization":
            last = [(_detail(d).get("values") or [None])[-1] for d in g["detail"]]
            final = [math.nan if v is None else float(v) for v in last]
            out[str(expl)]["randomization (final)"] = _ci(final, n_boot, seed)
        if metric == "sampling_stability":
            det = [bool(_detail(d).get("deterministic")) for d in g["detail"]]
            out[str(expl)][metric]["deterministic"] = float(all(det))
    return out


def _faithful(s: Mapping[str, Any], rnd: Mapping[str, Any]) -> Gate:
    c, r = s.get("comprehensiveness"), rnd.get("comprehensiveness")
    if c is None or r is None or not math.isfinite(c["mean"]):
        return Gate("faithful", "n/a", "comprehensiveness not measured")
    ok = c["ci_low"] > r["ci_high"]
    verb = "beats" if ok else "does not beat"
    return Gate("faithful", "pass" if ok else "fail",
                f"comprehensiveness {_fmt(c)} {verb} random {_fmt(r)}", c["mean"],
                (c["ci_low"], c["ci_high"]))


def _sanity(s: Mapping[str, Any]) -> Gate:
    f = s.get("randomization (final)")
    if f is None or not math.isfinite(f["mean"]):
        return Gate("sanity", "n/a", "layer randomization not available for this model")
    ok = f["mean"] < SANITY_MAX
    why = (f"Spearman with the fully randomized model {_fmt(f)}"
           + (f": mean below {SANITY_MAX}" if ok else f": mean not below {SANITY_MAX}, the "
              "explanation barely depends on the trained weights"))
    return Gate("sanity", "pass" if ok else "fail", why, f["mean"], (f["ci_low"], f["ci_high"]))


def _stable(s: Mapping[str, Any]) -> Gate:
    st = s.get("sampling_stability")
    if st is None:
        return Gate("stable", "n/a", "sampling stability not measured")
    if st.get("deterministic"):
        return Gate("stable", "n/a", "deterministic explainer", 1.0)
    if not math.isfinite(st["mean"]):
        return Gate("stable", "n/a", "no comparable pair of explanations")
    ok = st["mean"] >= STABILITY_MIN
    why = (f"Spearman between two sampling seeds {_fmt(st)}"
           + ("" if ok else f": below {STABILITY_MIN}; raise its sample count"))
    return Gate("stable", "pass" if ok else "fail", why, st["mean"], (st["ci_low"], st["ci_high"]))


def _planted(s: Mapping[str, Any] | None, accuracy: float | None, asked: bool,
             rnd: Mapping[str, Any] | None) -> Gate:
    if not asked:
        return Gate("planted", "n/a", "not asked (--planted)")
    g = (s or {}).get("gt_overlap")
    if g is None or not math.isfinite(g["mean"]):
        return Gate("planted", "n/a", "no planted example was explained")
    base = f" (random {_fmt(rnd['gt_overlap'])})" if rnd and "gt_overlap" in rnd else ""
    found = f"planted word ranked first in {_fmt(g)} of planted examples{base}"
    if accuracy is None or not accuracy >= PLANTED_ACCURACY_MIN:
        acc = "unknown" if accuracy is None else f"{accuracy:.3f}"
        return Gate("planted", "inconclusive",
                    f"{found}; the planted model's accuracy {acc} < {PLANTED_ACCURACY_MIN}: it "
                    "did not learn the planted feature (a larger budget trains it longer)",
                    g["mean"], (g["ci_low"], g["ci_high"]))
    ok = g["ci_low"] >= PLANTED_MIN
    return Gate("planted", "pass" if ok else "fail",
                found + ("" if ok else f": lower bound below {PLANTED_MIN:.0%}"), g["mean"],
                (g["ci_low"], g["ci_high"]))


@dataclass
class Verdict:
    explainers: list[ExplainerAudit]
    random: dict[str, dict[str, float]]
    rank_by: str
    higher_is_better: bool
    recommended: str | None
    tied: list[str]
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": RULE, "rank_by": self.rank_by, "higher_is_better": self.higher_is_better,
                "recommended": self.recommended, "tied_with_best": self.tied,
                "recommendation": self.sentence, "random": self.random,
                "explainers": [e.to_dict() for e in self.explainers]}


def judge(main: pd.DataFrame, planted_rows: pd.DataFrame | None, *,
          explainers: Sequence[tuple[str, dict[str, Any]]], costs: Mapping[str, dict[str, float]],
          errors: Mapping[str, str], planted_accuracy: float | None, planted_asked: bool,
          rank_by: str, higher_is_better: bool, n_boot: int = 1000, seed: int = 0) -> Verdict:
    """Gates and ranking (see the module docstring) from the audit study's metric rows."""
    scores = score_table(main, n_boot=n_boot, seed=seed) if len(main) else {}
    planted = (score_table(planted_rows, n_boot=n_boot, seed=seed)
               if planted_rows is not None and len(planted_rows) else {})
    rnd = scores.get("random", {})
    out = []
    for name, params in explainers:
        ea = ExplainerAudit(name, dict(params), cost=dict(costs.get(name, {})))
        if name in errors or name not in scores:
            ea.error = errors.get(name, "no result")
            out.append(ea)
            continue
        s = scores[name]
        ea.scores = {**s, **{f"{k} (planted)": v for k, v in planted.get(name, {}).items()}}
        ea.gates = {"faithful": _faithful(s, rnd), "sanity": _sanity(s), "stable": _stable(s),
                    "planted": _planted(planted.get(name), planted_accuracy, planted_asked,
                                        planted.get("random"))}
        out.append(ea)
    ok = [e for e in out if e.passed and rank_by in e.scores
          and math.isfinite(e.scores[rank_by]["mean"])]
    sign = 1.0 if higher_is_better else -1.0
    ok.sort(key=lambda e: -sign * e.scores[rank_by]["mean"])
    random_row = {**rnd, **{f"{k} (planted)": v for k, v in planted.get("random", {}).items()}}
    if not ok:
        closest = sorted((e for e in out if e.error is None),
                         key=lambda e: (len(e.failures()), -sign * e.scores.get(
                             rank_by, {"mean": -math.inf * sign})["mean"]))
        sentence = "No explainer passes every gate on this model"
        if closest:
            c = closest[0]
            why = "; ".join(f"{g.name}: {g.reason}" for g in c.failures())
            sentence += f"; the closest is {c.name} (fails {why})"
        return Verdict(out, random_row, rank_by, higher_is_better, None, [], sentence + ".")
    best = ok[0].scores[rank_by]
    tied = [e for e in ok
            if e.scores[rank_by]["ci_low"] <= best["mean"] <= e.scores[rank_by]["ci_high"]]
    pick = min(tied, key=lambda e: e.cost.get("seconds_per_explanation", math.inf))
    passed = ", ".join(g.name for g in pick.gates.values() if g.status == "pass")
    r = pick.scores[rank_by]
    sentence = (f"Use {pick.name} on this model: it passes every gate that applies ({passed}); "
                f"its {rank_by} is {_fmt(r)} (random {_fmt(rnd[rank_by])})"
                if rank_by in rnd else
                f"Use {pick.name} on this model: it passes every gate that applies ({passed}); "
                f"its {rank_by} is {_fmt(r)}")
    others = [e.name for e in tied if e is not pick]
    if others:
        sec = pick.cost.get("seconds_per_explanation", math.nan)
        sentence += (f", tied with {', '.join(others)} (their CIs contain the best mean), and it "
                     "is the cheapest "
                     f"of them ({sec:.3f} s per explanation)")
    else:
        sentence += ", the best of the explainers that pass"
    return Verdict(out, random_row, rank_by, higher_is_better, pick.name,
                   [e.name for e in tied], sentence + ".")
