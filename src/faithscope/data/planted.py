"""A planted, known feature in any labelled text dataset (the augmented-SST protocol, generalised).

:func:`plant` takes labelled examples, permutes their label vector with a seeded generator (so
the text no longer predicts the label), and appends to a ``fraction`` of them a label-bound word,
``words[new label]``, at the end of the last segment (the ``pair`` when there is one, else the
``text``). A model that fits this data can only rely on the planted word, whose character span
is the example's ground-truth rationale (``meta["planted"]`` says whether it has one; examples
without the word have ``rationale == ()``). ``sst2_planted`` is this construction on SST-2 with
the words ``negative``/``positive``; the ``planted`` loader applies it to any registered dataset
(``base=``), with the dataset's label names as the words when each is one word, else
``label0``, ``label1``, ...

Reference: the planted-feature ("augmented SST") protocol of Arras et al. 2022 and the thesis
"Assessing the Interpretability of Large Language Models" (ground truth by construction).

Example
-------
>>> from faithscope.data import load_dataset, rationale_texts
>>> ds = load_dataset("planted", base="sst2", bundled=True, n=4, seed=1)
>>> ds.name, ds.labels, ds.info["words"]
('planted', ('negative', 'positive'), ['negative', 'positive'])
>>> ex = ds[0]
>>> rationale_texts(ex) == [ds.info["words"][ex.label]], ex.meta["planted"]
(True, True)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..registry import datasets
from .core import Dataset, load_dataset
from .example import Example, Span

_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def planted_words(labels: Sequence[str]) -> tuple[str, ...]:
    """The label names when each is a single alphanumeric word and they are distinct (case
    folded), else ``label0``, ``label1``, ..."""
    names = [str(x) for x in labels]
    if all(_WORD.match(x) for x in names) and len({x.lower() for x in names}) == len(names):
        return tuple(names)
    return tuple(f"label{i}" for i in range(len(names)))


def check_words(words: Sequence[str], n_labels: int) -> tuple[str, ...]:
    ws = tuple(words)
    if len(ws) != n_labels or not all(isinstance(w, str) and w and w.strip() == w
                                      and " " not in w for w in ws):
        raise ValueError(f"words must be {n_labels} non-empty words (one per label), "
                         f"got {words!r}")
    if len(set(ws)) != len(ws):
        raise ValueError(f"words must be distinct, got {words!r}")
    return ws


def plant(examples: Sequence[Example], words: Sequence[str], *, fraction: float = 1.0,
          seed: int = 0, id_prefix: tuple[str, str] | None = None) -> list[Example]:
    """Permute the labels of ``examples`` and append ``words[new label]`` to ``round(fraction
    * len)`` of them (chosen with the same generator, after the permutation); see the module
    docstring. ``id_prefix=(old, new)`` renames ids that start with ``old``. Deterministic for
    a given seed and input order."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    if any(ex.label is None for ex in examples):
        raise ValueError("planting a feature needs labelled examples; some have no label")
    rng = np.random.default_rng(seed)
    old = np.asarray([ex.label for ex in examples], dtype=np.int64)
    new = old[rng.permutation(len(old))]
    k = int(round(fraction * len(examples)))
    chosen = (set(rng.choice(len(examples), size=k, replace=False).tolist())
              if len(examples) else set())
    out = []
    for i, (ex, y) in enumerate(zip(examples, new.tolist(), strict=True)):
        meta = {**dict(ex.meta), "planted": i in chosen, "original_label": ex.label,
                "ground_truth": True}
        part = 1 if ex.pair is not None else 0
        seg = ex.segment(part)
        rationale: tuple[Span, ...] = ()
        if i in chosen:
            new_seg = f"{seg} {words[y]}"
            rationale = ((part, len(seg) + 1, len(new_seg)),)
            seg = new_seg
        text, pair = (seg, ex.pair) if part == 0 else (ex.text, seg)
        ex_id = ex.id
        if id_prefix is not None and ex_id.startswith(id_prefix[0]):
            ex_id = id_prefix[1] + ex_id[len(id_prefix[0]):]
        out.append(dataclasses.replace(ex, id=ex_id, text=text, pair=pair, label=int(y),
                                       rationale=rationale, meta=meta))
    return out


def planted(*, base: str, path: Any = None, split: str = "dev", n: int | None = None,
            seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
            fraction: float = 1.0, words: Sequence[str] | None = None,
            **base_kwargs: Any) -> Dataset:
    """``base`` (a registered dataset name) loaded with ``path``, ``split``, ``n``, ``seed``,
    ``shuffle``, ``skip_bad`` and ``base_kwargs``, then :func:`plant` with ``seed``; ids get the
    prefix ``planted-``."""
    if base in ("planted", "sst2_planted"):
        raise ValueError(f"planted: base must be a dataset without a planted feature, got {base!r}")
    if path is not None:
        base_kwargs["path"] = path
    ds = load_dataset(base, split=split, n=n, seed=seed, shuffle=shuffle, skip_bad=skip_bad,
                      **base_kwargs)
    ws = check_words(words if words is not None else planted_words(ds.labels), len(ds.labels))
    out = plant(list(ds.examples), ws, fraction=fraction, seed=seed, id_prefix=("", "planted-"))
    k = sum(bool(e.meta["planted"]) for e in out)
    meta = {**ds.info, "base": base, "rationale": "planted", "fraction": fraction,
            "n_planted": k, "words": list(ws), "seed": seed}
    return Dataset("planted", split, tuple(out), ds.labels, meta)


datasets.add("planted", planted)
