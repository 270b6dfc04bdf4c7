"""One registry class for every pluggable part: explainers, metrics, targets, datasets.

Example
-------
>>> from faithscope.registry import Registry
>>> colours = Registry("colour")
>>> @colours.register("red")
... def red() -> str:
...     return "#f00"
>>> colours.get("red")()
'#f00'
>>> colours.names()
['red']
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a plain sentence
        return str(self.args[0])


class Registry(Generic[T]):
    """A name -> object mapping with decorator registration and helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (names are unique). A registered class
        gets its ``name`` from here (the one place a name is written), unless ``name`` is one
        of its dataclass fields."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if isinstance(obj, type) and not (dataclasses.is_dataclass(obj) and "name" in {
                    f.name for f in dataclasses.fields(obj)}):
                obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            return obj

        return deco

    def preset(self, name: str, base: type, **overrides: Any) -> type:
        """Register ``name`` as ``base`` with other defaults (one class, several registered
        presets, e.g. ``metrics.preset("max_sensitivity", Sensitivity, aggregate="max")``):
        class-level settings and dataclass field defaults alike. Returns the preset's class
        (a generated subclass: ``isinstance(x, base)`` holds, and ``name`` is ``name``)."""
        fields = {f.name: f for f in dataclasses.fields(base)} if dataclasses.is_dataclass(
            base) else {}
        unknown = [k for k in overrides if k not in fields and not hasattr(base, k)]
        if unknown:
            raise TypeError(f"{base.__name__} has no setting(s) {unknown}")
        title = "".join(part.title() for part in name.split("_"))
        ns: dict[str, Any] = {
            "__module__": base.__module__, "__qualname__": title,
            "__doc__": f"{(base.__doc__ or '').strip()}\n\nPreset ``{name}``: "
                       + ", ".join(f"``{k}={v!r}``" for k, v in overrides.items()) + ".",
            "__annotations__": {k: fields[k].type for k in overrides if k in fields},
            **overrides,
        }
        cls = type(title, (base,), ns)
        if ns["__annotations__"]:
            params = base.__dataclass_params__  # type: ignore[attr-defined]
            cls = dataclasses.dataclass(frozen=params.frozen, kw_only=True)(cls)
        self.add(name, cls)  # type: ignore[arg-type]
        return cls

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"

    def build(self, spec: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Instantiate a registered dataclass from a name or a ``(name, params)`` pair; unknown
        names and unknown hyper-parameters raise :class:`~faithscope.errors.InputError`."""
        from dataclasses import fields

        from .errors import InputError

        params = dict(params or {})
        if isinstance(spec, tuple):
            spec, extra = spec
            params = {**dict(extra), **params}
        if spec not in self._items:
            raise InputError(self.unknown_message(str(spec)))
        cls = self._items[spec]
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        bad = sorted(set(params) - known)
        if bad:
            raise InputError(f"{spec}: unknown hyper-parameter(s) {', '.join(bad)}; "
                             f"known: {', '.join(sorted(known)) or 'none'}")
        return cls(**params)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


explainers: Registry[type] = Registry("explainer")
metrics: Registry[type] = Registry("metric")
targets: Registry[Callable[..., object]] = Registry("target")
datasets: Registry[Callable[..., object]] = Registry("dataset")
study_analyses: Registry[type] = Registry("study analysis")
