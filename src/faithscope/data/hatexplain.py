"""HateXplain (Mathew et al. 2021): posts labelled by three annotators, with word rationales.

Two forms (``source=``):

* ``csv`` (``hatexplain_{val,test}.csv``, the Hugging Face ``hatexplain`` layout):
  ``annotators`` = ``{'label': [3 ints], 'annotator_id': [...], 'target': [...]}``
  (0 hatespeech, 1 normal, 2 offensive), ``rationales`` = one 0/1 mask over ``post_tokens`` per
  annotator who marked the post hateful/offensive, ``post_tokens``; cells are Python literals.
  Label = the majority of the annotators; a three-way tie is dropped and counted
  (``ties="drop"``, ``info["n_ties"]``) or labelled ``undecided`` (``ties="undecided"``).
  Rationale = the union (or ``rationale="majority"``: more than half) of the masks.
* ``eraser`` (``eraser_test_union.jsonl``): binary ``non-toxic``/``toxic`` with union evidences;
  its token offsets index ``post_tokens``, which are read from the CSV of the same split.

Text = the post tokens joined by single spaces. Posts nobody marked have ``rationale == ()``.
Contains offensive text.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any

from ..registry import datasets
from .core import Collector, Dataset, RowError, check_n, data_root, join_tokens, mask_spans, ordered
from .eraser import eraser_examples, read_eraser_rows
from .example import Example, normalize_spans
from .readers import DataError, iter_rows, row_problem

LABELS = ("hatespeech", "normal", "offensive")
ERASER_LABELS = ("non-toxic", "toxic")
SPLITS = {"dev": "val", "validation": "val"}
COLUMNS = ("id", "annotators", "rationales", "post_tokens")


def _literal(cell: str, what: str) -> Any:
    try:
        return ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise RowError(f"column {what!r} is not a Python literal") from None


def _csv_rows(file: Path) -> list[tuple[Path, int, dict[str, Any]]]:
    return [(file, line, row) for line, row in iter_rows(file, fmt="csv", required=COLUMNS)]


def _post_tokens(row: dict[str, Any]) -> list[str]:
    toks = _literal(row["post_tokens"], "post_tokens")
    if not isinstance(toks, list) or not toks or not all(isinstance(t, str) for t in toks):
        raise RowError("post_tokens must be a non-empty list of strings")
    return toks


def hatexplain(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
               seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
               source: str = "csv", ties: str = "drop", rationale: str = "union") -> Dataset:
    """HateXplain ``dev`` (= val) or ``test`` from a folder (default
    ``$FAITHSCOPE_DATA/hatexplain``) or a ``.csv`` file. Labels ``hatespeech``, ``normal``,
    ``offensive`` (+ ``undecided`` with ``ties="undecided"``), or ``non-toxic``/``toxic``
    for ``source="eraser"``."""
    check_n(n)
    if source not in ("csv", "eraser"):
        raise ValueError(f"source must be 'csv' or 'eraser', got {source!r}")
    if ties not in ("drop", "undecided"):
        raise ValueError(f"ties must be 'drop' or 'undecided', got {ties!r}")
    if rationale not in ("union", "majority"):
        raise ValueError(f"rationale must be 'union' or 'majority', got {rationale!r}")
    root = data_root(path, "hatexplain", "hatexplain")
    folder = root.parent if root.is_file() else root
    stem = SPLITS.get(split, split)
    csv_file = root if root.suffix.lower() == ".csv" else folder / f"hatexplain_{stem}.csv"
    if not csv_file.is_file():
        raise DataError(f"hatexplain: no {csv_file.name} in {folder}")
    col = Collector("hatexplain", skip_bad)
    if source == "eraser":
        efile = root if root.suffix.lower() == ".jsonl" else folder / f"eraser_{stem}_union.jsonl"
        if not efile.is_file():
            raise DataError(f"hatexplain: no {efile.name} in {folder}")
        tokens: dict[str, list[str]] = {}
        for f, line, row in _csv_rows(csv_file):
            try:
                tokens[row["id"]] = _post_tokens(row)
            except RowError as err:
                col.bad(f, line, str(err))
        rows = ordered(read_eraser_rows(efile, col), shuffle=shuffle, seed=seed)
        exs = eraser_examples(rows, tokens.__getitem__, ERASER_LABELS, col, name="hatexplain",
                              use_query=False, max_words=None, n=n)
        return col.finish(split, exs, ERASER_LABELS, [efile, csv_file], format="eraser",
                          rationale="human")

    labels = LABELS + (("undecided",) if ties == "undecided" else ())

    def build(row: dict[str, Any]) -> Example | None:
        problem = row_problem(row, COLUMNS)
        if problem:
            raise RowError(problem)
        ann = _literal(row["annotators"], "annotators")
        if not isinstance(ann, dict) or not isinstance(ann.get("label"), list) \
                or not ann["label"] or any(v not in (0, 1, 2) for v in ann["label"]):
            raise RowError("annotators must be a dict with a non-empty list 'label' of 0/1/2")
        toks = _post_tokens(row)
        masks = _literal(row["rationales"], "rationales")
        if not isinstance(masks, list) or any(
                not isinstance(m, list) or len(m) != len(toks) for m in masks):
            raise RowError(f"rationales must be a list of 0/1 masks of length {len(toks)}")
        votes = Counter[int](ann["label"]).most_common()
        if len(votes) > 1 and votes[0][1] == votes[1][1]:
            col.counts["n_ties"] += 1
            if ties == "drop":
                return None
            label = len(LABELS)
        else:
            label = votes[0][0]
        text, offsets = join_tokens(toks)
        need = 1 if rationale == "union" else len(masks) // 2 + 1
        agg = [sum(bool(m[i]) for m in masks) >= need for i in range(len(toks))] if masks \
            else []
        meta = {"annotator_labels": tuple(LABELS[v] for v in ann["label"]),
                "targets": tuple(tuple(t) if isinstance(t, list) else t
                                 for t in ann.get("target", ())),
                "n_rationale_annotators": len(masks)}
        return Example(id=f"hatexplain-{row['id']}", text=text, label=label,
                       rationale=normalize_spans(mask_spans(0, offsets, agg, text)), meta=meta)

    rows = ordered(_csv_rows(csv_file), shuffle=shuffle, seed=seed)
    exs = col.build(rows, build, n=n)
    return col.finish(split, exs, labels, csv_file, format="csv", ties=ties,
                      rationale="human", rationale_aggregation=rationale)


datasets.add("hatexplain", hatexplain)
