"""Prompt datasets for generation studies: any text column of a local file or a Hub dataset.

``prompts()`` returns unlabelled examples (``label=None``) whose ``text`` is the prompt:

* no ``path`` and no ``name``: the bundled TinyStories-style story openings
  (``faithscope/resources/prompts/tinystories.txt``, see its README);
* ``path``: a ``.txt`` file with one prompt per line, or a CSV/TSV/JSONL file whose
  ``text_column`` holds the prompts;
* ``name``: a Hugging Face dataset (``config``, ``split``; needs the ``datasets`` package),
  its ``text_column``.

Example
-------
>>> from faithscope.data import load_dataset
>>> ds = load_dataset("prompts", n=2)
>>> ds.name, len(ds), ds[0].label, ds[0].text.startswith("Once upon a time")
('prompts', 2, None, True)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..registry import datasets
from .core import Collector, Dataset, RowError, check_n, data_root, ordered
from .example import Example
from .hf import hf
from .readers import DataError

BUNDLED = "tinystories.txt"


def _lines(path: Path, col: Collector, n: int | None, *, shuffle: bool, seed: int,
           name: str) -> list[Example]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"prompts: cannot read {path}: {err}") from None
    rows = [(path, i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    rows = [r for r in rows if r[2]]  # blank lines separate nothing: skipped

    def build(row: tuple[int, str]) -> Example:
        line, prompt = row
        if "\x00" in prompt:
            raise RowError("NUL byte in the prompt")
        return Example(id=f"{name}-{line}", text=prompt)

    items = [(src, line, (line, p)) for src, line, p in ordered(rows, shuffle=shuffle, seed=seed)]
    return col.build(items, build, n=n)


def prompts(*, path: str | Path | None = None, name: str | None = None,
            config: str | None = None, split: str = "dev", n: int | None = None,
            seed: int = 0, shuffle: bool = False, skip_bad: bool = False,
            text_column: str = "text", id_column: str | None = None,
            revision: str | None = None) -> Dataset:
    """Prompts (unlabelled examples) from the bundled file, a local file (``.txt``: one prompt
    per line; CSV/TSV/JSONL: ``text_column``) or a Hub dataset ``name``. ``split`` only selects
    the Hub split; a file holds one split."""
    check_n(n)
    if path is not None and name is not None:
        raise ValueError("prompts: give path= (a local file) or name= (a Hub dataset), not both")
    if name is not None:
        ds = hf(name=name, config=config, split=split, n=n, seed=seed, shuffle=shuffle,
                skip_bad=skip_bad, text_column=text_column, label_column=None,
                id_column=id_column, revision=revision, dataset_name="prompts")
        return Dataset("prompts", ds.split, ds.examples, (), {**ds.info, "rationale": None})
    col = Collector("prompts", skip_bad)
    if path is None:
        ref = resources.files("faithscope") / "resources" / "prompts" / BUNDLED
        with resources.as_file(ref) as p:
            exs = _lines(Path(p), col, n, shuffle=shuffle, seed=seed, name="prompts")
        return col.finish(split, exs, (), f"bundled:{BUNDLED}", rationale=None,
                          columns={"text": "line"})
    p = data_root(path, "", "prompts")
    if p.is_dir():
        raise DataError(f"prompts: {p} is a folder; give a .txt, JSONL, CSV or TSV file")
    if p.suffix.lower() == ".txt":
        exs = _lines(p, col, n, shuffle=shuffle, seed=seed, name="prompts")
        return col.finish(split, exs, (), str(p), rationale=None, columns={"text": "line"})
    ds = hf(path=p, split=split, n=n, seed=seed, shuffle=shuffle, skip_bad=skip_bad,
            text_column=text_column, label_column=None, id_column=id_column,
            dataset_name="prompts")
    return Dataset("prompts", ds.split, ds.examples, (), {**ds.info, "rationale": None})


datasets.add("prompts", prompts)
