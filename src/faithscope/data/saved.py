"""Examples saved to a JSONL file and read back losslessly (``load_dataset("examples", ...)``).

:func:`save_examples` writes one JSON object per line: a header line ``{"labels": [...],
"name": ...}`` then every example's ``id``, ``text``, ``pair``, ``label``, ``rationale`` and
``meta``. The ``examples`` loader reads it back with the common loader arguments, so examples
built in memory (e.g. for :func:`faithscope.audit`) can go through anything that loads a
dataset by name: studies, audits, the CLI.

Example
-------
>>> import tempfile, os
>>> from faithscope.data import Example, load_dataset
>>> from faithscope.data.saved import save_examples
>>> path = os.path.join(tempfile.mkdtemp(), "mine.jsonl")
>>> _ = save_examples(path, [Example("a", "a fine film", label=1, rationale=((0, 2, 6),))],
...                   labels=("neg", "pos"))
>>> ds = load_dataset("examples", path=path)
>>> ds.labels, ds[0].rationale, ds[0].label
(('neg', 'pos'), ((0, 2, 6),), 1)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..registry import datasets
from .core import Dataset, check_n, ordered
from .example import Example
from .readers import DataError


def save_examples(path: str | os.PathLike[str], examples: Sequence[Example], *,
                  labels: Sequence[str] = (), name: str = "examples") -> str:
    """Write ``examples`` (and the label names) as JSONL; returns the path."""
    lines = [json.dumps({"labels": list(labels), "name": name})]
    for ex in examples:
        lines.append(json.dumps({"id": ex.id, "text": ex.text, "pair": ex.pair,
                                 "label": ex.label, "rationale": ex.rationale,
                                 "meta": dict(ex.meta)}, default=str))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return os.fspath(path)


def examples(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
             seed: int = 0, shuffle: bool = False, skip_bad: bool = False) -> Dataset:
    """Examples written by :func:`save_examples` (one file holds one split; ``split`` only
    names it)."""
    check_n(n)
    if path is None:
        raise DataError("examples: pass path= to a file written by save_examples")
    p = Path(path).expanduser()
    try:
        rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    except (OSError, ValueError) as err:
        raise DataError(f"examples: cannot read {p}: {err}") from None
    if not rows or "labels" not in rows[0]:
        raise DataError(f"examples: {p} has no header line (write it with save_examples)")
    out = []
    for line, r in enumerate(rows[1:], start=2):
        try:
            out.append(Example(id=str(r["id"]), text=r["text"], pair=r.get("pair"),
                               label=r.get("label"),
                               rationale=None if r.get("rationale") is None else
                               tuple(tuple(s) for s in r["rationale"]), meta=r.get("meta") or {}))
        except (KeyError, TypeError, ValueError) as err:
            if not skip_bad:
                raise DataError(f"{p}:{line}: {err}") from None
    out = ordered(out, shuffle=shuffle, seed=seed)[:n]
    return Dataset("examples", split, tuple(out), tuple(rows[0]["labels"]),
                   {"source": str(p), "n_skipped": 0, "saved_name": rows[0].get("name")})


datasets.add("examples", examples)
