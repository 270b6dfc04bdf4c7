"""The Dataset type, the machinery shared by the loaders, and rationale alignment.

Every loader in ``faithscope.registry.datasets`` is a function with keyword-only arguments
``path``, ``split``, ``n``, ``seed``, ``shuffle`` and ``skip_bad`` (plus its own) that returns a
:class:`Dataset`. With ``path=None`` a loader reads ``$FAITHSCOPE_DATA/<subfolder>``.

:func:`rationale_mask` aligns a rationale's character spans to the units of any tokenizer: a unit
is in the rationale when its character span overlaps a highlighted span of the same part.

Example
-------
>>> from faithscope.data import Example, rationale_mask
>>> from faithscope.units import Unit
>>> ex = Example("0", "a truly fine film", rationale=((0, 8, 12),))
>>> units = [Unit("a", 0, 1), Unit("truly", 2, 7), Unit("fi", 8, 10), Unit("ne", 10, 12),
...          Unit("film", 13, 17)]
>>> rationale_mask(units, ex.rationale).tolist()
[False, False, True, True, False]
"""

from __future__ import annotations

import os
import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np

from ..registry import UnknownNameError, datasets
from .example import Example, Span, normalize_spans
from .readers import DataError

ENV_VAR = "FAITHSCOPE_DATA"
T = TypeVar("T")


@dataclass(frozen=True)
class Dataset:
    """Examples of one split, the label names (``examples[i].label`` indexes ``labels``) and
    ``info`` (``source``, ``n_skipped`` and loader-specific counts)."""

    name: str
    split: str
    examples: tuple[Example, ...]
    labels: tuple[str, ...]
    info: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @overload
    def __getitem__(self, i: int) -> Example: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Example, ...]: ...
    def __getitem__(self, i: int | slice) -> Example | tuple[Example, ...]:
        return self.examples[i]

    def label_name(self, example: Example) -> str | None:
        """The name of an example's gold label (None when unlabelled)."""
        return None if example.label is None else self.labels[example.label]

    def by_id(self) -> dict[str, Example]:
        return {ex.id: ex for ex in self.examples}


def load_dataset(name: str, /, **kwargs: Any) -> Dataset:
    """``datasets.get(name)(**kwargs)`` with a DataError for an unknown name."""
    try:
        loader = datasets.get(name)
    except UnknownNameError as err:
        raise DataError(str(err)) from None
    ds = loader(**kwargs)
    assert isinstance(ds, Dataset)
    return ds


