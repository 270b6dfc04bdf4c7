"""CoS-E v1.0 (human-highlighted question spans) joined with CommonsenseQA v1.0 by ``id``.

Input: ``text`` = the question stem, ``pair`` = the three answer choices (``choices="plain"``:
their texts joined by spaces; ``"lettered"``: ``"A: x B: y C: z"``); label = the index of
``answerKey`` among the choices (labels ``A``, ``B``, ``C``). Rationale: the CoS-E ``selected``
span located in the stem (case-insensitive, whitespace-tolerant, after dropping a leading
``Question:`` some annotators copied); when it is not there verbatim, the stem words that occur
in the selected span are marked (counted as ``info["n_rationale_words_matched"]``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..registry import datasets
from .core import Collector, Dataset, RowError, check_n, data_root, merge_gaps, ordered
from .example import Example, Span, normalize_spans
from .readers import DataError, iter_rows, row_problem

LABELS = ("A", "B", "C")
_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")
_PREFIX = re.compile(r"^\s*(?:question\s*)?:\s*", re.I)
_SUFFIX = re.compile(r"\s*answer\s+choices\s*:.*$", re.I | re.S)
_STOP = frozenset(["a", "an", "the", "of", "to", "is", "are", "was", "be", "in", "on", "at", "for", "and", "or", "what", "where", "which", "who", "why", "how", "do", "does", "did", "would", "could", "can", "will", "you", "your", "it", "its", "if", "that", "this"])


def clean_selection(selected: str) -> str:
    """Drop the annotation interface's text that some selections caught: a leading
    ``Question:`` (or its tail ``:``) and a trailing ``Answer Choices: ...``."""
    sel = _SUFFIX.sub("", selected.replace("\xa0", " "))
    return _PREFIX.sub("", sel).strip()


def locate(stem: str, selected: str) -> tuple[list[tuple[int, int]], str]:
    """Character spans of a CoS-E ``selected`` string in ``stem`` and how they were found:
    ``exact`` (the cleaned selection occurs in the stem, ignoring case and whitespace; a span
    cut inside a word is widened to whole words), ``words`` (stem words that occur in the
    selection) or ``none``."""
    sel = clean_selection(selected)
    keep = [i for i, c in enumerate(stem) if not c.isspace()]
    flat = "".join(stem[i] for i in keep).lower()
    needle = "".join(sel.split()).lower()
    for cand in (needle, needle.rstrip("?.!,;:")):  # "...?" selected, "..." in the stem
        j = flat.find(cand) if cand else -1
        if j >= 0:
            a, b = keep[j], keep[j + len(cand) - 1] + 1
            while a > 0 and stem[a - 1].isalnum() and stem[a].isalnum():
                a -= 1
            while b < len(stem) and stem[b].isalnum() and stem[b - 1].isalnum():
                b += 1
            return [(a, b)], "exact"
    words = {w.lower() for w in _WORD.findall(sel)}
    spans = [(m.start(), m.end()) for m in _WORD.finditer(stem)
             if m.group().lower() in words and m.group().lower() not in _STOP]
    if not spans:  # only function words in common: keep them rather than nothing
        spans = [(m.start(), m.end()) for m in _WORD.finditer(stem)
                 if m.group().lower() in words]
    return spans, "words" if spans else "none"


def _cqa_name(split: str) -> list[str]:
    return [f"{split}_rand_split.jsonl", f"{split}_rand_split_no_answers.jsonl"]


def cose(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
         seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
         choices: str = "plain") -> Dataset:
    """CoS-E v1.0 + CommonsenseQA v1.0 (``split`` ``dev``/``train``; ``test`` has neither
    answers nor explanations, so labels and rationales are None).

    ``path``: a folder with ``cose_<split>_v1.0.jsonl`` and ``<split>_rand_split.jsonl``;
    default ``$FAITHSCOPE_DATA/cose``. A question with no CoS-E row gets ``rationale=None``
    (counted as ``n_no_explanation``).
    """
    check_n(n)
    if choices not in ("plain", "lettered"):
        raise ValueError(f"choices must be 'plain' or 'lettered', got {choices!r}")
    root = data_root(path, "cose", "cose")
    if root.is_file():
        root = root.parent
    cqa = next((root / f for f in _cqa_name(split) if (root / f).is_file()), None)
    if cqa is None:
        raise DataError(f"cose: no {' or '.join(_cqa_name(split))} in {root}")
    cose_file = root / f"cose_{split}_v1.0.jsonl"
    col = Collector("cose", skip_bad)
    expl: dict[str, dict[str, Any]] = {}
    if cose_file.is_file():
        for line, row in iter_rows(cose_file, fmt="jsonl", on_error=col.on_error(cose_file)):
            e = row.get("explanation")
            if not isinstance(row.get("id"), str) or not isinstance(e, dict) \
                    or not isinstance(e.get("selected"), str):
                col.bad(cose_file, line, "expected id and explanation.selected")
                continue
            expl[row["id"]] = e
    elif split != "test":
        raise DataError(f"cose: no {cose_file.name} in {root}")

    def build(row: dict[str, Any]) -> Example:
        problem = row_problem(row, ("id", "question"))
        if problem:
            raise RowError(problem)
        q = row["question"]
        if not isinstance(q, dict) or not isinstance(q.get("stem"), str) \
                or not isinstance(q.get("choices"), list):
            raise RowError("question must have a stem and a list of choices")
        try:
            keys = [c["label"] for c in q["choices"]]
            texts = [str(c["text"]).strip() for c in q["choices"]]
        except (KeyError, TypeError):
            raise RowError("each choice needs a label and a text") from None
        if tuple(keys) != LABELS:
            raise RowError(f"choices are labelled {keys}, expected {list(LABELS)}")
        stem = q["stem"].strip()
        if not stem or not all(texts):
            raise RowError("empty stem or choice")
        label = None
        if "answerKey" in row:
            if row["answerKey"] not in keys:
                raise RowError(f"answerKey {row['answerKey']!r} is not a choice label")
            label = keys.index(row["answerKey"])
        pair = (" ".join(texts) if choices == "plain"
                else " ".join(f"{k}: {t}" for k, t in zip(keys, texts, strict=True)))
        e = expl.get(row["id"])
        meta: dict[str, Any] = {"choices": tuple(texts)}
        rationale: tuple[Span, ...] | None = None
        if e is None:
            col.counts["n_no_explanation"] += 1
        else:
            spans, how = locate(stem, e["selected"])
            col.counts[{"exact": "n_rationale_exact", "words": "n_rationale_words_matched",
                        "none": "n_rationale_not_found"}[how]] += 1
            rationale = normalize_spans(merge_gaps(0, spans, stem))
            meta.update(selected=e["selected"], explanation=e.get("open-ended"), match=how)
        return Example(id=f"cose-{row['id']}", text=stem, pair=pair, label=label,
                       rationale=rationale, meta=meta)

    rows = iter_rows(cqa, fmt="jsonl", on_error=col.on_error(cqa))
    exs = col.build(((cqa, ln, r) for ln, r in rows), build, n=None if shuffle else n)
    exs = ordered(exs, shuffle=shuffle, seed=seed)[:n]
    return col.finish(split, exs, LABELS, [cqa, cose_file] if expl else [cqa],
                      choices=choices, rationale="human" if expl else None)


datasets.add("cose", cose)
