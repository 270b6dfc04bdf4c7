"""Any labelled text dataset through the Hugging Face ``datasets`` library, and MultiNLI.

``hf(name=..., config=..., split=...)`` calls ``datasets.load_dataset`` (``pip install
datasets``; needs the Hub or a local cache). ``hf(path="file.jsonl")`` reads a local
JSONL/CSV/TSV with the same columns instead, so the column mapping works offline. Labels come
from ``labels=``, else the ``ClassLabel`` names of ``label_column``, else the sorted string
values. An unlabelled row (label ``-1``, ``-`` or empty, as in GLUE test sets or MultiNLI's
no-consensus pairs) gets ``label=None`` (counted as ``info["n_unlabelled"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..registry import datasets
from .core import ENV_VAR, Collector, Dataset, RowError, check_n, data_root, label_index, ordered
from .example import Example
from .readers import DataError, iter_rows

NLI_LABELS = ("entailment", "neutral", "contradiction")
MNLI_SPLITS = {"dev": "validation_matched", "dev_matched": "validation_matched",
               "dev_mismatched": "validation_mismatched", "test": "test_matched"}
_UNLABELLED = ("", "-", "-1", None, -1)


def _hub_rows(name: str, config: str | None, split: str, label_column: str | None,
              revision: str | None) -> tuple[Iterable[dict[str, Any]], list[str] | None, str]:
    try:
        import datasets as hfds
    except ImportError:
        raise DataError(f"hf: loading {name!r} from the Hugging Face Hub needs the `datasets` "
                        "package (pip install datasets); or pass path= to a local "
                        "JSONL/CSV/TSV file with the same columns") from None
    if split == "dev":
        names = hfds.get_dataset_split_names(name, config, revision=revision)
        split = next((s for s in ("validation", "validation_matched", "dev") if s in names),
                     split)
    try:
        ds = hfds.load_dataset(name, config, split=split, revision=revision)
    except Exception as err:  # the library raises many types; report them all the same way
        raise DataError(f"hf: cannot load {name!r} ({config}, {split}): {err}") from err
    names_ = None
    feat = ds.features.get(label_column) if label_column else None
    if feat is not None and hasattr(feat, "names"):
        names_ = list(feat.names)
    return ds, names_, split


def _local_rows(path: Path, col: Collector) -> list[tuple[Path, int, dict[str, Any]]]:
    return [(path, line, row) for line, row in iter_rows(path, on_error=col.on_error(path))]


def _infer_labels(values: Iterable[Any]) -> list[str]:
    vals = {v for v in values if v not in _UNLABELLED}
    if all(isinstance(v, int) or (isinstance(v, str) and v.strip().isdigit()) for v in vals):
        top = max((int(v) for v in vals), default=-1)
        return [str(i) for i in range(top + 1)]
    return sorted(str(v).strip() for v in vals)


def _examples(rows: Sequence[tuple[Any, int, dict[str, Any]]], labels: Sequence[str],
              col: Collector, *, name: str, text_column: str, pair_column: str | None,
              label_column: str | None, id_column: str | None, n: int | None) -> list[Example]:
    def build(row: dict[str, Any]) -> Example:
        if None in row:
            raise RowError("more fields than the header")
        for c in (text_column, pair_column, label_column):
            if c and c not in row:
                raise RowError(f"missing column {c!r}")
            if c and row[c] is None:
                raise RowError(f"missing value for column {c!r}")
        text = str(row[text_column]).strip()
        pair = str(row[pair_column]).strip() if pair_column else None
        if not text or (pair_column and not pair):
            raise RowError("empty text" if not text else "empty pair")
        label = None
        if label_column is not None:
            v = row[label_column]
            if (v.strip() if isinstance(v, str) else v) in _UNLABELLED:
                col.counts["n_unlabelled"] += 1
            else:
                label = label_index(v, labels, what=label_column)
        rid = row.get(id_column) if id_column else None
        return Example(id=f"{name}-{rid if rid not in (None, '') else row['__line']}", text=text,
                       pair=pair, label=label)

    items = ((src, line, {**row, "__line": line}) for src, line, row in rows)
    return col.build(items, build, n=n)


def hf(*, name: str | None = None, config: str | None = None, path: str | Path | None = None,
       split: str = "dev", n: int | None = None, seed: int = 0, shuffle: bool = False,
       skip_bad: bool = False, text_column: str = "text", pair_column: str | None = None,
       label_column: str | None = "label", labels: Sequence[str] | None = None,
       id_column: str | None = "idx", revision: str | None = None,
       dataset_name: str | None = None) -> Dataset:
    """A Hub dataset (``name``, ``config``, ``split``; ``dev`` means ``validation``) or a local
    JSONL/CSV/TSV ``path``, mapped to examples through the column names. ``id_column`` gives
    example ids (else the row's line or index); ``dataset_name`` names the returned Dataset
    (default ``hf``)."""
    check_n(n)
    if (name is None) == (path is None):
        raise ValueError("hf: give exactly one of name= (a Hub dataset) or path= (a local file)")
    dname = dataset_name or "hf"
    col = Collector(dname, skip_bad)
    if path is not None:
        p = data_root(path, "", "hf")
        if p.is_dir():
            raise DataError(f"hf: {p} is a folder; give a JSONL/CSV/TSV file")
        rows: Sequence[tuple[Any, int, dict[str, Any]]] = _local_rows(p, col)
        found, source, real_split = None, str(p), split
    else:
        ds, found, real_split = _hub_rows(name, config, split, label_column,  # type: ignore[arg-type]
                                          revision)
        source = f"hf://{name}" + (f"/{config}" if config else "") + f"[{real_split}]"
        rows = [(source, i, dict(r)) for i, r in enumerate(ds)]
    if labels is None:
        labels = found or (_infer_labels(r.get(label_column) for _, _, r in rows)
                           if label_column else [])
    rows = ordered(rows, shuffle=shuffle, seed=seed)
    exs = _examples(rows, labels, col, name=dname,
                    text_column=text_column, pair_column=pair_column,
                    label_column=label_column, id_column=id_column, n=n)
    return col.finish(split, exs, labels, source, hf_split=real_split, rationale=None,
                      columns={"text": text_column, "pair": pair_column, "label": label_column})


def multinli(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
             seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
             name: str = "nyu-mll/glue", revision: str | None = None) -> Dataset:
    """MultiNLI (text = premise, pair = hypothesis; labels entailment, neutral, contradiction).

    From the Hub (``name="nyu-mll/glue"`` config ``mnli``, or ``"nyu-mll/multi_nli"``; ``split``
    ``dev`` = ``validation_matched``, ``dev_mismatched``, ``train``, ``test``) or a local
    ``path``: a file, or a folder (default ``$FAITHSCOPE_DATA/multinli``) holding
    ``<split>.jsonl``/``.tsv``/``.csv`` (or MultiNLI 1.0's ``multinli_1.0_dev_matched.jsonl``).
    Columns ``premise``/``hypothesis``/``label`` (GLUE, Hub) or MultiNLI 1.0's
    ``sentence1``/``sentence2``/``gold_label`` are recognised.
    """
    hub_split = MNLI_SPLITS.get(split, split)
    if path is None and not _env_has("multinli"):
        config = "mnli" if name.endswith("glue") else None
        return hf(name=name, config=config, split=hub_split, n=n, seed=seed, shuffle=shuffle,
                  skip_bad=skip_bad, text_column="premise", pair_column="hypothesis",
                  label_column="label", labels=NLI_LABELS, revision=revision,
                  dataset_name="multinli")
    root = data_root(path, "multinli", "multinli")
    if root.is_dir():
        stems = (split, hub_split, f"multinli_1.0_{hub_split.replace('validation', 'dev')}")
        cands = [root / f"{s}{ext}" for s in stems for ext in (".jsonl", ".tsv", ".txt", ".csv")]
        root = next((c for c in cands if c.is_file()), None)  # type: ignore[assignment]
        if root is None:
            raise DataError(f"multinli: no file for split {split!r} (looked for "
                            f"{', '.join(c.name for c in cands[:4])}, ...)")
    header = next((row for _, row in iter_rows(root, on_error=lambda *_: None)), {})
    cols = (("sentence1", "sentence2", "gold_label") if "sentence1" in header
            and "premise" not in header else ("premise", "hypothesis", "label"))
    return hf(path=root, split=split, n=n, seed=seed, shuffle=shuffle, skip_bad=skip_bad,
              text_column=cols[0], pair_column=cols[1], label_column=cols[2], labels=NLI_LABELS,
              id_column="pairID" if cols[0] == "sentence1" else "idx", dataset_name="multinli")


def _env_has(sub: str) -> bool:
    import os

    env = os.environ.get(ENV_VAR)
    return bool(env) and (Path(env or ".").expanduser() / sub).exists()


datasets.add("hf", hf)
datasets.add("multinli", multinli)
