"""e-SNLI: SNLI pairs with human word highlights (text = premise, pair = hypothesis).

Three on-disk forms are read (``source=``):

* ``csv``: the original ``esnli_{dev,test}.csv`` / ``esnli_train_{1,2}.csv``. Annotator ``k``'s
  highlighted words are wrapped in ``*stars*`` in ``Sentence{1,2}_marked_k`` and listed as
  comma-separated indices of the whitespace-split words in ``Sentence{1,2}_Highlighted_k``
  (``{}`` for none). The stars are read; the indices are the fallback when the starred text does
  not match the sentence. Annotators are combined word by word (``annotators=``).
* ``highlights``: ``esnli_{split}_highlights_annotator1.jsonl`` (annotator 1 only): NLTK
  ``tokens`` of premise + hypothesis, ``highlight_idx`` into them, ``premise_len``, and either
  the raw ``premise``/``hypothesis`` strings (tokens are aligned to them) or
  ``premise_tokens``/``hypothesis_tokens`` (the text is the tokens joined by spaces).
* ``plain``: the line-aligned ``s1.{split}``, ``s2.{split}``, ``labels.{split}`` (no highlights).

Highlighted words become character spans with leading/trailing punctuation trimmed (the
annotation interface highlighted whole whitespace-separated words such as ``dog.``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..registry import datasets
from .core import (
    Collector,
    Dataset,
    RowError,
    check_n,
    data_root,
    label_index,
    merge_gaps,
    ordered,
    token_spans,
)
from .example import Example, Span, normalize_spans
from .readers import DataError, iter_rows, row_problem

LABELS = ("entailment", "neutral", "contradiction")
_WS = re.compile(r"\S+")
_STAR = re.compile(r"\*([^*]*)\*")
_EDGE = re.compile(r"^[^\w]*(.*?)[^\w]*$", re.S)
_QUOTES = {"``": ('"', "\u201c", "''"), "''": ('"', "\u201d", "``")}


def _words(s: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WS.finditer(s)]


def _trim(s: str, a: int, b: int) -> tuple[int, int]:
    """Drop leading/trailing punctuation of ``s[a:b]`` when it has a word character."""
    m = _EDGE.match(s[a:b])
    if m and m.group(1) and re.search(r"\w", m.group(1)):
        return a + m.start(1), a + m.end(1)
    return a, b


def _starred_words(sentence: str, marked: str) -> set[int] | None:
    """Indices of the words of ``sentence`` inside ``*...*`` in ``marked``; None if the marked
    text without stars is not the sentence (up to whitespace) or the sentence has stars."""
    if "*" in sentence:
        return None
    plain, spans, pos = [], [], 0
    for m in _STAR.finditer(marked):
        plain.append(marked[pos:m.start()])
        start = sum(map(len, plain))
        plain.append(m.group(1))
        spans.append((start, start + len(m.group(1))))
        pos = m.end()
    plain.append(marked[pos:])
    text = "".join(plain)
    if "*" in text or text.split() != sentence.split():
        return None
    # the same words in both: map each starred span to the word indices it touches
    words = _words(text)
    return {i for a, b in spans for i, (wa, wb) in enumerate(words) if wa < b and a < wb}


def _indexed_words(cell: str | None, n_words: int) -> set[int] | None:
    cell = (cell or "").strip()
    if cell in ("", "{}"):
        return set()
    try:
        idx = {int(x) for x in cell.split(",") if x.strip()}
    except ValueError:
        return None
    return idx if all(0 <= i < n_words for i in idx) else None


def _aggregate(votes: Sequence[set[int]], mode: str) -> set[int]:
    if not votes:
        return set()
    if mode == "union":
        return set().union(*votes)
    need = len(votes) // 2 + 1
    counts: dict[int, int] = {}
    for v in votes:
        for i in v:
            counts[i] = counts.get(i, 0) + 1
    return {i for i, c in counts.items() if c >= need}


def _csv_examples(files: list[Path], split: str, annotators: str | int, col: Collector,
                  n: int | None) -> list[Example]:
    def rows() -> Any:
        for f in files:
            for line, row in iter_rows(f, fmt="csv", required=("gold_label", "Sentence1",
                                                               "Sentence2")):
                yield f, line, row

    def build(row: dict[str, Any]) -> Example:
        problem = row_problem(row, ("gold_label", "Sentence1", "Sentence2"))
        if problem:
            raise RowError(problem)
        s1, s2 = row["Sentence1"].strip(), row["Sentence2"].strip()
        if not s1 or not s2:
            raise RowError("empty Sentence1 or Sentence2")
        label = label_index(row["gold_label"], LABELS, what="gold_label")
        ks = [k for k in (1, 2, 3) if row.get(f"Sentence1_marked_{k}") is not None]
        if isinstance(annotators, int):
            if annotators not in ks:
                raise RowError(f"no annotator {annotators} (has {ks})")
            ks = [annotators]
        spans: list[Span] = []
        for part, sent in ((0, s1), (1, s2)):
            words = _words(sent)
            votes = []
            for k in ks:
                got = _starred_words(sent, row.get(f"Sentence{part + 1}_marked_{k}") or "")
                if got is None:
                    got = _indexed_words(row.get(f"Sentence{part + 1}_Highlighted_{k}"),
                                         len(words))
                    col.counts["n_marks_from_indices"] += 1
                if got is None:
                    raise RowError(f"annotator {k}: Sentence{part + 1}_marked_{k} does not match"
                                   f" Sentence{part + 1} and Sentence{part + 1}_Highlighted_{k}"
                                   " is not a list of word indices")
                votes.append(got)
            mode = "union" if isinstance(annotators, int) else annotators
            chosen = [_trim(sent, *words[i]) for i in _aggregate(votes, mode)]
            spans += merge_gaps(part, chosen, sent)
        meta: dict[str, Any] = {"n_annotators": len(ks)}
        if row.get("Explanation_1"):
            meta["explanations"] = tuple(row[f"Explanation_{k}"] for k in ks
                                         if row.get(f"Explanation_{k}"))
        return Example(id=f"esnli-{row.get('pairID') or split}", text=s1, pair=s2, label=label,
                       rationale=normalize_spans(spans), meta=meta)

    return col.build(rows(), build, n=n)


def align_tokens(text: str, tokens: Sequence[str]) -> list[tuple[int, int] | None]:
    """Character offsets of (NLTK-style) tokens in ``text``, left to right; None for a token
    that cannot be found (PTB quote tokens match straight or curly quotes)."""
    out: list[tuple[int, int] | None] = []
    pos = 0
    for tok in tokens:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        cands = (tok, *_QUOTES.get(tok, ()))
        hit = next((c for c in cands if text.startswith(c, pos)), None)
        if hit is not None:
            out.append((pos, pos + len(hit)))
            pos += len(hit)
            continue
        j = min((k for k in (text.find(c, pos, pos + 40) for c in cands) if k >= 0), default=-1)
        if j < 0:
            out.append(None)
            continue
        c = next(c for c in cands if text.startswith(c, j))
        out.append((j, j + len(c)))
        pos = j + len(c)
    return out


def _jsonl_examples(file: Path, split: str, col: Collector, n: int | None) -> list[Example]:
    fields = ("gold_label", "tokens", "highlight_idx", "premise_len")

    def build(row: dict[str, Any]) -> Example:
        problem = row_problem(row, fields)
        if problem:
            raise RowError(problem)
        toks, hl, plen = row["tokens"], row["highlight_idx"], row["premise_len"]
        if not (isinstance(toks, list) and isinstance(hl, list) and isinstance(plen, int)
                and 0 < plen < len(toks)):
            raise RowError("tokens/highlight_idx must be lists and 0 < premise_len < "
                           "len(tokens)")
        if any(not isinstance(i, int) or not 0 <= i < len(toks) for i in hl):
            raise RowError(f"highlight_idx out of range for {len(toks)} tokens")
        label = label_index(row["gold_label"], LABELS, what="gold_label")
        parts, spans = [], []
        for part, key, ptoks in ((0, "premise", toks[:plen]), (1, "hypothesis", toks[plen:])):
            if isinstance(row.get(key), str):
                text = row[key].strip()
                offsets = align_tokens(text, ptoks)
            else:
                own = row.get(f"{key}_tokens")
                if own is not None and own != ptoks:
                    raise RowError(f"{key}_tokens disagree with tokens and premise_len")
                text = " ".join(ptoks)
                offsets = align_tokens(text, ptoks)
            sel = [i - (0 if part == 0 else plen) for i in hl if (i < plen) == (part == 0)]
            lost = sum(offsets[i] is None for i in sel)
            if lost:
                col.counts["n_highlights_unaligned"] += lost
            spans += merge_gaps(part, [_trim(text, a, b) for _, a, b in
                                      token_spans(part, offsets, sel, text)], text)
            parts.append(text)
        if not parts[0] or not parts[1]:
            raise RowError("empty premise or hypothesis")
        idx = row.get("idx", "")
        return Example(id=f"esnli-{row.get('split', split)}-{idx}", text=parts[0], pair=parts[1],
                       label=label, rationale=normalize_spans(spans),
                       meta={"n_annotators": 1, "annotator": 1})

    rows = iter_rows(file, fmt="jsonl", on_error=col.on_error(file))
    return col.build(((file, ln, r) for ln, r in rows), build, n=n)


def _plain_examples(root: Path, split: str, col: Collector, n: int | None) -> list[Example]:
    files = [root / f"{stem}.{split}" for stem in ("s1", "s2", "labels")]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"esnli: {root} has no {', '.join(missing)}")
    cols = [f.read_text(encoding="utf-8").split("\n") for f in files]
    for c in cols:
        if c and c[-1] == "":
            c.pop()
    if len({len(c) for c in cols}) != 1:
        short = min(range(3), key=lambda i: len(cols[i]))
        raise DataError(f"{files[short]}:{len(cols[short]) + 1}: ends early: "
                        + ", ".join(f"{f.name} has {len(c)} lines"
                                    for f, c in zip(files, cols, strict=True)))

    def build(i: int) -> Example:
        s1, s2, lab = (c[i].strip() for c in cols)
        if not s1 or not s2:
            raise RowError("empty sentence", source=files[0 if not s1 else 1])
        try:
            label = label_index(lab, LABELS)
        except RowError as err:
            raise RowError(str(err), source=files[2]) from None
        return Example(id=f"esnli-{split}-{i}", text=s1, pair=s2, label=label)

    return col.build(((files[0], i + 1, i) for i in range(len(cols[0]))), build, n=n)


def esnli(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
          seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
          source: str = "auto", annotators: str | int = "union") -> Dataset:
    """e-SNLI (labels ``entailment``, ``neutral``, ``contradiction``).

    ``path``: a ``.csv`` / ``.jsonl`` file, or a folder holding any of the three forms; default
    ``$FAITHSCOPE_DATA`` searched for ``esnli/esnli_<split>.csv``, then
    ``esnli_highlights/esnli_<split>_highlights_annotator1.jsonl``, then ``esnli/s1.<split>``.
    ``source``: ``auto``, ``csv``, ``highlights`` or ``plain``. ``annotators``: ``union``,
    ``majority`` (at least 2 of 3) or one annotator ``1``/``2``/``3``; the highlights file has
    annotator 1 only (``union`` and ``1`` accepted).
    """
    check_n(n)
    if isinstance(annotators, str) and annotators.isdigit():
        annotators = int(annotators)
    if annotators not in ("union", "majority", 1, 2, 3):
        raise ValueError(f"annotators must be 'union', 'majority', 1, 2 or 3, got {annotators!r}")
    if source not in ("auto", "csv", "highlights", "plain"):
        raise ValueError(f"source must be auto, csv, highlights or plain, got {source!r}")
    csv_names = [f"esnli_{split}.csv"] if split != "train" else ["esnli_train_1.csv",
                                                                  "esnli_train_2.csv"]
    hl_name = f"esnli_{split}_highlights_annotator1.jsonl"
    if path is not None:
        roots = [data_root(path, "", "esnli")]
    else:
        base = data_root(None, "", "esnli")
        roots = [base / sub for sub in ("esnli", "esnli_highlights") if (base / sub).exists()]
        if not roots:
            raise DataError(f"esnli: neither {base / 'esnli'} nor {base / 'esnli_highlights'}"
                            " exists; pass path=...")
    cands: dict[str, Any] = {}
    for root in roots:
        if root.is_file():
            cands.setdefault("csv" if root.suffix.lower() == ".csv" else "highlights", [root])
            continue
        files = [root / c for c in csv_names if (root / c).is_file()]
        if files:
            cands.setdefault("csv", files)
        if (root / hl_name).is_file():
            cands.setdefault("highlights", [root / hl_name])
        if (root / f"s1.{split}").is_file():
            cands.setdefault("plain", [root])
    order = ["csv", "highlights", "plain"] if source == "auto" else [source]
    kind = next((k for k in order if k in cands), None)
    if kind is None:
        raise DataError(f"esnli: no {source if source != 'auto' else ''} data for split "
                        f"{split!r} in {', '.join(map(str, roots))} (looked for "
                        f"{', '.join(csv_names)}, {hl_name}, s1.{split})")
    col = Collector("esnli", skip_bad)
    limit = None if shuffle else n
    if kind == "csv":
        exs = _csv_examples(cands["csv"], split, annotators, col, limit)
    elif kind == "highlights":
        if annotators not in ("union", 1):
            raise DataError(f"esnli: {cands[kind][0].name} has annotator 1 only; "
                            f"annotators={annotators!r} needs the e-SNLI CSV")
        exs = _jsonl_examples(cands[kind][0], split, col, limit)
    else:
        exs = _plain_examples(cands[kind][0], split, col, limit)
    exs = ordered(exs, shuffle=shuffle, seed=seed)[:n]
    return col.finish(split, exs, LABELS, cands[kind], format=kind,
                      annotators=annotators if kind == "csv" else
                      (1 if kind == "highlights" else None),
                      rationale=None if kind == "plain" else "human")


datasets.add("esnli", esnli)
