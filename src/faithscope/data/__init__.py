"""Datasets: the Example and Dataset types, readers, and the registered dataset loaders.

Loaders (``faithscope.registry.datasets``, or :func:`load_dataset`): ``sst2``,
``sst2_planted``, ``planted`` (a planted feature in any of them), ``examples`` (saved with
``save_examples``), ``esnli``, ``cose``,
``eraser``, ``hatexplain``, ``hf``, ``multinli``,
``prompts`` (unlabelled prompts for generation studies). Each
takes keyword-only ``path`` (default ``$FAITHSCOPE_DATA/<folder>``), ``split``, ``n``, ``seed``,
``shuffle`` and ``skip_bad`` and returns a :class:`Dataset`.

Example
-------
>>> from faithscope.data import load_dataset
>>> ds = load_dataset("sst2", bundled=True, n=3)
>>> ds.name, ds.split, len(ds), ds.labels
('sst2', 'dev', 3, ('negative', 'positive'))
"""

from . import cose, eraser, esnli, hatexplain, hf, planted, prompts, saved, sst2  # noqa: F401  (registers the loaders)
from .core import ENV_VAR, Dataset, load_dataset, rationale_mask
from .example import Example, Span, normalize_spans, rationale_texts
from .readers import DataError, bundled_sst2, iter_rows, read_table

__all__ = ["ENV_VAR", "DataError", "Dataset", "Example", "Span", "bundled_sst2", "iter_rows",
           "load_dataset", "normalize_spans", "rationale_mask", "rationale_texts", "read_table"]
