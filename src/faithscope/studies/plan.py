"""The planner: a study spec expands into work units keyed by content hashes.

Stages, each unit's key hashing everything its result depends on (and its parents' keys):

- ``finetune``: model x seed x dataset (each dataset gets its own fine-tuned head);
- ``explain``: finetune unit x shard of evaluation examples x explainer (the ``random``
  baseline is always added);
- ``metrics``: explain unit x metric list;
- ``analysis``: model x dataset x study analysis (``analyses:``), over every seed's fine-tuned
  model and explanations (its key hashes all of their keys).

Only units without a finished shard in the store run, so a rerun resumes where a killed run
stopped, and editing the metric list re-scores stored explanations without re-explaining.
Every key also hashes the package version, and explain / metrics keys a digest of the source of
the faithscope modules that define the unit's explainer / metrics (:func:`code_digest`): a
shard written by other code is never reused as if it were this code's.

Example
-------
>>> from faithscope.studies.spec import ModelSpec, DatasetSpec, ExplainerSpec, StudySpec
>>> from faithscope.studies.plan import plan_study
>>> spec = StudySpec(name="s", models=(ModelSpec(name="m", hub="org/m"),),
...                  datasets=(DatasetSpec(name="sst2", n=120),), seeds=(0, 1),
...                  explainers=(ExplainerSpec(name="lime"),), metrics=("sufficiency",),
...                  shard_size=50)
>>> plan = plan_study(spec, n_examples={"sst2": 120})
>>> [len(plan.stage(s)) for s in ("finetune", "explain", "metrics")]  # 3 shards x 2 explainers
[2, 12, 12]
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .spec import DatasetSpec, ExplainerSpec, ModelSpec, StudySpec

PLAN_VERSION = 2


def content_key(*parts: Any) -> str:
    from .. import __version__

    blob = json.dumps([PLAN_VERSION, __version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@functools.cache
def code_digest(registry: str, name: str) -> str:
    """sha256 (16 hex) of the source of every faithscope module defining the class registered
    as ``name`` in ``registry`` (``explainers`` or ``metrics``) and its faithscope base
    classes; the name itself when it is not registered (a spec error reported elsewhere)."""
    from .. import registry as registries

    reg = getattr(registries, registry)
    if name not in reg:
        return name
    obj = reg.get(name)
    classes = inspect.getmro(obj) if inspect.isclass(obj) else (obj,)
    mods = sorted({c.__module__ for c in classes
                   if getattr(c, "__module__", "").startswith("faithscope.")})
    h = hashlib.sha256()
    for m in mods:
        h.update(m.encode())
        h.update(inspect.getsource(sys.modules[m]).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class Unit:
    """One piece of work; ``parent`` is the key of the unit whose result it needs."""

    stage: str
    key: str
    model: str
    seed: int
    dataset: str
    shard: int | None = None
    explainer: str | None = None
    parent: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> tuple[str, int, str]:
        """Units of one group share a fine-tuned model (the executor loads it once)."""
        return (self.model, self.seed, self.dataset)


@dataclass(frozen=True)
class Plan:
    spec: StudySpec
    units: tuple[Unit, ...]

    def stage(self, stage: str) -> list[Unit]:
        return [u for u in self.units if u.stage == stage]

    def by_key(self) -> dict[str, Unit]:
        return {u.key: u for u in self.units}

    def keys(self) -> dict[str, list[str]]:
        return {s: [u.key for u in self.stage(s)]
                for s in ("finetune", "explain", "metrics", "analysis")}


def _recipe(spec: StudySpec, m: ModelSpec, seed: int) -> dict[str, Any]:
    return {"max_length": spec.max_length, **spec.recipe, **m.recipe, "seed": seed}


def model_identity(m: ModelSpec) -> dict[str, Any]:
    """What identifies a base model's weights: its hub id, path and revision (not its label);
    for a generative model also its kind and decoding settings (set ones only, so that the
    keys of classifier studies do not change)."""
    out: dict[str, Any] = {"hub": m.hub, "path": m.path, "revision": m.revision,
                           "dtype": m.dtype}
    if m.kind is not None:
        out["kind"] = m.kind
    if m.generation:
        out["generation"] = m.generation
    return out


def generation_identity(spec: StudySpec) -> list[Any]:
    """The study's explanation settings of generated text, when it sets any (else nothing, so
    that classifier studies keep their keys)."""
    if spec.levels is None and spec.top_fraction is None:
        return []
    return [{"levels": spec.levels, "top_fraction": spec.top_fraction}]


def train_identity(d: DatasetSpec) -> dict[str, Any]:
    """What a fine-tuned model depends on (a model used as is, ``finetune: false``, only on
    the data its accuracy is measured on; keys of fine-tuning studies are unchanged)."""
    if not d.finetune:
        return {"name": d.name, "finetune": False, "seed": d.seed, "params": d.params,
                "accuracy_on": [d.split, max(d.n, d.accuracy_n)]}
    return {"name": d.name, "train_split": d.train_split, "train_n": d.train_n,
            "val_split": d.val_split, "val_n": d.val_n, "seed": d.seed, "params": d.params,
            "accuracy_on": [d.split, max(d.n, d.accuracy_n)]}


def eval_identity(d: DatasetSpec) -> dict[str, Any]:
    return {"name": d.name, "split": d.split, "n": d.n, "seed": d.seed, "params": d.params}


def explainers_with_baseline(spec: StudySpec) -> list[ExplainerSpec]:
    out = list(spec.explainers)
    if not any(e.name == "random" for e in out):
        out.append(ExplainerSpec(name="random"))
    return out


def plan_study(spec: StudySpec, n_examples: Mapping[str, int]) -> Plan:
    """Expand ``spec``; ``n_examples[dataset name]`` is how many evaluation examples exist
    (at most ``n``), which fixes the number of shards."""
    units: list[Unit] = []
    for m in spec.models:
        for seed in spec.seeds:
            for d in spec.datasets:
                recipe = _recipe(spec, m, seed)
                ft = content_key("finetune", m.name, model_identity(m),
                                 recipe if d.finetune else None, train_identity(d),
                                 spec.max_length)
                units.append(Unit(stage="finetune", key=ft, model=m.name, seed=seed,
                                  dataset=d.name, params={"recipe": recipe}))
                n = min(n_examples[d.name], d.n)
                for shard in range(math.ceil(n / spec.shard_size)):
                    lo, hi = shard * spec.shard_size, min(n, (shard + 1) * spec.shard_size)
                    for e in explainers_with_baseline(spec):
                        ex = content_key("explain", ft, eval_identity(d), lo, hi, asdict(e),
                                         spec.granularity, spec.target_fn,
                                         *generation_identity(spec),
                                         {"code": code_digest("explainers", e.name)})
                        units.append(Unit(stage="explain", key=ex, model=m.name, seed=seed,
                                          dataset=d.name, shard=shard, explainer=e.name,
                                          parent=ft, params={"range": [lo, hi],
                                                             "explainer": asdict(e)}))
                        metrics = list(spec.metrics if d.metrics is None else d.metrics)
                        if metrics:
                            caps = {x: d.metric_n[x] for x in metrics if x in d.metric_n}
                            mk = content_key("metrics", ex, metrics,
                                             *([] if m.kind == "generative" else
                                               [{"operator": spec.operator}]),
                                             *([{"metric_n": caps}] if caps else []),
                                             {"code": [code_digest("metrics", x)
                                                       for x in metrics]})
                            units.append(Unit(stage="metrics", key=mk, model=m.name, seed=seed,
                                              dataset=d.name, shard=shard, explainer=e.name,
                                              parent=ex, params={"range": [lo, hi],
                                                                 "metrics": metrics}))
    units += _analysis_units(spec, units)
    return Plan(spec, tuple(units))


def _analysis_units(spec: StudySpec, units: list[Unit]) -> list[Unit]:
    out = []
    for m in spec.models:
        for d in spec.datasets:
            mine = [u for u in units if u.model == m.name and u.dataset == d.name]
            ft = {str(u.seed): u.key for u in mine if u.stage == "finetune"}
            ex: dict[str, list[str]] = {}
            for u in mine:
                if u.stage == "explain":
                    ex.setdefault(str(u.seed), []).append(u.key)
            for a in spec.analyses:
                key = content_key("analysis", asdict(a), ft, ex, eval_identity(d),
                                  train_identity(d), spec.granularity, spec.target_fn,
                                  [asdict(e) for e in spec.explainers])
                out.append(Unit(stage="analysis", key=key, model=m.name, seed=spec.seeds[0],
                                dataset=d.name, explainer=a.name,
                                params={"analysis": asdict(a), "finetune": ft, "explain": ex}))
    return out
