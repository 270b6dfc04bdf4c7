"""Faithfulness of explanations of generated text, through issue 2's removal kernel.

Every removal metric contributes its unit masks (``Metric.masks``: remove or keep the top
units); :class:`~faithscope.generation.explain.ScalarizedLM` turns them into perturbed prompts
and scores all of them, plus each unperturbed prompt, in one virtual batch with the chosen
scalarizer; ``Metric.from_probs`` turns the values into the metric, exactly as for classifiers.
So ``perturbation_curve`` (drop of the scalarized output as units are removed in score order up
to 50 %), ``deletion_curve``, ``comprehensiveness``, ``sufficiency`` and their AOPC versions all
apply to generation. ``flip_rate`` becomes: the greedy output changes once the top units are
removed (the prompt is re-generated and compared with the reference output).

Example
-------
>>> from faithscope.generation import evaluate_generation, explain_generation
>>> exps = explain_generation(lm, prompts, "mexgen_loo")  # doctest: +SKIP
>>> evaluate_generation(exps, lm, ["perturbation_curve", "flip_rate"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._lazy import lazy_import
from ..data.example import Example
from ..errors import InputError
from ..evaluate import COLUMNS, _reference
from ..explanation import Explanation
from ..metrics.base import EvalItem, Metric, get_metric
from ..metrics.faithfulness import FlipRate
from ..models.generative import Generation
from .explain import GenItem, ScalarizedLM
from .scalarizers import Scalarizer, TextScalarizer, get_scalarizer

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

DEFAULT_GEN_METRICS = ("perturbation_curve", "comprehensiveness", "sufficiency", "flip_rate")


@dataclass(frozen=True, kw_only=True)
class SameOutput(TextScalarizer):
    """1 if re-generating gives exactly the reference output, else 0 (for flip rates)."""

    name: ClassVar[str] = "same_output"

    def compare(self, references: list[str], texts: list[str]) -> np.ndarray:
        return np.array([float(a.strip() == b.strip()) for a, b in zip(references, texts,
                                                                         strict=True)])


def gen_item(e: Explanation) -> GenItem:
    """Rebuild the explained prompt (units, levels, reference output) from an Explanation."""
    if "output" not in e.info:
        raise InputError(f"{e.explainer} on {e.example_id}: not an explanation of generated "
                         "text (no info['output'])")
    ref = Generation(e.text, str(e.info["output"]),
                     np.asarray(e.info.get("output_ids", []), dtype=np.int64))
    return GenItem(e.example_id, e.text, e.units, tuple(e.info.get("levels") or ()), ref,
                   (0,), e.seed or 0)


def evaluate_generation(
    explanations: Sequence[Explanation],
    lm: Any,
    metrics: Sequence[Any] = DEFAULT_GEN_METRICS,
    *,
    target_fn: Any = "log_prob",
    replacement: str = "",
    examples: Iterable[Example] | None = None,
) -> pd.DataFrame:
    """One row per (explanation, metric), columns as :func:`faithscope.evaluate`."""
    ms: list[Metric] = [get_metric(m) for m in metrics]
    if any("explainer" in m.needs for m in ms):
        raise InputError("analyses (re-running the explainer) are not available for generation")
    scal: Scalarizer = get_scalarizer(target_fn)
    by_id = {ex.id: ex for ex in examples or ()}
    exps = list(explanations)
    items = [EvalItem(e, None, _reference(e, by_id.get(e.example_id)), 0) for e in exps]
    gens = [gen_item(e) for e in exps]
    scored = ScalarizedLM(lm, scal, replacement)
    flips = ScalarizedLM(lm, SameOutput(), replacement)
    plan: list[tuple[int, int, int, int]] = []
    masks: list[list[np.ndarray]] = [[np.ones((1, g.n_units), bool)] for g in gens]
    flip_plan: list[tuple[int, int]] = []
    flip_masks: list[np.ndarray] = []
    for i, it in enumerate(items):
        start = 1
        for j, m in enumerate(ms):
            if "model" not in m.needs:
                continue
            mk = m.masks(it)
            if isinstance(m, FlipRate):
                flip_plan.append((i, j))
                flip_masks.append(mk)
                continue
            masks[i].append(mk)
            plan.append((i, j, start, start + len(mk)))
            start += len(mk)
    values = scored.score_unit_masks(gens, [np.concatenate(m) for m in masks])
    out: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
    for i, j, a, b in plan:
        out[(i, j)] = ms[j].from_probs(items[i], values[i][0], values[i][a:b])
    if flip_plan:
        same = flips.score_unit_masks([gens[i] for i, _ in flip_plan], flip_masks)
        for (i, j), mk, s in zip(flip_plan, flip_masks, same, strict=True):
            out[(i, j)] = (float(1.0 - s[0, 0]), {"k": int((~mk[0]).sum()),
                                                   "output_changed": bool(s[0, 0] < 1)})
    for i, it in enumerate(items):
        for j, m in enumerate(ms):
            if "model" not in m.needs:
                out[(i, j)] = m.value(it)
    rows = []
    for i, it in enumerate(items):
        e = it.explanation
        for j, m in enumerate(ms):
            v, detail = out[(i, j)]
            rows.append({"example_id": e.example_id, "explainer": e.explainer, "metric": m.name,
                         "value": v, "family": m.family, "higher_is_better": m.higher_is_better,
                         "label": None, "predicted": None, "correct": None, "target": 0,
                         "n_units": it.n_units, "granularity": e.granularity,
                         "model_id": e.model_id, "detail": detail})
    return pd.DataFrame(rows, columns=COLUMNS)
