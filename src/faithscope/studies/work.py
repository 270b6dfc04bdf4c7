"""Running one work unit: the same code serves the local and the Ray executor.

A :class:`Worker` holds what several units share (loaded datasets, the last fine-tuned model),
runs a unit and writes its shard to the store. Explanations are written per shard and read back
per shard, so memory stays flat however large the study grows.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._lazy import lazy_import
from ..data import load_dataset
from ..data.core import Dataset
from ..data.example import Example
from ..errors import InputError
from ..explanation import explanations_from_table, explanations_table
from ..models.adapter import ModelAdapter
from ..models.finetune import Recipe, accuracy, finetune
from ..models.loading import load_model
from ..paths import expand, portable
from .plan import Unit
from .spec import DatasetSpec, ModelSpec, StudySpec
from .store import Store

if TYPE_CHECKING:
    import pandas as pd
    import torch
else:
    pd = lazy_import("pandas")
    torch = lazy_import("torch")


def n_params(adapter: Any) -> int:
    return int(sum(p.numel() for p in adapter.model.parameters()))


_GENERATIVE_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def infer_kind(source: str) -> str:
    """``generative`` when a model's config names a language-model head (causal or seq2seq),
    else ``classifier``."""
    from transformers import AutoConfig

    from ..models.loading import resolve_name

    try:
        cfg = AutoConfig.from_pretrained(resolve_name(source)[0])
    except Exception:  # noqa: BLE001  (loading the model reports the problem properly)
        return "classifier"
    archs = list(getattr(cfg, "architectures", None) or [])
    if any(a.endswith(_GENERATIVE_HEADS) for a in archs):
        return "generative"
    return "classifier"


@dataclass
class Worker:
    """Executes units of one study against one store (one per process or Ray actor)."""

    spec: StudySpec
    store: Store
    device: str | None = None
    checkpoints: str | None = None  # fine-tuned checkpoints; None: the store's (or user cache)
    on_step: Callable[[int, int, float], None] | None = None  # fine-tuning progress
    _data: dict[tuple[str, str], Dataset] = field(default_factory=dict)
    _model: tuple[str, Any] | None = None
    _kinds: dict[str, str] = field(default_factory=dict)
    _rows: dict[str, float] = field(default_factory=dict)  # cost of the last explain unit

    # ---------------------------------------------------------------- lookups
    def model_spec(self, name: str) -> ModelSpec:
        return next(m for m in self.spec.models if m.name == name)

    def dataset_spec(self, name: str) -> DatasetSpec:
        return next(d for d in self.spec.datasets if d.name == name)

    def data(self, d: DatasetSpec, which: str) -> Dataset:
        """``which``: ``eval``, ``train``, ``val`` or ``accuracy`` examples of a dataset spec (cached)."""
        if (d.name, which) not in self._data:
            split, n = {"eval": (d.split, d.n), "train": (d.train_split, d.train_n),
                        "val": (d.val_split, d.val_n),
                        "accuracy": (d.split, max(d.n, d.accuracy_n))}[which]
            params = {k: expand(v) if isinstance(v, str) else v for k, v in d.params.items()}
            self._data[(d.name, which)] = load_dataset(d.name, split=split, n=n, seed=d.seed,
                                                       **params)
        return self._data[(d.name, which)]

    def examples(self, unit: Unit) -> list[Example]:
        lo, hi = unit.params["range"]
        return list(self.data(self.dataset_spec(unit.dataset), "eval").examples[lo:hi])

    @property
    def _device(self) -> str:
        return self.device or self.spec.device

    def kind(self, name: str) -> str:
        """``classifier`` or ``generative``: as the spec says, else from the model's config."""
        if name not in self._kinds:
            m = self.model_spec(name)
            self._kinds[name] = m.kind or infer_kind(m.source())
        return self._kinds[name]

    def generative(self, unit: Unit) -> bool:
        return self.kind(unit.model) == "generative"

    def _load_generative(self, m: ModelSpec) -> Any:
        from ..models.generative import load_generative

        return load_generative(m.source(), device=self._device, dtype=m.dtype,
                               revision=m.revision, max_batch_size=self.spec.max_batch_size,
                               **m.generation)

    # ---------------------------------------------------------------- fine-tuning
    def finetuned(self, key: str, unit: Unit | None = None, *, model: str | None = None) -> Any:
        """The fine-tuned model of finetune unit ``key`` (its checkpoint, or trained again); a
        generative model (of ``unit`` or named ``model``) is loaded as is."""
        if self._model is not None and self._model[0] == key:
            return self._model[1]
        self._model = None
        name = unit.model if unit is not None else model
        if name is not None and self.kind(name) == "generative":  # used as is, not fine-tuned
            adapter = self._load_generative(self.model_spec(name))
            self._model = (key, adapter)
            return adapter
        row: Any = None
        if self.store.status("finetune", key, verify=False) == "done":
            row = self.store.read_shard("finetune", key).iloc[0]
        dataset = unit.dataset if unit is not None else row["dataset"] if row is not None else None
        if dataset is not None and not self.dataset_spec(dataset).finetune:
            adapter = self._load_as_is(self.model_spec(name or row["model"]),
                                       self.dataset_spec(dataset))
            self._model = (key, adapter)
            return adapter
        checkpoint = self._checkpoint_path(row["checkpoint"]) if row is not None else None
        if row is not None and checkpoint is not None and checkpoint.exists():
            adapter = load_model(str(checkpoint), device=self._device,
                                 dtype=self.model_spec(row["model"]).dtype,
                                 max_batch_size=self.spec.max_batch_size,
                                 max_length=self.spec.max_length)
            adapter.model_id, adapter.revision = row["model_id"], row["revision"]
        else:  # e.g. another node's local checkpoint: retrain, and check it is the same model
            if unit is None:
                raise KeyError(f"finetune unit {key} has no result yet")
            adapter, _ = self._train(unit)
            if row is not None:
                self._check_retrained(adapter, unit, row)
        self._model = (key, adapter)
        return adapter

    def _check_retrained(self, adapter: ModelAdapter, unit: Unit, row: Any) -> None:
        """A checkpoint missing here (another node's disk, a deleted folder) is trained again;
        it is used only when it scores exactly the recorded accuracy on the same examples
        (same data, recipe and seed: the same model), else the run stops, never silently."""
        d = self.dataset_spec(unit.dataset)
        acc = accuracy(adapter, list(self.data(d, "accuracy").examples))
        recorded = float(row["accuracy"])
        where = f"{unit.model} seed {unit.seed} on {unit.dataset} (finetune unit {unit.key})"
        if not abs(acc - recorded) <= 1e-9:
            raise InputError(
                f"the checkpoint of {where} is not on this machine ({row['checkpoint']}), and "
                f"training it again gave another model (accuracy {acc:.4f}, recorded "
                f"{recorded:.4f}); share the checkpoint folder between nodes (--checkpoints) "
                "or delete the study's finetune shard to retrain everything after it")
        warnings.warn(f"the checkpoint of {where} was missing and was trained again; the "
                      f"retrained model has the recorded accuracy ({acc:.4f})", stacklevel=2)

    def _load_as_is(self, m: ModelSpec, d: DatasetSpec) -> ModelAdapter:
        """A classifier already fine-tuned for ``d`` (``finetune: false``): loaded as it is;
        it must have a trained classification head with one output per label of ``d``."""
        adapter = load_model(m.source(), device=self._device, dtype=m.dtype, revision=m.revision,
                             max_batch_size=self.spec.max_batch_size,
                             max_length=self.spec.max_length, require_head=True)
        labels = self.data(d, "eval").labels
        if labels and adapter.num_labels != len(labels):
            raise InputError(f"model {m.name!r} has {adapter.num_labels} output classes, but "
                             f"{d.name} has {len(labels)} labels ({', '.join(labels)}); use a "
                             "model fine-tuned on this dataset's labels, in the same order")
        adapter.model_id = self._base_id(m)
        return adapter

    def _train(self, unit: Unit) -> tuple[ModelAdapter, dict[str, Any]]:
        m, d = self.model_spec(unit.model), self.dataset_spec(unit.dataset)
        train = self.data(d, "train")
        val = list(self.data(d, "val").examples) if d.val_split else []
        return finetune(m.source(), list(train.examples), recipe=Recipe(**unit.params["recipe"]),
                        labels=train.labels, dev=val, device=self._device,
                        cache_dir=self.checkpoints or self.store.checkpoint_dir(),
                        max_batch_size=self.spec.max_batch_size, model_id=self._base_id(m),
                        progress=self.on_step)

    # ---------------------------------------------------------------- portable records
    @staticmethod
    def _base_id(m: ModelSpec) -> str:
        """The base model as the spec names it (``pkg:``/``${VAR}`` path as written, or the hub
        id): never an absolute path of this machine."""
        source = m.source()
        if m.hub and source == expand(m.hub):
            return m.hub
        return m.path or source

    def _checkpoint_record(self, path: str) -> str:
        """A checkpoint path as recorded: relative to the study when inside it, ``~/...`` in the
        user's cache."""
        from pathlib import Path

        if self.store.local:
            rel = portable(path, base=self.store.root)
            if not rel.startswith(".."):
                return rel
        home = Path.home()
        try:
            return "~/" + Path(path).resolve().relative_to(home.resolve()).as_posix()
        except ValueError:
            return portable(path, keep_absolute=True)

    def _checkpoint_path(self, recorded: str) -> Any:
        from pathlib import Path

        p = Path(recorded).expanduser()
        if p.is_absolute() or recorded.startswith("~"):
            return p
        return Path(self.store.root) / p if self.store.local else None

    def run_finetune(self, unit: Unit) -> pd.DataFrame:
        if self.generative(unit):
            return self._record_generative(unit)
        d = self.dataset_spec(unit.dataset)
        if not d.finetune:
            t0 = time.perf_counter()
            adapter = self._load_as_is(self.model_spec(unit.model), d)
            info: dict[str, Any] = {
                "path": "", "val_history": [], "best_epoch": None, "epochs_run": 0,
                "n_train": 0, "train_seconds": 0.0, "cached": False,
                "load_seconds": time.perf_counter() - t0}
        else:
            adapter, info = self._train(unit)
        self._model = (unit.key, adapter)
        ev = self.data(d, "accuracy")
        t0 = time.perf_counter()
        acc = accuracy(adapter, list(ev.examples))
        acc_seconds = time.perf_counter() - t0
        m = self.model_spec(unit.model)
        return pd.DataFrame([{
            "model": unit.model, "seed": unit.seed, "dataset": unit.dataset,
            "model_source": self._base_id(m),
            "model_from": "hub" if m.hub and self._base_id(m) == m.hub else "path",
            "model_id": adapter.model_id,
            "revision": adapter.revision,
            "checkpoint": self._checkpoint_record(info["path"]) if info["path"] else "",
            "params_m": m.size if m.size is not None else n_params(adapter) / 1e6,
            "architecture": type(adapter.model).__name__,
            "accuracy": acc, "eval_split": d.split, "n_accuracy": len(ev),
            "val_accuracy": max(info.get("val_history") or [float("nan")]),
            "val_history": json.dumps(info.get("val_history", [])),
            "best_epoch": info.get("best_epoch"), "epochs_run": info.get("epochs_run"),
            "n_train": info.get("n_train"), "train_seconds": info.get("train_seconds"),
            "cached": bool(info.get("cached")), "labels": json.dumps(list(ev.labels)),
            "accuracy_seconds": acc_seconds, "finetuned": bool(d.finetune),
        }])

    def _record_generative(self, unit: Unit) -> pd.DataFrame:
        """A generative model is not fine-tuned: its finetune unit loads it and records it
        (the same columns as a fine-tuned classifier; accuracy and training are empty)."""
        m = self.model_spec(unit.model)
        t0 = time.perf_counter()
        adapter = self._load_generative(m)
        seconds = time.perf_counter() - t0
        self._model = (unit.key, adapter)
        d = self.dataset_spec(unit.dataset)
        nan = float("nan")
        return pd.DataFrame([{
            "model": unit.model, "seed": unit.seed, "dataset": unit.dataset,
            "model_source": self._base_id(m),
            "model_from": "hub" if m.hub and self._base_id(m) == m.hub else "path",
            "model_id": adapter.model_id, "revision": adapter.revision, "checkpoint": "",
            "params_m": m.size if m.size is not None else n_params(adapter) / 1e6,
            "architecture": type(adapter.model).__name__,
            "accuracy": nan, "eval_split": d.split, "n_accuracy": 0, "val_accuracy": nan,
            "val_history": "[]", "best_epoch": None, "epochs_run": 0, "n_train": 0,
            "train_seconds": 0.0, "cached": False, "labels": "[]", "accuracy_seconds": 0.0,
            "kind": "generative", "load_seconds": seconds,
            "generation": json.dumps({"max_new_tokens": adapter.max_new_tokens,
                                      "num_beams": adapter.num_beams, **m.generation},
                                     sort_keys=True),
        }])

    def generation_kwargs(self, unit: Unit) -> dict[str, Any]:
        """``levels``/``top_fraction`` for explaining generated text (the spec's, when set)."""
        out: dict[str, Any] = {}
        if self.spec.levels is not None:
            out["levels"] = self.spec.levels
        if self.spec.top_fraction is not None:
            out["top_fraction"] = self.spec.top_fraction
        return out

    # ---------------------------------------------------------------- explain / metrics
    def run_explain(self, unit: Unit) -> Any:
        from ..api import explain

        adapter = self.finetuned(unit.parent or "")
        e = unit.params["explainer"]
        extra = self.generation_kwargs(unit) if self.generative(unit) else {}
        stats = getattr(adapter, "stats", None)
        before = (stats.forward_rows, stats.backward_rows) if stats is not None else (0, 0)
        t0 = time.perf_counter()
        exps = explain(adapter, self.examples(unit), [(e["name"], e["params"])],
                       granularity=self.spec.granularity, target_fn=self.spec.target_fn,
                       seed=unit.seed, **extra)
        # the explainer's own time and model rows (recorded in the shard's metadata)
        self._rows = {"explain_seconds": time.perf_counter() - t0}
        if stats is not None:
            self._rows.update(forward_rows=stats.forward_rows - before[0],
                              backward_rows=stats.backward_rows - before[1])
        return explanations_table(exps)

    def run_metrics(self, unit: Unit, explain_unit: Unit) -> pd.DataFrame:
        from ..evaluate import evaluate

        adapter = self.finetuned(explain_unit.parent or "")
        exps = explanations_from_table(self.store.read_table("explain", explain_unit.key))
        examples = self.examples(unit)
        generative = self.generative(unit)
        metrics = applicable_metrics(unit.params["metrics"], examples, generative=generative)
        extra = ({"target_fn": self.spec.target_fn} if generative else
                 {"operator": self.spec.operator})
        d = self.dataset_spec(unit.dataset)
        lo = unit.params["range"][0]
        frames = []
        for cap in sorted({d.metric_n.get(m) for m in metrics}, key=lambda c: c or 1 << 62):
            group = [m for m in metrics if d.metric_n.get(m) == cap]
            keep = len(examples) if cap is None else max(0, min(len(examples), cap - lo))
            if keep == 0:
                continue
            ids = {ex.id for ex in examples[:keep]}
            frames.append(evaluate([e for e in exps if e.example_id in ids], adapter, group,
                                   examples=examples[:keep], random=False, seed=unit.seed,
                                   **extra))
        df = pd.concat(frames, ignore_index=True) if frames else evaluate(
            [], adapter, metrics, examples=examples, random=False, seed=unit.seed, **extra)
        df["detail"] = df["detail"].map(lambda d: json.dumps(d, default=float))
        df["correct"] = df["correct"].astype("boolean")
        df["label"] = df["label"].astype("Int64")
        return df.assign(model=unit.model, seed=unit.seed, dataset=unit.dataset,
                         shard=unit.shard, unit=unit.key,
                         params=json.dumps(explain_unit.params["explainer"]["params"],
                                           sort_keys=True))

    def run(self, unit: Unit, units: dict[str, Unit]) -> float:
        """Run ``unit`` and store its shard; returns its runtime in seconds."""
        t0 = time.perf_counter()
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        self._rows = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = self._run(unit, units)
        truncated = sum("truncated" in str(w.message) for w in caught)
        retrained = [str(w.message) for w in caught if "was trained again" in str(w.message)]
        for w in caught:
            if "truncated" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        runtime = time.perf_counter() - t0
        self.store.write_shard(unit.stage, unit.key, df, runtime_s=runtime,
                               extra={"model": unit.model, "seed": unit.seed,
                                      "dataset": unit.dataset, "explainer": unit.explainer,
                                      "truncation_warnings": truncated, **self._rows,
                                      "retrained": retrained,
                                      "peak_rss_mb": _peak_rss_mb(),
                                      "cuda_peak_mb": (torch.cuda.max_memory_allocated() / 2**20
                                                       if cuda else None)})
        return runtime

    def run_analysis(self, unit: Unit, units: dict[str, Unit]) -> pd.DataFrame:
        from ..registry import study_analyses
        from .analyses import AnalysisContext

        a = unit.params["analysis"]
        df = study_analyses.build((a["name"], a["params"])).run(AnalysisContext(self, unit, units))
        return df.assign(model=unit.model, dataset=unit.dataset, analysis=a["name"],
                         unit=unit.key)

    def _run(self, unit: Unit, units: dict[str, Unit]) -> Any:
        if unit.stage == "finetune":
            return self.run_finetune(unit)
        if unit.stage == "analysis":
            return self.run_analysis(unit, units)
        if unit.stage == "explain":
            self.finetuned(unit.parent or "", units.get(unit.parent or ""), model=unit.model)
            return self.run_explain(unit)
        parent = units[unit.parent or ""]
        self.finetuned(parent.parent or "", units.get(parent.parent or ""), model=unit.model)
        return self.run_metrics(unit, parent)


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (MB; monotone over a process's units)."""
    try:
        import resource
        import sys

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / (2**20 if sys.platform == "darwin" else 2**10)
    except (ImportError, OSError):
        return None


def applicable_metrics(metrics: Sequence[str], examples: Sequence[Example], *,
                       generative: bool = False) -> list[str]:
    """Drop metrics that need a rationale on data that has none (e.g. plausibility on SST-2),
    and for generated text the analyses (they re-run a classifier's explainer)."""
    from ..metrics.base import get_metric

    has_rationale = any(ex.rationale for ex in examples)
    return [m for m in metrics if (has_rationale or "rationale" not in get_metric(m).needs)
            and not (generative and "explainer" in get_metric(m).needs)]


def run_units(spec: StudySpec, store_url: str, units: Sequence[Unit], all_units: dict[str, Unit],
              *, device: str | None = None, checkpoints: str | None = None,
              on_done: Callable[[Unit, float], None] | None = None) -> list[str]:
    """Run a list of units in order in this process (used by Ray tasks); returns their keys."""
    worker = Worker(spec, Store(store_url), device=device, checkpoints=checkpoints)
    done = []
    for u in units:
        rt = worker.run(u, all_units)
        done.append(u.key)
        if on_done:
            on_done(u, rt)
    return done
