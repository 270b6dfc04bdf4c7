"""``faithscope.audit``: which explanation of this model to trust, and why.

An audit runs every applicable explainer on the same examples of the user's model and data, as
a study with a fixed plan (:func:`~faithscope.audits.budgets.audit_spec`), so it is resumable
and cached like any study: a killed audit rerun with the same arguments recomputes only the
units that had not finished. It measures, with 95 % bootstrap CIs, faithfulness
(comprehensiveness, sufficiency and their AOPC, next to the random explainer), sanity (cascading
layer randomization), sampling stability (two sampling seeds), robustness (average sensitivity
under embedding noise), plausibility where the data has human rationales, ground truth on a
planted-feature copy of the model (``planted``), and cost (seconds and model rows per
explanation, peak memory). :mod:`~faithscope.audits.verdict` turns the numbers into a verdict
per explainer and one recommendation, by a rule printed with them.

Example
-------
>>> import tempfile
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> result = fs.audit(tiny_classifier(), "sst2", n=4, data_params={"bundled": True},
...                   explainers=["gradient", "leave_one_out"], budget="fast", quiet=True,
...                   out=tempfile.mkdtemp())
>>> sorted(e.name for e in result.verdict.explainers)
['gradient', 'leave_one_out']
>>> result.to_dict()["budget"]["name"]
'fast'
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Dataset, Example, load_dataset
from ..data.readers import DataError
from ..errors import InputError
from ..registry import explainers as explainer_registry
from .budgets import (
    BUDGETS,
    CLASSIFIER_EXPLAINERS,
    GENERATIVE_EXPLAINERS,
    Budget,
    audit_spec,
    explainer_params,
)
from .verdict import RULE, Verdict, judge


@dataclass
class AuditResult:
    """What an audit found: the verdict, the setting, and where its study lives."""

    verdict: Verdict
    budget: Budget
    setting: dict[str, Any]
    not_applicable: dict[str, str]
    study_dir: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        from ..provenance import versions

        return {"faithscope_audit": 1, "setting": self.setting, "budget": self.budget.to_dict(),
                "not_applicable": self.not_applicable, "seconds": self.seconds,
                "versions": versions(), **self.verdict.to_dict()}

    def to_json(self) -> str:
        from ..report.html import finite

        return json.dumps(finite(self.to_dict()), indent=1, sort_keys=False)


# ---------------------------------------------------------------- inputs
def _source(model: Any, out: Path) -> str:
    """A loadable source for ``model``: a path / hub id as given, or an adapter saved once into
    the audit folder."""
    if isinstance(model, str | os.PathLike):
        return os.fspath(model)
    if hasattr(model, "save") and hasattr(model, "tokenizer"):
        target = out / "model"
        if not (target / "config.json").exists():
            target.mkdir(parents=True, exist_ok=True)
            model.save(target)
        return str(target)
    raise InputError(f"audit: model must be a path, a hub id or a loaded adapter, got "
                     f"{type(model).__name__}")


def _data(data: Any, params: Mapping[str, Any], out: Path) -> tuple[str, dict[str, Any]]:
    """(registered dataset name, loader params) for a dataset name, a data file, or examples in
    memory (saved once into the audit folder)."""
    from ..data.saved import save_examples
    from ..registry import datasets

    if isinstance(data, str) and data in datasets:
        return data, dict(params)
    if isinstance(data, str | os.PathLike) and Path(data).is_file():
        p = Path(data)
        if p.suffix == ".jsonl" and p.read_text(encoding="utf-8").lstrip().startswith(
                '{"labels"'):
            return "examples", {"path": str(p.resolve()), **params}
        return "hf", {"path": str(p.resolve()), **params}
    if isinstance(data, Dataset) or (isinstance(data, Sequence) and data
                                     and all(isinstance(e, Example) for e in data)):
        exs = list(data.examples if isinstance(data, Dataset) else data)
        labels = list(data.labels) if isinstance(data, Dataset) else list(params.get("labels", ()))
        out.mkdir(parents=True, exist_ok=True)
        target = out / "data.jsonl"
        save_examples(target, exs, labels=labels)
        return "examples", {"path": str(target)}
    if isinstance(data, str):
        raise InputError(f"audit: {data!r} is neither a registered dataset "
                         f"({', '.join(sorted(datasets.names()))}) nor a data file")
    raise InputError("audit: data must be a dataset name, a data file, a Dataset or a "
                     "non-empty list of Examples")


def _probe(adapter: Any, example: Example, name: str, budget: Budget) -> str | None:
    """None when explainer ``name`` runs on the model (one example, smallest settings), else
    the reason it does not apply (its first line)."""
    from ..api import explain, make_explainer
    small = {k: min(v, 8) if isinstance(v, int) else v
             for k, v in explainer_params(budget, name).items()}
    # settings the explainer refuses are an error of the budget, not "does not apply"
    exp = make_explainer((name, small))
    try:
        with warnings.catch_warnings():  # e.g. too few samples: this is only a probe
            warnings.simplefilter("ignore")
            explain(adapter, [example], [exp])
    except (InputError, NotImplementedError, ValueError, TypeError, RuntimeError) as err:
        text = str(err).strip().splitlines()
        return text[0] if text else type(err).__name__
    return None


def _default_out(setting: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(setting, sort_keys=True, default=str).encode()
                            ).hexdigest()[:16]
    return Path.home() / ".cache" / "faithscope" / "audits" / digest


# ---------------------------------------------------------------- the audit
def audit(model: Any, data: Any, *, split: str = "dev", n: int | None = None,
          explainers: Sequence[str] | None = None, budget: str = "fast", planted: bool = False,
          train_split: str = "train", rank_by: str = "aopc_comprehensiveness",
          out: str | os.PathLike[str] | None = None, data_params: Mapping[str, Any] | None = None,
          device: str = "auto", seed: int = 0, max_length: int = 128, quiet: bool = False,
          console: Any = None) -> AuditResult:
    """Audit the explainers of ``model`` on ``data`` (see the module docstring).

    ``model``: a checkpoint path, hub id or loaded adapter (a classifier fine-tuned for the
    data's labels, or a generative LM). ``data``: a registered dataset name (``data_params``
    go to its loader), a data file, a Dataset or a list of Examples. ``n``: evaluation examples
    (default: the budget's). ``explainers``: default every one that applies (each is probed on
    one example first; asking for one that does not apply raises InputError). ``out``: the
    audit folder (its study, ``audit.json``, ``audit.html``); default a cache folder keyed by
    the arguments, so a rerun resumes.
    """
    from rich.console import Console

    from ..console import make_console
    from ..studies import open_study, run_study
    from ..studies.work import infer_kind

    t0 = time.perf_counter()
    if budget not in BUDGETS:
        raise InputError(f"audit: budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    b = BUDGETS[budget]
    n_eval = b.n if n is None else n
    if n_eval < 1:
        raise InputError(f"audit: n must be >= 1, got {n_eval}")
    console = console or (Console(quiet=True) if quiet else make_console())
    setting_key = {"model": str(model) if isinstance(model, str | os.PathLike) else id(model),
                   "data": str(data) if isinstance(data, str | os.PathLike) else id(data),
                   "split": split, "n": n_eval, "budget": budget, "planted": planted,
                   "seed": seed, "explainers": list(explainers or [])}
    folder = Path(out) if out is not None else _default_out(setting_key)
    source = _source(model, folder)
    name, params = _data(data, data_params or {}, folder)
    kind = infer_kind(source)
    generative = kind == "generative"
    if generative and planted:
        raise InputError("audit: --planted fine-tunes a classifier; it does not apply to a "
                         "generative model")

    # the data: enough examples, labels where the planted protocol needs them
    try:
        ds = load_dataset(name, split=split, seed=seed, **params)
    except (DataError, ValueError, TypeError) as err:
        raise InputError(f"audit: cannot load {name!r} ({split}): {err}") from None
    if len(ds) == 0:
        raise InputError(f"audit: {name} ({split}) has no examples")
    if n_eval > len(ds):
        raise InputError(f"audit: n = {n_eval} is larger than the data ({len(ds)} examples in "
                         f"{name} {split}); pass --n {len(ds)} or less")
    if planted:
        try:
            train = load_dataset(name, split=train_split, seed=seed, **params)
        except (DataError, ValueError, TypeError) as err:
            raise InputError(f"audit: --planted needs a labelled training split; cannot load "
                             f"{name!r} ({train_split}): {err}") from None
        if not len(train) or any(ex.label is None for ex in train.examples[: b.planted_train_n]):
            raise InputError(f"audit: --planted needs labelled data, and {name} "
                             f"({train_split}) has unlabelled examples")

    # the model as it is, and which explainers apply to it
    adapter = _load(source, generative, device, max_length)
    if not generative and ds.labels and adapter.num_labels != len(ds.labels):
        raise InputError(f"audit: the model has {adapter.num_labels} output classes and "
                         f"{name} has {len(ds.labels)} labels ({', '.join(ds.labels)}); audit "
                         "a model fine-tuned on this data's labels")
    asked = list(explainers) if explainers else list(
        GENERATIVE_EXPLAINERS if generative else CLASSIFIER_EXPLAINERS)
    for e in asked:
        if e not in explainer_registry:
            raise InputError(f"audit: {explainer_registry.unknown_message(e)}")
    not_applicable: dict[str, str] = {}
    probe_example = ds.examples[0]
    for e in asked:
        why = _probe(adapter, probe_example, e, b)
        if why is not None:
            if explainers:
                raise InputError(f"audit: explainer {e!r} does not apply to this model: {why}")
            not_applicable[e] = why
    del adapter
    chosen = [e for e in asked if e not in not_applicable and e != "random"]
    if not chosen:
        raise InputError("audit: no explainer applies to this model")

    spec = audit_spec(source=source, data=name, data_params=params, split=split, n=n_eval,
                      explainers=chosen, budget=b, planted=planted, train_split=train_split,
                      generative=generative, max_length=max_length, seed=seed, device=device)
    from ..metrics.base import get_metric

    measured = {m for d in spec.datasets[:1] for m in (d.metrics or ())}
    if rank_by not in measured:
        raise InputError(f"audit: rank_by must be one of the measured metrics "
                         f"({', '.join(sorted(measured))}), got {rank_by!r}")
    higher = get_metric(rank_by).higher_is_better
    run_study(spec, folder / "study", console=console, keep_going=True, device=device)

    study = open_study(folder / "study")
    rows = study.metrics()
    main = rows[rows["dataset"] == name] if len(rows) else rows
    planted_rows = rows[rows["dataset"] == "planted"] if planted and len(rows) else None
    models = study.models()
    acc = {r["dataset"]: float(r["accuracy"]) for _, r in models.iterrows()}
    failed = (study.manifest.get("runs") or [{}])[-1].get("failed") or []
    errors: dict[str, str] = {}
    for f in failed:
        if f.get("explainer") and f.get("dataset") == name:
            errors.setdefault(str(f["explainer"]), f"{f['stage']} failed: {f['error']}")
    verdict = judge(main, planted_rows,
                    explainers=[(e.name, e.params) for e in spec.explainers],
                    costs=_costs(study, name, min(n_eval, len(ds))), errors=errors,
                    planted_accuracy=acc.get("planted"), planted_asked=planted,
                    rank_by=rank_by, higher_is_better=higher, n_boot=b.n_boot, seed=seed)
    data_label = name
    if name in ("examples", "hf"):  # a file: its name only (no machine path in the record)
        p = Path(params["path"])
        data_label = "examples given in memory" if p.parent == folder else p.name
    setting = {"model": _portable_model(model, source), "kind": kind, "data": data_label,
               "split": split, "n": n_eval, "accuracy": acc.get(name),
               "majority_baseline": _majority(ds, n_eval),
               "planted": planted, "planted_accuracy": acc.get("planted"),
               "planted_train_n": b.planted_train_n if planted else None,
               "train_split": train_split if planted else None, "seed": seed,
               "rank_by": rank_by, "rule": RULE, "device": device}
    result = AuditResult(verdict, b, setting, not_applicable, str(folder / "study"),
                         time.perf_counter() - t0)
    if out is not None:
        from .render import html_page

        (folder / "audit.json").write_text(result.to_json(), encoding="utf-8")
        (folder / "audit.html").write_text(html_page(result), encoding="utf-8")
    if not quiet:
        from .render import print_audit

        print_audit(result, console)
    return result


def _load(source: str, generative: bool, device: str, max_length: int) -> Any:
    if generative:
        from ..models.generative import load_generative

        return load_generative(source, device=device)
    from ..models.loading import load_model

    return load_model(source, device=device, max_length=max_length, require_head=True)


def _majority(ds: Dataset, n: int) -> float | None:
    """Accuracy of always predicting the most frequent gold label of the audited examples."""
    labels = [ex.label for ex in ds.examples[:n] if ex.label is not None]
    if not labels:
        return None
    return max(labels.count(x) for x in set(labels)) / len(labels)


def _portable_model(model: Any, source: str) -> str:
    from ..paths import portable

    if not isinstance(model, str | os.PathLike):
        return "adapter saved to <audit>/model"
    return portable(source, keep_absolute=False)


def _costs(study: Any, dataset: str, n: int) -> dict[str, dict[str, float]]:
    """Per explainer: seconds and model rows (forward + backward) per explanation, and the
    peak resident memory of the process while it explained (MB), from the explain units."""
    units = study.units()
    if units.empty or "stage" not in units:
        return {}
    ex = units[(units["stage"] == "explain") & (units["dataset"] == dataset)]
    out: dict[str, dict[str, float]] = {}
    for name, g in ex.groupby("explainer"):
        secs = g.get("explain_seconds", g["runtime_s"]).astype(float).sum()
        rows = (g.get("forward_rows", 0) * 1).sum() + (g.get("backward_rows", 0) * 1).sum()
        out[str(name)] = {"seconds_per_explanation": float(secs) / max(n, 1),
                          "model_rows_per_explanation": float(rows) / max(n, 1),
                          "peak_rss_mb": float(g["peak_rss_mb"].max())
                          if "peak_rss_mb" in g else float("nan")}
    return out


__all__ = ["AuditResult", "audit"]
