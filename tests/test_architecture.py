"""The package's structure, enforced: data flows one way through the layers (a lower layer
never imports a higher one, at module level or inside a function), and no module imports
another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# layer of each top-level module or sub-package of faithscope, low to high
LAYERS = {
    0: ("_lazy", "errors", "registry", "paths", "console", "units", "segment", "explanation",
        "data", "provenance"),
    1: ("models", "targets"),
    2: ("explainers",),
    3: ("metrics", "generation"),
    4: ("evaluate", "api", "render", "tables"),
    5: ("studies",),
    6: ("report",),
    7: ("audits",),
    8: ("demo", "cli", "__main__"),
}
LAYER_OF = {name: k for k, names in LAYERS.items() for name in names}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for f in sorted((SRC / "faithscope").rglob("*.py")):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), f))
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "faithscope":
        return None
    if len(parts) == 1:
        return max(LAYERS)  # the package itself re-exports everything
    return LAYER_OF.get(parts[1])


def _imports(module: str, path: Path):
    """(imported module, name or None, line) of every from-import in the file."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            pkg = module.split(".") if is_pkg else module.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            target = ".".join(pkg + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            sub = target if node.module else f"{target}.{alias.name}"
            yield sub, alias.name, node.lineno


def test_every_module_has_a_layer():
    missing = sorted({m.split(".")[1] for m, _ in _modules() if "." in m
                      and _layer(m) is None})
    assert missing == [], f"give these a layer in LAYERS: {missing}"


def test_no_lower_layer_imports_a_higher_one():
    bad = []
    for module, path in _modules():
        mine = _layer(module)
        for target, _, line in _imports(module, path):
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{path.relative_to(SRC)}:{line}: {module} (layer {mine}) imports "
                           f"{target} (layer {theirs})")
    assert bad == [], "\n".join(bad)


def test_no_private_name_is_imported_across_modules():
    bad = [f"{path.relative_to(SRC)}:{line}: from {target} import {name}"
           for module, path in _modules() for target, name, line in _imports(module, path)
           if target.startswith("faithscope") and name.startswith("_")
           and not name.startswith("__")]
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("rule", ["models never import studies", "metrics never import the "
                                  "explainer classes (only the explainer layer's base types)"])
def test_named_rules(rule):
    for module, path in _modules():
        for target, _, line in _imports(module, path):
            if rule.startswith("models"):
                assert not (module.startswith("faithscope.models") and
                            target.startswith("faithscope.studies")), f"{path}:{line}"
            else:
                assert not (module.startswith("faithscope.metrics") and
                            target.startswith("faithscope.explainers.")
                            and target not in ("faithscope.explainers.base",
                                               "faithscope.explainers.prepare")), f"{path}:{line}"


def test_a_registered_name_is_written_once():
    """The registry gives each registered class its ``name``; no class repeats it, and
    variants of one class are registered presets (Registry.preset), not subclasses."""
    import re

    import faithscope  # noqa: F401  (registers everything)
    from faithscope.registry import explainers, metrics, targets

    for reg in (explainers, metrics, targets):
        for key in reg.names():
            obj = reg.get(key)
            if isinstance(obj, type):
                assert obj.name == key, (reg.kind, key)
    repeated = []
    for module, path in _modules():
        text = path.read_text(encoding="utf-8")
        for key in re.findall(r'@\w+\.register\("([^"]+)"\)', text):
            if re.search(r'^    name(: ClassVar\[str\])? = "' + re.escape(key) + '"', text, re.M):
                repeated.append(f"{module}: {key}")
    assert repeated == [], repeated
    # presets: one class, several names
    assert metrics.get("max_sensitivity").__mro__[1] is metrics.get("avg_sensitivity").__mro__[1]
    assert explainers.build("ensemble_all").name == "ensemble_all"
