"""SST-2 (GLUE TSV) and ``sst2_planted``, SST-2 with a planted, known feature.

``sst2_planted`` builds a dataset whose true explanation is known: the labels are permuted with a
seeded RNG (so the sentence no longer predicts the label), then a ``fraction`` of the examples
get the word " positive" or " negative" appended, matching the *new* label. A model that fits
this data can only rely on the planted word, whose character span is the ground-truth rationale
(``meta["planted"]``); examples without the word have ``rationale == ()``.

Example
-------
>>> from faithscope.data import load_dataset, rationale_texts
>>> ds = load_dataset("sst2_planted", bundled=True, n=4, seed=1)
>>> ds.labels, len(ds)
(('negative', 'positive'), 4)
>>> ex = ds[0]
>>> rationale_texts(ex) == [ds.labels[ex.label]], ex.meta["planted"]
(True, True)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from ..registry import datasets
from .core import Collector, Dataset, RowError, check_n, data_root, label_index, ordered
from .example import Example
from .planted import plant
from .readers import DataError, iter_rows, row_problem

LABELS = ("negative", "positive")
FILES = {"dev": ("glue_dev.tsv",), "validation": ("glue_dev.tsv",),
         "train": ("glue_train_part1.tsv", "glue_train_part2.tsv")}
BUNDLED = {"dev": "glue_dev.tsv", "validation": "glue_dev.tsv", "train": "train_4k.tsv"}


def _files(path: str | Path | None, split: str, bundled: bool) -> list[Path]:
    if bundled:
        if path is not None:
            raise ValueError("sst2: give path= or bundled=True, not both")
        if split not in BUNDLED:
            raise DataError(f"sst2: bundled split must be one of {', '.join(BUNDLED)}, "
                            f"got {split!r}")
        ref = resources.files("faithscope") / "resources" / "sst2" / BUNDLED[split]
        with resources.as_file(ref) as p:  # an installed package is a plain folder
            return [Path(p)]
    root = data_root(path, "sst2", "sst2")
    if root.is_file():
        return [root]
    names = FILES.get(split, (f"{split}.tsv",))
    files = [root / f for f in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"sst2: {root} has no {', '.join(missing)} for split {split!r}")
    return files


def _load(path: str | Path | None, split: str, bundled: bool, skip_bad: bool,
          name: str) -> tuple[list[Example], Collector, list[Path]]:
    files = _files(path, split, bundled)
    col = Collector(name, skip_bad)

    def rows() -> Any:
        for f in files:
            for line, row in iter_rows(f, fmt="tsv", required=("sentence", "label")):
                yield f, line, (f, line, row)

    def build(item: tuple[Path, int, dict[str, Any]]) -> Example:
        f, line, row = item
        problem = row_problem(row, ("sentence", "label"))
        if problem:
            raise RowError(problem)
        text = row["sentence"].strip()
        if not text:
            raise RowError("empty sentence")
        label = label_index(row["label"], LABELS)
        return Example(id=f"sst2-{split}-{f.stem}-{line}", text=text, label=label)

    return col.build(rows(), build), col, files


def sst2(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
         seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
         bundled: bool = False) -> Dataset:
    """GLUE SST-2 from TSV files with header ``sentence<TAB>label`` (0 negative, 1 positive).

    ``path``: a TSV file, or a folder with ``glue_dev.tsv`` (split ``dev``) and
    ``glue_train_part1.tsv`` + ``glue_train_part2.tsv`` (split ``train``, concatenated);
    default ``$FAITHSCOPE_DATA/sst2``. ``bundled=True`` reads faithscope's own copy
    (``train`` = the first 4,000 train sentences, ``dev`` = all 872). No rationales.
    """
    check_n(n)
    exs, col, files = _load(path, split, bundled, skip_bad, "sst2")
    exs = ordered(exs, shuffle=shuffle, seed=seed)[:n]
    return col.finish(split, exs, LABELS, files, bundled=bundled, rationale=None)


def sst2_planted(*, path: str | Path | None = None, split: str = "dev", n: int | None = None,
                 seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
                 bundled: bool = False, fraction: float = 1.0,
                 words: tuple[str, str] = LABELS) -> Dataset:
    """SST-2 with permuted labels and a planted label word (the known-feature construction).

    The examples are first chosen as :func:`sst2` would (``shuffle``/``n``); then, with
    ``numpy.random.default_rng(seed)``, their label vector is permuted and ``round(fraction *
    len)`` of them get ``" " + words[new_label]`` appended. ``meta``: ``planted``,
    ``original_label``, ``ground_truth`` (True: the rationale is the planted truth).
    Deterministic for a given seed and selection.
    """
    check_n(n)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    if len(words) != 2 or not all(isinstance(w, str) and w.strip() == w and w for w in words):
        raise ValueError(f"words must be two non-empty words, got {words!r}")
    base, col, files = _load(path, split, bundled, skip_bad, "sst2_planted")
    base = ordered(base, shuffle=shuffle, seed=seed)[:n]
    out = plant(base, words, fraction=fraction, seed=seed, id_prefix=("sst2-", "sst2p-"))
    k = sum(bool(e.meta["planted"]) for e in out)
    return col.finish(split, out, LABELS, files, bundled=bundled, rationale="planted",
                      fraction=fraction, n_planted=k, words=list(words), seed=seed)


datasets.add("sst2", sst2)
datasets.add("sst2_planted", sst2_planted)
