"""Readers for labelled text files (TSV/CSV/JSONL) and the bundled SST-2 subset.

:func:`iter_rows` is the row reader every dataset loader shares: it yields ``(line, row)``
pairs (``line`` = the file's line number, for error messages) and raises :class:`DataError`
naming ``file:line`` for rows it cannot parse.

Example
-------
>>> from faithscope.data import bundled_sst2
>>> train = bundled_sst2("train")
>>> len(train), train[0].label in (0, 1)
(4000, True)
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from .example import Example


class DataError(ValueError):
    """A malformed or missing data file; the message names the file (and line)."""


def _raise_field_limit() -> None:
    try:
        csv.field_size_limit(sys.maxsize)
    except OverflowError:  # pragma: no cover - 32-bit platforms
        csv.field_size_limit(2**31 - 1)


_raise_field_limit()

TABLE_FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def table_format(path: Path) -> str:
    """``tsv``, ``csv`` or ``jsonl`` from a file's suffix (``.tsv``/``.txt``, ``.csv``,
    ``.jsonl``); a DataError for anything else."""
    try:
        return TABLE_FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataError(f"{path}: unknown table format {path.suffix!r} "
                        f"(expected one of {', '.join(TABLE_FORMATS)})") from None


def iter_rows(path: str | Path, *, fmt: str | None = None, required: tuple[str, ...] = (),
              on_error: Callable[[int, str], None] | None = None,
              ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line, row)`` for each record of a TSV/CSV file with a header or a JSONL file.

    A header without a ``required`` column raises :class:`DataError` at line 1. A tabular row
    with fewer fields than the header has ``None`` for the missing columns, one with more has the
    extra values under the key ``None`` (as :class:`csv.DictReader` does); callers decide.
    A JSONL line that is not a JSON object raises :class:`DataError` naming its line, or, with
    ``on_error``, is passed to ``on_error(line, message)`` and skipped.
    """
    path = Path(path)
    fmt = fmt or table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8", newline="") as fh:
        if fmt == "jsonl":
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    problem = None if isinstance(row, dict) else \
                        f"expected a JSON object, got {type(row).__name__}"
                except json.JSONDecodeError as err:
                    problem = f"invalid JSON ({err.msg})"
                if problem is None:
                    yield n, row
                elif on_error is None:
                    raise DataError(f"{path}:{n}: {problem}")
                else:
                    on_error(n, problem)
            return
        delim = "\t" if fmt == "tsv" else ","
        reader = csv.DictReader(fh, delimiter=delim,
                                quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}:1: missing column {missing[0]!r} in the header "
                            f"(has: {', '.join(header) or 'nothing'})")
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as err:
            raise DataError(f"{path}:{reader.line_num}: {err}") from None


def row_problem(row: dict[str, Any], columns: tuple[str, ...]) -> str | None:
    """Why a tabular/JSON row is unusable for ``columns`` (None when it is fine)."""
    extra: Any = row.get(None)  # type: ignore[call-overload]
    if extra is not None:
        return f"{len(row) - 1 + len(extra)} fields, more than the header's {len(row) - 1}"
    for c in columns:
        if c not in row:
            return f"missing field {c!r}"
        if row[c] is None:
            return f"missing column {c!r}"
    return None


def read_table(
    path: str | Path,
    *,
    text_column: str = "sentence",
    pair_column: str | None = None,
    label_column: str | None = "label",
    limit: int | None = None,
    id_prefix: str | None = None,
) -> list[Example]:
    """Read a TSV/CSV (by suffix) or JSONL file with a header into examples (integer labels).

    The first malformed row raises :class:`DataError` naming ``file:line``; the dataset loaders
    (``faithscope.registry.datasets``) can skip and count such rows instead.
    """
    path = Path(path)
    prefix = id_prefix if id_prefix is not None else path.stem
    cols = tuple(c for c in (text_column, pair_column, label_column) if c)
    out: list[Example] = []
    for line, row in iter_rows(path):
        problem = row_problem(row, cols)
        if problem is None:
            try:
                text = str(row[text_column])
                label = None if label_column is None else int(row[label_column])
                pair = str(row[pair_column]) if pair_column else None
            except (TypeError, ValueError) as err:
                problem = f"bad value ({err})"
        if problem is not None:
            raise DataError(f"{path}:{line}: {problem}")
        out.append(Example(id=f"{prefix}-{len(out)}", text=text, pair=pair, label=label))
        if limit is not None and len(out) >= limit:
            break
    return out


def bundled_sst2(split: str = "train", limit: int | None = None) -> list[Example]:
    """The SST-2 subset shipped with faithscope: ``train`` (4,000 GLUE train sentences) or
    ``dev`` (the 872 GLUE dev sentences). See ``faithscope/resources/README.md``."""
    name = {"train": "train_4k.tsv", "dev": "glue_dev.tsv"}[split]
    ref = resources.files("faithscope") / "resources" / "sst2" / name
    with resources.as_file(ref) as p:
        return read_table(p, limit=limit, id_prefix=f"sst2-{split}")
