"""Heavy dependencies (torch, transformers, pandas, scipy) imported on first use, not at import.

``faithscope --help``, ``faithscope list`` and every argument or spec error must answer in well
under a second, so the modules that the registries and the CLI import refer to these libraries
through :func:`lazy_import`: a stand-in module whose first attribute access imports the real one
(and then holds its attributes, so later lookups cost what a module's do). Type checkers see the real import (guard it with
``TYPE_CHECKING``).

Example
-------
>>> from faithscope._lazy import lazy_import
>>> json_mod = lazy_import("json")
>>> json_mod.dumps([1])
'[1]'
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyModule(types.ModuleType):
    """A module stand-in that imports ``name`` on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def _load(self) -> types.ModuleType:
        real = importlib.import_module(self.__dict__["_lazy_target"])
        # later lookups find the real attributes directly, without __getattr__
        self.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        return real

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        name = self.__dict__["_lazy_target"]
        state = "imported" if name in sys.modules else "not imported yet"
        return f"<lazy module {name!r} ({state})>"


def lazy_import(name: str) -> Any:
    """The module ``name`` if it is already imported, else a stand-in that imports it on use."""
    return sys.modules.get(name) or _LazyModule(name)