def data_root(path: str | Path | None, subdir: str, dataset: str) -> Path:
    """``path`` if given (it must exist), else ``$FAITHSCOPE_DATA/<subdir>``."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"{dataset}: {p}: no such file or folder")
        return p
    env = os.environ.get(ENV_VAR)
    if not env:
        raise DataError(f"{dataset}: no path given and {ENV_VAR} is not set; pass path=... or "
                        f"set {ENV_VAR} to the folder that holds {subdir}/")
    p = Path(env).expanduser() / subdir
    if not p.exists():
        raise DataError(f"{dataset}: {p} does not exist ({ENV_VAR}={env}); pass path=... or "
                        f"put the data under {ENV_VAR}/{subdir}/")
    return p


class RowError(Exception):
    """Raised by a row builder: the row is malformed (``line`` overrides the row's line)."""

    def __init__(self, message: str, *, source: str | Path | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.source, self.line = source, line


@dataclass
class Collector:
    """Builds examples from raw rows: raises DataError naming ``file:line`` for a malformed row,
    or (``skip_bad``) skips and counts it; ``counts`` gathers loader statistics for ``info``."""

    dataset: str
    skip_bad: bool = False
    n_skipped: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def bad(self, source: str | Path, line: int | None, message: str) -> None:
        where = f"{source}:{line}" if line is not None else str(source)
        msg = f"{where}: {message}"
        if not self.skip_bad:
            raise DataError(msg)
        self.n_skipped += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(msg)

    def on_error(self, source: str | Path) -> Callable[[int, str], None]:
        """An ``iter_rows`` error callback that reports through :meth:`bad`."""
        return lambda line, message: self.bad(source, line, message)

    def build(self, rows: Iterable[tuple[str | Path, int, T]],
              fn: Callable[[T], Example | None], *, n: int | None = None) -> list[Example]:
        """``fn(row)`` for each ``(source, line, row)`` until ``n`` examples; ``fn`` raises
        :class:`RowError` for a malformed row and returns None for a row to drop silently
        (count it in ``counts`` yourself)."""
        out: list[Example] = []
        for source, line, row in rows:
            if n is not None and len(out) >= n:
                break
            try:
                ex = fn(row)
            except RowError as err:
                self.bad(err.source or source, err.line if err.line is not None else line,
                         str(err))
                continue
            if ex is not None:
                out.append(ex)
        return out

    def finish(self, split: str, examples: Sequence[Example], labels: Sequence[str],
               source: Any, **info: Any) -> Dataset:
        if self.n_skipped:
            warnings.warn(f"{self.dataset} ({split}): skipped {self.n_skipped} malformed "
                          f"row(s), first: {self.first_errors[0]}", stacklevel=3)
        meta = {"source": source if isinstance(source, str) else
                [str(s) for s in source] if isinstance(source, list | tuple) else str(source),
                "n_skipped": self.n_skipped, **dict(sorted(self.counts.items())), **info}
        if self.first_errors:
            meta["skipped_examples"] = list(self.first_errors)
        return Dataset(self.dataset, split, tuple(examples), tuple(labels), meta)


def check_n(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"n must be a non-negative integer or None, got {n!r}")


def ordered(items: Sequence[T], *, shuffle: bool, seed: int) -> list[T]:
    """``items`` as a list, shuffled with ``random.Random(seed)`` when ``shuffle``."""
    out = list(items)
    if shuffle:
        random.Random(seed).shuffle(out)
    return out


def label_index(value: Any, labels: Sequence[str], *, what: str = "label") -> int:
    """Index of a label given by name or by integer (or integer string); RowError otherwise."""
    orig = value
    if isinstance(value, str):
        v = value.strip()
        if v in labels:
            return labels.index(v)
        if v.lstrip("-").isdigit():
            value = int(v)
    if isinstance(value, int | np.integer) and not isinstance(value, bool) \
            and 0 <= int(value) < len(labels):
        return int(value)
    raise RowError(f"bad {what} {orig!r} (expected one of {', '.join(labels)} or "
                   f"0..{len(labels) - 1})")


# ------------------------------------------------------------------ spans and alignment
def join_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join tokens with single spaces; returns the text and each token's ``(start, end)``."""
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), offsets


def token_spans(part: int, offsets: Sequence[tuple[int, int] | None], selected: Iterable[int],
                text: str) -> list[Span]:
    """Character spans ``(part, start, end)`` of the selected token indices in ``text``
    (unaligned tokens, whose offset is None, are left out); selected tokens separated only by
    whitespace merge into one span."""
    spans = sorted(offsets[i] for i in set(selected) if offsets[i] is not None)  # type: ignore[type-var]
    return merge_gaps(part, [(a, b) for a, b in spans if b > a], text)  # type: ignore[misc]


def merge_gaps(part: int, spans: Iterable[tuple[int, int]], text: str) -> list[Span]:
    """Sorted character spans of one segment, merged where only whitespace separates them."""
    merged: list[Span] = []
    for a, b in sorted(spans):
        if merged and (a <= merged[-1][2] or not text[merged[-1][2]:a].strip()):
            merged[-1] = (part, merged[-1][1], max(b, merged[-1][2]))
        else:
            merged.append((part, a, b))
    return merged


def mask_spans(part: int, offsets: Sequence[tuple[int, int] | None], mask: Sequence[Any],
               text: str) -> list[Span]:
    """Spans of the tokens whose mask entry is truthy."""
    return token_spans(part, offsets, (i for i, m in enumerate(mask) if m), text)


def rationale_mask(units: Sequence[Any], rationale: Iterable[Sequence[int]] | None) -> np.ndarray:
    """Boolean mask over ``units`` (anything with ``part``/``start``/``end``, e.g.
    :class:`faithscope.units.Unit`): True where the unit's character span overlaps a rationale
    span ``(part, start, end)`` of the same part. ``None`` or ``()`` gives all False."""
    out = np.zeros(len(units), dtype=bool)
    spans = normalize_spans(rationale or ())
    if not spans or not len(units):
        return out
    parts = np.asarray([getattr(u, "part", 0) for u in units])
    starts = np.asarray([u.start for u in units])
    ends = np.asarray([u.end for u in units])
    for p in {s[0] for s in spans}:
        sp = np.asarray([(a, b) for q, a, b in spans if q == p])
        hit = (starts[:, None] < sp[None, :, 1]) & (sp[None, :, 0] < ends[:, None])
        out |= (parts == p) & hit.any(axis=1)
    return out
