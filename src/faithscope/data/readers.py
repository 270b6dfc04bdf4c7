"""Readers for labelled text files (TSV/CSV/JSONL) and the bundled SST-2 subset.

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
from importlib import resources
from pathlib import Path

from .example import Example


class DataError(ValueError):
    """A malformed data file; the message names the file and line."""


def read_table(
    path: str | Path,
    *,
    text_column: str = "sentence",
    pair_column: str | None = None,
    label_column: str | None = "label",
    limit: int | None = None,
    id_prefix: str | None = None,
) -> list[Example]:
    """Read a TSV/CSV (by suffix) or JSONL file with a header into examples."""
    path = Path(path)
    prefix = id_prefix if id_prefix is not None else path.stem
    out: list[Example] = []
    with open(path, encoding="utf-8", newline="") as fh:
        if path.suffix == ".jsonl":
            rows = ((n, json.loads(line)) for n, line in enumerate(fh, 1) if line.strip())
        else:
            delim = "\t" if path.suffix in (".tsv", ".txt") else ","
            reader = csv.DictReader(fh, delimiter=delim, quoting=csv.QUOTE_NONE
                                    if delim == "\t" else csv.QUOTE_MINIMAL)
            rows = ((n, r) for n, r in enumerate(reader, 2))
        for line, row in rows:
            try:
                text = row[text_column]
                label = None if label_column is None else int(row[label_column])
                pair = row[pair_column] if pair_column else None
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"{path}:{line}: bad row ({err!r})") from None
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
