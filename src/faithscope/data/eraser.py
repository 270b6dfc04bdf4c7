"""ERASER-format datasets (DeYoung et al. 2020): ``{train,val,test}.jsonl`` + ``docs/``.

Each line: ``annotation_id``, ``classification``, ``evidences`` (a list of lists of
``{docid, start_token, end_token, text, ...}``, token offsets into the whitespace-split
document) and ``query``. Documents are ``docs/<docid>`` text files (or a ``docs.jsonl`` of
``{"docid", "document"}``). The text is the document's tokens joined by single spaces, so token
offsets map to character spans; the rationale is the union of all evidence spans. An annotation
with two documents (e.g. ERASER's e-SNLI premise/hypothesis) gives text and pair.

Example
-------
>>> from faithscope.data.eraser import evidence_spans
>>> from faithscope.data.core import join_tokens
>>> text, offsets = join_tokens("a fine , witty film".split())
>>> spans = evidence_spans([[{"start_token": 1, "end_token": 4}]], offsets, text)
>>> spans, [text[a:b] for _, a, b in spans]
([(0, 2, 14)], ['fine , witty'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..registry import datasets
from .core import (
    Collector,
    Dataset,
    RowError,
    check_n,
    data_root,
    join_tokens,
    label_index,
    ordered,
    token_spans,
)
from .example import Example, Span, normalize_spans
from .readers import DataError, iter_rows

TRIVIAL_QUERIES = frozenset({"what is the sentiment of this review?", "what is the class?", ""})
SPLIT_FILES = {"dev": "val", "validation": "val"}


def evidence_spans(evidences: Sequence[Any], offsets: Sequence[tuple[int, int]], text: str,
                   *, part: int = 0, docid: str | None = None) -> list[Span]:
    """Character spans of the evidences (of ``docid``, if given) over a token-offset table;
    evidence past the end of ``offsets`` (a truncated document) is clipped or dropped."""
    toks: set[int] = set()
    for group in evidences:
        for ev in group if isinstance(group, list) else [group]:
            if docid is not None and ev.get("docid", docid) != docid:
                continue
            a, b = int(ev["start_token"]), int(ev["end_token"])
            toks.update(range(max(a, 0), min(b, len(offsets))))
    return token_spans(part, offsets, toks, text)


def eraser_examples(
    rows: Sequence[tuple[Path, int, dict[str, Any]]], doc_tokens: Callable[[str], list[str]],
    labels: Sequence[str], col: Collector, *, name: str, use_query: bool | None,
    max_words: int | None, n: int | None, check_text: bool = True,
) -> list[Example]:
    """Examples from parsed ERASER rows; ``doc_tokens(docid)`` returns a document's tokens
    (raising KeyError/OSError when it is missing)."""

    def build(row: dict[str, Any]) -> Example:
        for key in ("annotation_id", "classification", "evidences"):
            if key not in row:
                raise RowError(f"missing field {key!r}")
        evs = row["evidences"]
        if not isinstance(evs, list) or not all(isinstance(g, list | dict) for g in evs):
            raise RowError("evidences must be a list of lists")
        flat = [e for g in evs for e in (g if isinstance(g, list) else [g])]
        for e in flat:
            if not isinstance(e, dict) or not isinstance(e.get("start_token"), int) \
                    or not isinstance(e.get("end_token"), int) \
                    or not 0 <= e["start_token"] <= e["end_token"]:
                raise RowError(f"bad evidence {str(e)[:80]}")
        docids = row.get("docids") or list(dict.fromkeys(e["docid"] for e in flat
                                                         if "docid" in e))
        if not docids:
            docids = [row["annotation_id"]]
        if len(docids) > 2:
            raise RowError(f"{len(docids)} documents; at most 2 (text and pair) supported")
        label = label_index(row["classification"], labels, what="classification")
        segs, spans, truncated = [], [], False
        for part, docid in enumerate(docids):
            try:
                toks = doc_tokens(docid)
            except (KeyError, OSError):
                raise RowError(f"document {docid!r} not found") from None
            if not toks:
                raise RowError(f"document {docid!r} is empty")
            for e in flat:
                if e.get("docid", docid) == docid and e["end_token"] > len(toks):
                    raise RowError(f"evidence tokens {e['start_token']}:{e['end_token']} past "
                                   f"the end of {docid!r} ({len(toks)} tokens)")
                if check_text and e.get("docid", docid) == docid and "text" in e \
                        and " ".join(toks[e["start_token"]:e["end_token"]]) != e["text"]:
                    col.counts["n_evidence_text_mismatch"] += 1
            if max_words is not None and len(toks) > max_words:
                toks, truncated = toks[:max_words], True
            text, offsets = join_tokens(toks)
            one = len(docids) == 1
            spans += evidence_spans(evs, offsets, text, part=part, docid=None if one else docid)
            segs.append(text)
        query = str(row.get("query") or "").strip()
        uq = (query.lower() not in TRIVIAL_QUERIES) if use_query is None else use_query
        pair = segs[1] if len(segs) == 2 else (query if uq and query else None)
        if truncated:
            col.counts["n_truncated"] += 1
        meta: dict[str, Any] = {"docids": tuple(docids), "truncated": truncated}
        if query and pair != query:
            meta["query"] = query
        return Example(id=f"{name}-{row['annotation_id']}", text=segs[0], pair=pair,
                       label=label, rationale=normalize_spans(spans), meta=meta)

    return col.build(rows, build, n=n)


def read_eraser_rows(file: Path, col: Collector) -> list[tuple[Path, int, dict[str, Any]]]:
    return [(file, line, row) for line, row in iter_rows(file, fmt="jsonl",
                                                          on_error=col.on_error(file))]


def docs_reader(root: Path) -> Callable[[str], list[str]]:
    """``docid -> tokens`` for ``root/docs/<docid>`` files or ``root/docs.jsonl``."""
    if (root / "docs").is_dir():
        folder = root / "docs"

        def read(docid: str) -> list[str]:
            if "/" in docid or "\\" in docid or docid.startswith("."):
                raise KeyError(docid)
            return (folder / docid).read_text(encoding="utf-8").split()

        return read
    if (root / "docs.jsonl").is_file():
        table: dict[str, list[str]] = {}
        for _, row in iter_rows(root / "docs.jsonl", fmt="jsonl"):
            table[str(row.get("docid"))] = str(row.get("document", "")).split()
        return table.__getitem__
    raise DataError(f"eraser: {root} has neither docs/ nor docs.jsonl")


def split_file(root: Path, split: str, dataset: str) -> Path:
    if root.is_file():
        return root
    f = root / f"{SPLIT_FILES.get(split, split)}.jsonl"
    if not f.is_file():
        raise DataError(f"{dataset}: no {f.name} in {root}")
    return f


def eraser(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
           seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
           labels: Sequence[str] | None = None, use_query: bool | None = None,
           max_words: int | None = None, name: str = "eraser") -> Dataset:
    """An ERASER-format dataset folder (default ``$FAITHSCOPE_DATA/eraser_movies``).

    ``split``: ``dev`` (reads ``val.jsonl``), ``train``, ``test`` or any ``<name>`` with a
    ``<name>.jsonl``. ``labels``: the label names in order (default: the sorted set of
    ``classification`` values in the file, e.g. ``("NEG", "POS")`` for movies). ``use_query``:
    put the query in ``pair`` (default: when it is not a trivial one such as movies'
    "What is the sentiment of this review?"). ``max_words``: keep the first words of each
    document (the rationale is clipped to them).
    """
    check_n(n)
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be positive, got {max_words!r}")
    root = data_root(path, "eraser_movies", name)
    file = split_file(root, split, name)
    col = Collector(name, skip_bad)
    rows = read_eraser_rows(file, col)
    if labels is None:
        labels = sorted({str(r.get("classification")) for _, _, r in rows
                         if r.get("classification") is not None})
    rows = ordered(rows, shuffle=shuffle, seed=seed)
    docs = docs_reader(file.parent)
    exs = eraser_examples(rows, docs, tuple(labels), col, name=name, use_query=use_query,
                          max_words=max_words, n=n)
    return col.finish(split, exs, labels, file, rationale="human", max_words=max_words)


datasets.add("eraser", eraser)
