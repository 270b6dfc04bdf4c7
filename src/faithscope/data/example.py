"""The Example type every dataset reader yields, and character-span rationales.

A rationale is a tuple of character spans ``(part, start, end)``: ``part`` 0 is ``text``, 1 is
``pair``, and ``segment[start:end]`` is what a human highlighted (or what a construction planted).
Character spans do not depend on any tokenizer; :func:`faithscope.data.rationale_mask` aligns them
to the units of whatever tokenizer a model uses.

``rationale is None`` means "not annotated"; ``()`` means "annotated, nothing highlighted".

Example
-------
>>> from faithscope.data import Example
>>> ex = Example(id="0", text="a fine film", label=1, rationale=((0, 2, 6),))
>>> ex.pair is None, rationale_texts(ex)
(True, ['fine'])
>>> Example("1", "x", meta={"ground_truth": True}).meta["ground_truth"]
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int, int]


class FrozenDict(dict[str, Any]):
    """A read-only dict (still a ``dict`` for ``json.dumps``, and picklable)."""

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Example.meta is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(map(repr, self.items()))))


def normalize_spans(spans: Iterable[Iterable[int]]) -> tuple[Span, ...]:
    """Sort spans, drop empty ones and merge those of one part that overlap or touch."""
    items = sorted((int(p), int(a), int(b)) for p, a, b in spans)
    out: list[list[int]] = []
    for p, a, b in items:
        if b <= a:
            continue
        if out and out[-1][0] == p and a <= out[-1][2]:
            out[-1][2] = max(out[-1][2], b)
        else:
            out.append([p, a, b])
    return tuple((p, a, b) for p, a, b in out)


@dataclass(frozen=True)
class Example:
    """One input: text (and optional pair), gold label (an index into the dataset's ``labels``),
    an optional rationale (character spans ``(part, start, end)``) and free-form ``meta``
    (e.g. ``{"ground_truth": True}``, annotator labels). ``meta`` is read-only and takes no part
    in hashing."""

    id: str
    text: str
    pair: str | None = None
    label: int | None = None
    rationale: tuple[Span, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=FrozenDict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.meta, FrozenDict):
            object.__setattr__(self, "meta", FrozenDict(self.meta or {}))
        if self.rationale is None:
            return
        spans = tuple((int(p), int(a), int(b)) for p, a, b in self.rationale)
        for p, a, b in spans:
            seg = self.text if p == 0 else self.pair if p == 1 else None
            if seg is None:
                raise ValueError(f"example {self.id}: rationale span {(p, a, b)} names part {p}"
                                 f", which {'does not exist' if p != 1 else 'is None (no pair)'}")
            if not 0 <= a <= b <= len(seg):
                raise ValueError(f"example {self.id}: rationale span {(p, a, b)} is outside "
                                 f"its segment of length {len(seg)}")
        object.__setattr__(self, "rationale", spans)

    def segment(self, part: int) -> str:
        """``text`` for part 0, ``pair`` for part 1."""
        seg = self.text if part == 0 else self.pair if part == 1 else None
        if seg is None:
            raise ValueError(f"example {self.id} has no part {part}")
        return seg


def rationale_texts(example: Example) -> list[str]:
    """The highlighted substrings of an example, in span order (empty when none)."""
    return [example.segment(p)[a:b] for p, a, b in example.rationale or ()]
