"""Inputs ready to explain: explainers built from specs, examples encoded into units with the
model's output and the explained targets resolved (:class:`~faithscope.explainers.base.
Prepared`). The explainer layer's entry points, re-exported by :mod:`faithscope.api`; metrics
that re-run an explainer (analyses) use them from here.

Example
-------
>>> from faithscope.explainers.prepare import make_explainer, prepare
>>> from faithscope.models.tiny import tiny_classifier
>>> (it,) = prepare(tiny_classifier(), ["a good film"])
>>> [u.text for u in it.units], make_explainer("lime", n_samples=8).n_samples
(['a', 'good', 'film'], 8)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data.example import Example
from ..models.adapter import InputError, ModelAdapter
from ..registry import explainers
from ..units import GRANULARITIES, build_units
from .base import Explainer, Prepared, token_unit_index

InputLike = str | tuple[str, str] | Example
ExplainerLike = str | Explainer | tuple[str, Mapping[str, Any]]


def make_explainer(spec: ExplainerLike, **params: Any) -> Explainer:
    """An explainer from a registered name (plus keyword hyper-parameters) or an instance."""
    if isinstance(spec, Explainer):
        exp = dataclasses.replace(spec, **params) if params else spec
    else:
        exp = explainers.build(spec, params)
    exp.validate()
    return exp


def _as_example(x: InputLike, i: int) -> Example:
    if isinstance(x, Example):
        return x
    if isinstance(x, tuple):
        return Example(id=str(i), text=x[0], pair=x[1])
    if isinstance(x, str):
        return Example(id=str(i), text=x)
    raise InputError(f"cannot explain an input of type {type(x).__name__}")


def resolve_targets(adapter: ModelAdapter, target: Any, logits: np.ndarray, *,
                    num_labels: int | None = None) -> tuple[int, ...]:
    """``None``/"predicted" -> argmax; "all" -> every class; int, label name, or a list.
    ``num_labels``: the adapter's, when the caller already has it."""
    if target is None or target == "predicted":
        return (int(np.argmax(logits)),)
    n = adapter.num_labels if num_labels is None else num_labels
    if target == "all":
        return tuple(range(n))
    items = target if isinstance(target, list | tuple) else [target]
    out = []
    for t in items:
        if isinstance(t, str) and t in adapter.labels:
            t = adapter.labels.index(t)
        if isinstance(t, bool) or not isinstance(t, int | np.integer) or not 0 <= int(t) < n:
            raise InputError(f"target {t!r} is out of range: the model has {n} labels "
                             f"({', '.join(adapter.labels)})")
        out.append(int(t))
    return tuple(out)


def prepare(
    adapter: ModelAdapter,
    inputs: Sequence[InputLike],
    *,
    granularity: str = "word",
    target: Any = None,
    seed: int = 0,
    strict: bool = False,
) -> list[Prepared]:
    """Encode inputs, build units, run the model once on all of them, resolve targets."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    examples = [_as_example(x, i) for i, x in enumerate(inputs)]
    many = getattr(adapter, "encode_many", None)
    encs = (many([(ex.text, ex.pair) for ex in examples], strict=strict) if many is not None
            else [adapter.encode(ex.text, ex.pair, strict=strict) for ex in examples])
    logits = adapter.logits([e.ids[None, :] for e in encs],
                            None if not encs or encs[0].type_ids is None
                            else [e.type_ids[None, :] for e in encs])  # type: ignore[index]
    n_labels = adapter.num_labels
    out = []
    for ex, enc, lg in zip(examples, encs, logits, strict=True):
        units = build_units(ex.text, ex.pair, enc.offsets, enc.sequence_ids, granularity,
                            truncated=enc.truncated)
        out.append(Prepared(example_id=ex.id, enc=enc, units=units,
                            targets=resolve_targets(adapter, target, lg[0], num_labels=n_labels),
                            logits=lg[0], seed=seed,
                            token_unit=token_unit_index(units, len(enc))))
    return out
