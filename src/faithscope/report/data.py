"""What a report shows, collected from a study: overview tables, metric summaries with bootstrap
CIs (per model, per architecture, per gold label), runtime and memory, and the evaluation
examples (re-loaded through the study spec for their rationales).

Everything is sorted so that the same study always gives the same report.

Example
-------
>>> from faithscope.report.data import explainer_order
>>> explainer_order(["random", "lime", "gradient"], spec_order=["lime", "gradient"])
['lime', 'gradient', 'random']
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..data.example import Example
from ..explanation import Explanation, explanations_from_table
from ..metrics.base import FAMILIES, get_metric
from ..studies.results import Study

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

REFERENCE_NAMES = {"planted": "planted feature", "human": "human rationale"}


@dataclass
class DatasetInfo:
    """One evaluated dataset of the study, with its examples when they could be re-loaded."""

    name: str
    split: str
    n: int
    labels: tuple[str, ...]
    reference: str | None  # "planted feature", "human rationale", "rationale" or None
    metrics: tuple[str, ...]
    examples: dict[str, Example] = field(default_factory=dict)
    note: str = ""  # why the examples could not be re-loaded


@dataclass
class ReportData:
    name: str
    manifest: dict[str, Any]
    progress: dict[str, tuple[int, int]]
    models: pd.DataFrame  # one row per model x seed x dataset
    metrics: pd.DataFrame  # tidy metric rows
    explainers: list[str]  # display order, random last
    explainer_params: dict[str, dict[str, Any]]
    datasets: list[DatasetInfo]
    metric_info: dict[str, dict[str, Any]]
    sizes: dict[str, float]  # model -> parameters (M)
    summary: pd.DataFrame  # dataset, model, explainer, metric: mean, ci_low, ci_high, n
    by_arch: pd.DataFrame  # dataset, architecture, explainer, metric
    by_label: pd.DataFrame  # dataset, label (name), explainer, metric
    runtime: pd.DataFrame  # explainer, model: s_per_explanation, peak_rss_mb, cuda_peak_mb
    explanations: dict[tuple[str, str, int], list[Explanation]]  # (dataset, model, seed)
    analysis_families: list[str] = field(default_factory=list)
    stability_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # seed_stability
    stability_units: pd.DataFrame = field(default_factory=pd.DataFrame)
    ling_accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)  # ling_lr

    def dataset(self, name: str) -> DatasetInfo:
        return next(d for d in self.datasets if d.name == name)

    def model_order(self) -> list[str]:
        """Models by size, then name (as in the study spec when sizes tie)."""
        spec = [m.get("name") for m in self.manifest.get("spec", {}).get("models", [])]
        names = list(dict.fromkeys([*[n for n in spec if n in self.sizes], *sorted(self.sizes)]))
        return sorted(names, key=lambda m: (self.sizes.get(m, math.inf), names.index(m)))


def explainer_order(names: Iterable[str], spec_order: Sequence[str] = ()) -> list[str]:
    """Explainers in spec order (unknown ones sorted after), ``random`` last."""
    names = set(names)
    head = [n for n in dict.fromkeys(spec_order) if n in names and n != "random"]
    tail = sorted(n for n in names if n not in head and n != "random")
    return head + tail + (["random"] if "random" in names else [])


def metric_info(names: Iterable[str], metrics: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Family, direction, bounds and needs of every metric (from the registry, else the rows)."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(names)):
        rows = metrics[metrics["metric"] == name] if not metrics.empty else metrics
        try:
            m = get_metric(name)
            out[name] = {"family": m.family, "higher_is_better": bool(m.higher_is_better),
                         "bounds": tuple(float(b) for b in m.bounds), "needs": sorted(m.needs)}
        except Exception:  # a metric no longer registered: what the rows say
            out[name] = {"family": str(rows["family"].iloc[0]) if len(rows) else "",
                         "higher_is_better": bool(rows["higher_is_better"].iloc[0])
                         if len(rows) else True, "bounds": (-math.inf, math.inf), "needs": []}
    return out


def _labels_by_dataset(models: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    if models.empty or "labels" not in models:
        return out
    for ds, g in models.groupby("dataset", sort=True):
        try:
            out[str(ds)] = tuple(str(x) for x in json.loads(g["labels"].iloc[0]))
        except (TypeError, ValueError):
            pass
    return out


def load_datasets(manifest: dict[str, Any], labels: dict[str, tuple[str, ...]],
                  metrics: pd.DataFrame) -> list[DatasetInfo]:
    """The evaluation examples of every dataset, loaded as the study loaded them (the spec's
    split, n, seed and loader parameters). A dataset that cannot be loaded here (e.g. its files
    are on another machine) keeps a note; the report then shows no rationales for it."""
    from ..data import load_dataset

    spec = manifest.get("spec", {})
    out = []
    for d in spec.get("datasets", []):
        name = str(d.get("name"))
        info = DatasetInfo(name=name, split=str(d.get("split", "")),
                           n=int(manifest.get("n_examples", {}).get(name, d.get("n", 0)) or 0),
                           labels=labels.get(name, ()), reference=None,
                           metrics=tuple(sorted(set(
                               metrics.loc[metrics["dataset"] == name, "metric"])))
                           if not metrics.empty else tuple(d.get("metrics")
                                                           or spec.get("metrics") or ()))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = load_dataset(name, split=d.get("split", "dev"), n=d.get("n"),
                                  seed=d.get("seed", 0), **(d.get("params") or {}))
        except Exception as err:  # missing files, changed loader: report without rationales
            info.note = f"examples not re-loaded ({type(err).__name__}: {err})".splitlines()[0]
        else:
            info.examples = {ex.id: ex for ex in ds.examples}
            info.labels = info.labels or tuple(ds.labels)
            kind = ds.info.get("rationale")
            has = any(ex.rationale for ex in ds.examples)
            info.reference = REFERENCE_NAMES.get(str(kind)) or ("rationale" if has else None)
        out.append(info)
    return out


def read_explanations(study: Study) -> dict[tuple[str, str, int], list[Explanation]]:
    """Every stored explanation, keyed by (dataset, model, seed), in plan order."""
    out: dict[tuple[str, str, int], list[Explanation]] = {}
    for key in study.finished("explain"):
        m = study.store.marker("explain", key) or {}
        exps = explanations_from_table(study.store.read_table("explain", key))
        k = (str(m.get("dataset")), str(m.get("model")), int(m.get("seed") or 0))
        out.setdefault(k, []).extend(exps)
    return out


def runtime_table(units: pd.DataFrame) -> pd.DataFrame:
    """Per explainer and model: seconds per explanation (unit runtime over rows), the largest
    process peak RSS and CUDA peak seen while explaining."""
    cols = ["explainer", "model", "s_per_explanation", "explanations", "peak_rss_mb",
            "cuda_peak_mb"]
    if units.empty or "stage" not in units:
        return pd.DataFrame(columns=cols)
    ex = units[units["stage"] == "explain"].copy()
    if ex.empty:
        return pd.DataFrame(columns=cols)
    for c in ("peak_rss_mb", "cuda_peak_mb", "rows", "runtime_s"):
        if c not in ex:
            ex[c] = np.nan
        ex[c] = pd.to_numeric(ex[c], errors="coerce")
    rows = []
    for (e, m), g in ex.groupby(["explainer", "model"], sort=True):
        n = float(g["rows"].sum())
        rows.append({"explainer": e, "model": m,
                     "s_per_explanation": float(g["runtime_s"].sum()) / n if n else math.nan,
                     "explanations": int(n), "peak_rss_mb": float(g["peak_rss_mb"].max()),
                     "cuda_peak_mb": float(g["cuda_peak_mb"].max())})
    return pd.DataFrame(rows, columns=cols)


def _summaries(metrics: pd.DataFrame, models: pd.DataFrame, labels: dict[str, tuple[str, ...]],
               n_boot: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from ..evaluate import summarize

    if metrics.empty:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    summary = summarize(metrics, by=("dataset", "model", "explainer", "metric"), n_boot=n_boot)
    arch = {}
    if not models.empty and "architecture" in models:
        arch = dict(zip(models["model"], models["architecture"].astype(str), strict=False))
    m = metrics.assign(architecture=metrics["model"].map(arch).fillna("unknown"))
    by_arch = summarize(m, by=("dataset", "architecture", "explainer", "metric"), n_boot=n_boot)

    def name(ds: str, y: Any) -> str:
        if y is None or pd.isna(y):
            return "unlabelled"
        names = labels.get(ds, ())
        return names[int(y)] if 0 <= int(y) < len(names) else str(int(y))

    lab = metrics.assign(label=[name(d, y) for d, y in zip(metrics["dataset"], metrics["label"],
                                                          strict=True)])
    by_label = summarize(lab, by=("dataset", "label", "explainer", "metric"), n_boot=n_boot)
    return summary, by_arch, by_label


def collect(study: Study, *, n_boot: int = 1000) -> ReportData:
    """Everything the report shows, from a finished or partly finished study."""
    manifest = study.manifest
    spec = manifest.get("spec", {})
    models = study.models()
    metrics = study.metrics()
    explanations = read_explanations(study)
    labels = _labels_by_dataset(models)
    datasets = load_datasets(manifest, labels, metrics)
    spec_explainers = [str(e.get("name")) for e in spec.get("explainers", [])]
    names = set(metrics["explainer"]) if not metrics.empty else set()
    names |= {e.explainer for exps in explanations.values() for e in exps}
    names |= {*spec_explainers, "random"}  # the planner always adds the random baseline
    params = {str(e.get("name")): dict(e.get("params") or {}) for e in spec.get("explainers", [])}
    sizes: dict[str, float] = {}
    if not models.empty:
        for m, g in models.groupby("model", sort=True):
            sizes[str(m)] = float(g["params_m"].iloc[0])
    spec_metrics = {str(m) for d in [spec, *spec.get("datasets", [])]
                    for m in (d.get("metrics") or ())}
    info = metric_info({*(metrics["metric"] if not metrics.empty else ()), *spec_metrics},
                       metrics)
    summary, by_arch, by_label = _summaries(metrics, models, labels, n_boot)
    families = sorted({i["family"] for i in info.values()} - set(FAMILIES) - {""})
    return ReportData(
        name=str(manifest.get("study") or spec.get("name") or "study"), manifest=manifest,
        progress=study.progress(), models=models, metrics=metrics,
        explainers=explainer_order(names, spec_explainers), explainer_params=params,
        datasets=datasets, metric_info=info, sizes=sizes, summary=summary, by_arch=by_arch,
        by_label=by_label, runtime=runtime_table(study.units()), explanations=explanations,
        analysis_families=families,
        stability_pairs=study.analysis("seed_stability", "pairs"),
        stability_units=study.analysis("seed_stability", "units"),
        ling_accuracy=study.analysis("ling_lr", "accuracy"))


__all__ = ["DatasetInfo", "ReportData", "collect", "explainer_order", "load_datasets",
           "metric_info", "read_explanations", "runtime_table"]
