"""Names of models and files: local path or Hub id, ``${VAR}`` / ``pkg:`` expansion, and the
portable form written into records.

A model name is *local* when it exists on disk or starts with ``/``, ``.`` or ``~`` (or ``pkg:``);
anything else (``bert-base-uncased``, ``org/name``) is a Hugging Face Hub id, handed to
transformers, which uses the local cache when the Hub is unreachable (``HF_HUB_OFFLINE=1``).

Records (explanations, study tables, specs as run) never hold an absolute path of the machine
that made them: :func:`portable` writes a folder inside an installed package as
``pkg:package/sub/path``, a Hub-cache snapshot as its hub id, and anything else relative to a
base folder (the study directory) or the working directory.

Example
-------
>>> from faithscope.paths import is_local_name, portable
>>> is_local_name("textattack/bert-base-uncased-SST-2"), is_local_name("./my-model")
(False, True)
>>> portable("/data/studies/s1/checkpoints/abc", base="/data/studies/s1")
'checkpoints/abc'
>>> portable("prajjwal1/bert-tiny")
'prajjwal1/bert-tiny'
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .errors import InputError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_HUB_CACHE = re.compile(r"(?:^|/)models--([^/]+)/snapshots/([0-9a-f]{6,})(?:/|$)")


class PathSpecError(InputError):
    """A ``${VAR}`` without a value, or a ``pkg:`` folder that cannot be found."""


def expand(value: str) -> str:
    """``${VAR}`` / ``${VAR:-default}`` expansion and ``pkg:module/sub/path`` resolution.

    A ``pkg:`` whose package is not installed is returned verbatim (callers fall back to a hub id
    or report the missing path).
    """

    def sub(m: re.Match[str]) -> str:
        got = os.environ.get(m.group(1))
        if got is None and m.group(2) is None:
            raise PathSpecError(f"environment variable {m.group(1)} is not set (in {value!r})")
        return got if got is not None else m.group(2)

    out = _ENV.sub(sub, value)
    if out.startswith("pkg:"):
        mod, _, rest = out[4:].partition("/")
        try:
            from importlib import resources

            return str(resources.files(mod) / rest)
        except (ModuleNotFoundError, ValueError, TypeError):
            return out
    return out


def is_local_name(name: str) -> bool:
    """Whether ``name`` means a local folder (it exists, or starts with ``/ . ~`` or ``pkg:``)
    rather than a Hugging Face Hub id."""
    name = str(name)
    if name.startswith(("/", ".", "~", "pkg:")) or (os.name == "nt" and re.match(r"^[A-Za-z]:", name)):
        return True
    return Path(name).exists()


def _package_form(path: Path) -> str | None:
    """``pkg:top/rest`` when ``path`` lies inside an importable top-level package."""
    for entry in sys.path:
        if not entry or "site-packages" not in entry and "dist-packages" not in entry:
            continue
        try:
            rel = path.relative_to(Path(entry).resolve())
        except (ValueError, OSError):
            continue
        if rel.parts and (Path(entry) / rel.parts[0] / "__init__.py").exists():
            return "pkg:" + rel.as_posix()
    return None


def portable(name: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
             keep_absolute: bool = False) -> str:
    """The form of a model or file name that may be written into a record.

    Hub ids and relative paths are kept; an absolute path becomes ``pkg:...`` inside an installed
    package, ``org/name@revision`` inside the Hugging Face cache, else (unless ``keep_absolute``)
    a path relative to ``base`` (default: the working directory), with ``..`` where needed.
    """
    text = str(name)
    if text.startswith("pkg:") or not is_local_name(text):
        return text
    path = Path(text).expanduser()
    if not path.is_absolute():
        return path.as_posix()
    path = Path(os.path.abspath(path))
    pkg = _package_form(path.resolve()) if path.exists() else None
    if pkg:
        return pkg
    hub = _HUB_CACHE.search(path.as_posix())
    if hub:
        repo, rev = hub.groups()
        return f"{repo.replace('--', '/')}@{rev}"
    if keep_absolute:
        return path.as_posix()
    root = Path(os.path.abspath(base)) if base is not None else Path.cwd()
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()
