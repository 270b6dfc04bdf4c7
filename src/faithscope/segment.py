"""Rule-based text segmentation: paragraphs, sentences, phrases and words, with no model.

Every level returns character spans of the text (``(start, end)``, whitespace trimmed) that lie
inside the span it refines, so segmentations nest: paragraphs split at blank lines; sentences at
``.``, ``!``, ``?`` (or ``…``) followed by whitespace and a capital, digit, quote or bracket, or
at line breaks, but not after common abbreviations (``Mr.``, ``e.g.``, initials); phrases at
``,``, ``;``, ``:``, dashes and brackets, and before coordinating or subordinating conjunctions,
with long phrases split evenly to at most ``max_words`` words; words are runs of letters and
digits (inner apostrophes and hyphens kept). Punctuation belongs to no word: it is context that
perturbations keep.

Example
-------
>>> from faithscope.segment import segment
>>> text = "Mr. Tim had a red ball. He played with it, and he was happy!\\n\\nThe end."
>>> [text[a:b] for a, b in segment(text, "sentence")]
['Mr. Tim had a red ball.', 'He played with it, and he was happy!', 'The end.']
>>> [text[a:b] for a, b in segment(text, "phrase", 24, 60)]
['He played with it,', 'and he was happy!']
>>> [text[a:b] for a, b in segment(text, "word", 0, 23)]
['Mr', 'Tim', 'had', 'a', 'red', 'ball']
"""

from __future__ import annotations

import math
import re

LEVELS = ("paragraph", "sentence", "phrase", "word")
ABBREVIATIONS = frozenset(
    ["mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "u.s", "u.k", "no", "fig", "al", "approx", "dept", "est", "inc", "ltd", "co", "corp", "mt", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"])
CONJUNCTIONS = frozenset(
    ["and", "but", "or", "so", "yet", "because", "although", "though", "while", "whereas", "when", "whenever", "where", "if", "unless", "until", "since", "after", "before", "then", "which", "who", "whose"])
_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")
_SENT_END = re.compile(r"(?:[.!?]+|…)[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[A-Z0-9])")
_PHRASE_BREAK = re.compile(r"[,;:]+|\s[\u2013\u2014-]+\s|[()\[\]]")


def _trim(text: str, a: int, b: int) -> tuple[int, int] | None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return (a, b) if b > a else None


def _cut(text: str, a: int, b: int, cuts: list[int]) -> list[tuple[int, int]]:
    out = []
    for lo, hi in zip([a, *cuts], [*cuts, b], strict=True):
        span = _trim(text, lo, hi)
        if span and _WORD.search(text, span[0], span[1]):
            out.append(span)
        elif span and out:  # punctuation-only piece: attach to the previous span
            out[-1] = (out[-1][0], span[1])
    return out


def paragraphs(text: str, a: int = 0, b: int | None = None) -> list[tuple[int, int]]:
    b = len(text) if b is None else b
    cuts = [m.end() for m in re.finditer(r"\n[ \t]*\n\s*", text[a:b])]
    return _cut(text, a, b, [a + c for c in cuts])


def sentences(text: str, a: int = 0, b: int | None = None) -> list[tuple[int, int]]:
    b = len(text) if b is None else b
    cuts = []
    for m in _SENT_END.finditer(text, a, b):
        before = text[a : m.start()].split()
        last = before[-1].lower().rstrip(".") if before else ""
        if text[m.start()] == "." and (last in ABBREVIATIONS or re.fullmatch(r"[a-z]", last)):
            continue
        cuts.append(m.end())
    cuts += [a + m.end() for m in re.finditer(r"\n+", text[a:b])]
    return _cut(text, a, b, sorted(set(cuts)))


def phrases(text: str, a: int = 0, b: int | None = None, max_words: int = 8
            ) -> list[tuple[int, int]]:
    b = len(text) if b is None else b
    cuts = [m.end() for m in _PHRASE_BREAK.finditer(text, a, b)]
    for w in list(_WORD.finditer(text, a, b))[1:]:  # before a conjunction, not at the start
        if w.group().lower() in CONJUNCTIONS and w.start() - 1 not in cuts:
            cuts.append(w.start())
    out = []
    for lo, hi in _cut(text, a, b, sorted(set(c for c in cuts if a < c < b))):
        ws = list(_WORD.finditer(text, lo, hi))
        if len(ws) <= max_words:
            out.append((lo, hi))
            continue
        k = math.ceil(len(ws) / max_words)
        size = math.ceil(len(ws) / k)
        starts = [ws[i].start() for i in range(size, len(ws), size)]
        out += _cut(text, lo, hi, starts)
    return out


def words(text: str, a: int = 0, b: int | None = None) -> list[tuple[int, int]]:
    b = len(text) if b is None else b
    return [(m.start(), m.end()) for m in _WORD.finditer(text, a, b)]


def segment(text: str, level: str, a: int = 0, b: int | None = None, *,
            max_phrase_words: int = 8) -> list[tuple[int, int]]:
    """Spans of ``level`` inside ``text[a:b]`` (the whole text by default)."""
    if level == "paragraph":
        return paragraphs(text, a, b)
    if level == "sentence":
        return sentences(text, a, b)
    if level == "phrase":
        return phrases(text, a, b, max_phrase_words)
    if level == "word":
        return words(text, a, b)
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def finer(level: str) -> str | None:
    """The next finer level (``None`` below words)."""
    i = LEVELS.index(level)
    return LEVELS[i + 1] if i + 1 < len(LEVELS) else None


def remove_spans(text: str, spans: list[tuple[int, int]], replacement: str = "") -> str:
    """``text`` with ``spans`` replaced (default: dropped), whitespace left tidy."""
    out, pos = [], 0
    for a, b in sorted(spans):
        out.append(text[pos:a])
        out.append(replacement)
        pos = b
    out.append(text[pos:])
    joined = "".join(out)
    if replacement == "":
        joined = re.sub(r"[ \t]{2,}", " ", joined)
        joined = re.sub(r" +([,.;:!?])", r"\1", joined)
        joined = re.sub(r"\n[ \t]+", "\n", joined).strip()
    return joined
