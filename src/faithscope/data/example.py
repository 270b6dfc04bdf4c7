"""The Example type every dataset reader yields.

Example
-------
>>> from faithscope.data import Example
>>> Example(id="0", text="a fine film", label=1).pair is None
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One input: text (and optional pair), gold label, and an optional human rationale given
    as the character spans ``(part, start, end)`` a human highlighted."""

    id: str
    text: str
    pair: str | None = None
    label: int | None = None
    rationale: tuple[tuple[int, int, int], ...] | None = None
