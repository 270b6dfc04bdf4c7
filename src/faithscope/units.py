"""Interpretable units (tokens, words) built from tokenizer character offsets.

A :class:`Unit` is a span of the input text (``part`` 0 = text, 1 = pair) together with the
positions of the model tokens that realise it. Units never overlap, special tokens belong to no
unit, and every non-space character of the encoded text is covered by exactly one unit, whatever
the tokenizer (WordPiece, byte-level BPE, SentencePiece).

Example
-------
>>> from faithscope.units import build_units
>>> offsets = [(0, 0), (0, 3), (3, 6), (7, 9), (0, 0)]   # [CLS] unb ##ox it [SEP]
>>> units = build_units("unbox it", None, offsets, [None, 0, 0, 0, None], "word")
>>> [(u.text, u.tokens) for u in units]
[('unbox', (1, 2)), ('it', (3,))]
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

GRANULARITIES = ("token", "word")
_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*|\S")


@dataclass(frozen=True)
class Unit:
    """One interpretable unit: ``text == segment[start:end]``; ``tokens`` are sequence positions."""

    text: str
    start: int
    end: int
    part: int = 0
    tokens: tuple[int, ...] = ()


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _strip(seg: str, a: int, b: int) -> tuple[int, int]:
    a, b = max(a, 0), min(b, len(seg))
    while a < b and seg[a].isspace():
        a += 1
    while b > a and seg[b - 1].isspace():
        b -= 1
    return a, b


def _segment_units(
    seg: str, part: int, toks: list[tuple[int, int, int]], granularity: str, truncated: bool
) -> list[Unit]:
    """Units of one segment; ``toks`` holds (position, start, end) of its non-special tokens,
    in position order."""
    n = len(seg)
    # offsets are stripped already for most tokenizers: one check before the general strip
    spans = [(p, a, b) if 0 <= a < b <= n and not seg[a].isspace() and not seg[b - 1].isspace()
             else (p, *_strip(seg, a, b)) for p, a, b in toks]
    real = [(p, a, b) for p, a, b in spans if b > a]
    empty = [p for p, a, b in spans if b <= a]  # e.g. a lone SentencePiece "▁"
    if granularity == "word":
        pieces = [(m.start(), m.end()) for m in _WORD.finditer(seg)]
        units = _word_units(seg, part, pieces, real)
        if units is not None:
            return _finish(units, empty, part, truncated)
    else:
        pieces = [(a, b) for _, a, b in real]
        covered = bytearray(len(seg))
        for a, b in pieces:
            covered[a:b] = b"\1" * (b - a)
        # non-space characters no token covers (dropped by a normaliser) become pieces too
        for m in re.finditer(r"\S+", seg):
            i = m.start()
            while i < m.end():
                if covered[i]:
                    i += 1
                    continue
                j = i
                while j < m.end() and not covered[j]:
                    j += 1
                pieces.append((i, j))
                i = j
    pieces.sort()
    uf = _UnionFind(len(pieces))
    reach, reach_i = -1, -1
    for i, (a, b) in enumerate(pieces):  # overlapping pieces (tokens sharing characters) merge
        if a < reach:
            uf.union(reach_i, i)
        if b > reach:
            reach, reach_i = b, i
    starts = [a for a, _ in pieces]
    owner: dict[int, list[int]] = {}
    for p, a, b in real:  # a token bridging several pieces merges them
        lo = max(bisect.bisect_right(starts, a) - 1, 0)
        hits = []
        for i in range(lo, len(pieces)):
            if pieces[i][0] >= b:
                break
            if pieces[i][1] > a:
                hits.append(i)
        for h in hits[1:]:
            uf.union(hits[0], h)
        owner.setdefault(hits[0], []).append(p)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(uf.find(i), []).append(i)
    units = []
    for members in groups.values():
        a = min(pieces[i][0] for i in members)
        b = max(pieces[i][1] for i in members)
        tokens = sorted(p for i in members for p in owner.get(i, ()))
        units.append(Unit(seg[a:b], a, b, part, tuple(tokens)))
    units.sort(key=lambda u: u.start)
    return _finish(units, empty, part, truncated)


def _word_units(seg: str, part: int, pieces: list[tuple[int, int]],
                real: list[tuple[int, int, int]]) -> list[Unit] | None:
    """The common case of word units, in one pass: every token lies inside one word (words
    never overlap), so each word is a unit with the tokens inside it. None when a token
    bridges words (the general path then merges them)."""
    starts = [a for a, _ in pieces]
    owned: list[list[int]] = [[] for _ in pieces]
    for p, a, b in real:
        i = bisect.bisect_right(starts, a) - 1
        if i < 0 or b > pieces[i][1] or a >= pieces[i][1]:
            return None
        owned[i].append(p)
    # ``real`` is in position order, so each word's positions are appended ascending
    return [Unit(seg[a:b], a, b, part, tuple(t)) for (a, b), t in zip(pieces, owned, strict=True)]


def _finish(units: list[Unit], empty: list[int], part: int, truncated: bool) -> list[Unit]:
    """Drop trailing units the model never saw (truncated input); attach whitespace-only
    tokens."""
    if truncated:  # drop text the model never saw
        while units and not units[-1].tokens:
            units.pop()
    if not empty:
        return units
    # attach whitespace-only tokens to the next unit (or the previous one at the end); "next"
    # is judged by the units' own tokens, not by whitespace tokens attached in this loop
    firsts = [min(u.tokens) if u.tokens else None for u in units]
    for p in empty:
        if not units:
            break
        nxt = next((k for k, f in enumerate(firsts) if f is not None and f > p), None)
        k = nxt if nxt is not None else len(units) - 1
        u = units[k]
        units[k] = Unit(u.text, u.start, u.end, part, tuple(sorted((*u.tokens, p))))
    return units


def build_units(
    text: str,
    pair: str | None,
    offsets: Sequence[tuple[int, int]],
    sequence_ids: Sequence[int | None],
    granularity: str = "word",
    *,
    truncated: bool = False,
) -> tuple[Unit, ...]:
    """Build units for an encoded text (or text pair) from per-token offsets and segment ids.

    Tokens whose ``sequence_ids`` entry is ``None`` are special and belong to no unit.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    segments = [text] if pair is None else [text, pair]
    out: list[Unit] = []
    for part, seg in enumerate(segments):
        toks = [
            (p, int(a), int(b))
            for p, ((a, b), s) in enumerate(zip(offsets, sequence_ids, strict=True))
            if s == part
        ]
        out.extend(_segment_units(seg, part, toks, granularity, truncated))
    return tuple(out)


def unit_token_matrix(units: Sequence[Unit], n_tokens: int) -> list[list[int]]:
    """Token positions of each unit (a plain list, convenient for indexing)."""
    return [[p for p in u.tokens if p < n_tokens] for u in units]
