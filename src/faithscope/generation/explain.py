"""Explaining generated text: units of the prompt, scalarized scoring, multi-level refinement.

:func:`explain_generation` generates the reference output of every prompt once, splits each
prompt into units (rule-based :mod:`faithscope.segment`), and runs any perturbation explainer
(``mexgen_loo``, ``mexgen_clime``, ``mexgen_lshap``, ``lime``, ``kernel_shap``,
``partition_shap``, ``leave_one_out``) on them: the explainers write unit masks as they do for
classifiers, and :class:`ScalarizedLM` turns every mask of every prompt into a perturbed prompt
(removed units dropped, or replaced by ``replacement``) and scores all of them with the
scalarizer in one virtual batch. Local models also take the gradient family (``gradient``,
``gradient_x_input``, ``integrated_gradients``) on the log-probability of the output (whole, or
per output token with ``per_token``).

With ``levels=("sentence", "phrase", "word")`` (MExGen's multi-level mode) the prompt is first
attributed at the coarsest level; the ``top_k`` (or ``top_fraction``) most important units are
refined into their finer units and the mixed-level unit set is attributed again, down to the last
level. The Explanation keeps the mixed units; ``info["levels"]`` names each unit's level and
``info["queries"]`` counts the distinct perturbed prompts the model scored over all rounds.

Reference: Monteiro Paes, Wei et al. 2025, "Multi-Level Explanations for Generative Language
Models" (ACL).

Example
-------
>>> from faithscope.generation import explain_generation
>>> from faithscope.models.generative import load_generative
>>> lm = load_generative("tests/assets/stories260K", max_new_tokens=8)  # doctest: +SKIP
>>> (e,) = explain_generation(lm, ["Tom had a dog. The dog was big and brown."],
...                           "mexgen_loo", levels=("sentence", "word"), top_k=1)  # doctest: +SKIP
>>> e.info["levels"]  # doctest: +SKIP
['word', 'word', 'word', 'word', 'word', 'word', 'word', 'sentence']
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..explainers.base import example_rng
from ..explanation import Explanation
from ..models.generative import Generation
from ..segment import LEVELS, remove_spans, segment
from ..units import Unit
from .gradients import GRADIENT_EXPLAINERS, gradient_scores
from .scalarizers import LogProb, Scalarizer, SummaryProb, get_scalarizer


@dataclass(frozen=True)
class GenItem:
    """One prompt ready to explain; it quacks like a classifier's ``Prepared`` item."""

    example_id: str
    prompt: str
    units: tuple[Unit, ...]
    levels: tuple[str, ...]
    reference: Generation
    targets: tuple[int, ...]
    seed: int

    @property
    def n_units(self) -> int:
        return len(self.units)

    def rng(self, salt: str = "") -> np.random.Generator:
        return example_rng(self.seed, self.example_id, salt)

    def perturbed(self, mask: np.ndarray, replacement: str = "") -> str:
        drop = [(u.start, u.end) for u, keep in zip(self.units, mask, strict=True) if not keep]
        return remove_spans(self.prompt, drop, replacement) if drop else self.prompt


@dataclass(eq=False)
class ScalarizedLM:
    """A generative model + scalarizer seen by perturbation explainers as an adapter: it scores
    unit masks of many prompts in one virtual batch (identical perturbed prompts run once)."""

    lm: Any
    scalarizer: Scalarizer
    replacement: str = ""
    queries: dict[str, int] = field(default_factory=dict)  # distinct prompts per example

    def score_unit_masks(self, items: Sequence[GenItem], masks: Sequence[np.ndarray]
                         ) -> list[np.ndarray]:
        prompts: dict[tuple[str, str], int] = {}
        plan = []
        for it, m in zip(items, masks, strict=True):
            m = np.asarray(m, dtype=bool).reshape(-1, it.n_units)
            rows = []
            for row in m:
                key = (it.reference.text, it.perturbed(row, self.replacement))
                rows.append(prompts.setdefault(key, len(prompts)))
            plan.append(rows)
            self.queries[it.example_id] = self.queries.get(it.example_id, 0) + len(set(rows))
        keys = list(prompts)
        refs = {it.reference.text: it.reference for it in items}
        values = self.scalarizer(self.lm, [p for _, p in keys], [refs[r] for r, _ in keys])
        return [np.stack([values[i] for i in rows]).astype(np.float64) for rows in plan]


def make_units(prompt: str, spans: Sequence[tuple[int, int]]) -> tuple[Unit, ...]:
    return tuple(Unit(prompt[a:b], a, b, 0, ()) for a, b in spans)


def _refine(item: GenItem, scores: np.ndarray, level: str, *, top_k: int | None,
            top_fraction: float | None, by: str) -> GenItem:
    """Split the most important units of the coarsest level above ``level`` into ``level``."""
    coarse = [i for i, lv in enumerate(item.levels) if LEVELS.index(lv) < LEVELS.index(level)]
    if not coarse:
        return item
    s = scores[:, coarse].sum(0)
    key = np.abs(s) if by == "abs" else s
    n = top_k if top_k is not None else max(1, int(np.ceil((top_fraction or 0.0) * len(coarse))))
    chosen = {coarse[j] for j in np.argsort(-key, kind="stable")[:n]}
    spans, levels = [], []
    for i, (u, lv) in enumerate(zip(item.units, item.levels, strict=True)):
        sub = segment(item.prompt, level, u.start, u.end) if i in chosen else []
        if len(sub) > 1 or (sub and i in chosen):
            spans += sub
            levels += [level] * len(sub)
        else:
            spans.append((u.start, u.end))
            levels.append(lv)
    return GenItem(item.example_id, item.prompt, make_units(item.prompt, spans), tuple(levels),
                   item.reference, item.targets, item.seed)


def explain_generation(
    lm: Any,
    prompts: Sequence[str] | str,
    explainer: Any = "mexgen_clime",
    *,
    target_fn: Any = "log_prob",
    levels: Sequence[str] = ("word",),
    top_k: int | None = None,
    top_fraction: float | None = 0.3,
    refine_by: str = "value",
    replacement: str = "",
    references: Sequence[Generation] | None = None,
    ids: Sequence[str] | None = None,
    seed: int = 0,
) -> list[Explanation]:
    """Explain each prompt's generated output with one explainer; see the module docstring."""
    from ..api import make_explainer
    from ..api import versions as _versions

    if isinstance(prompts, str):
        prompts = [prompts]
    levels = tuple(levels)
    if not levels or any(lv not in LEVELS for lv in levels) or list(levels) != sorted(
            levels, key=LEVELS.index):
        raise InputError(f"levels must be coarse-to-fine names among {LEVELS}, got {levels}")
    if refine_by not in ("value", "abs"):
        raise InputError("refine_by must be 'value' or 'abs'")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
    if top_k is None and (top_fraction is None or not 0 < top_fraction <= 1):
        raise InputError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise InputError("prompt is empty or whitespace-only")
    exp = make_explainer(explainer)  # every check above and here runs before generation
    scal = get_scalarizer(target_fn)
    refs = list(references) if references is not None else lm.generate(list(prompts))
    ids = list(ids) if ids is not None else [str(i) for i in range(len(prompts))]
    items = []
    for pid, p, ref in zip(ids, prompts, refs, strict=True):
        spans = segment(p, levels[0]) or [(0, len(p.rstrip()))]
        items.append(GenItem(pid, p, make_units(p, spans), (levels[0],) * len(spans), ref,
                             tuple(range(scal.n_targets(ref))), seed))
    model = ScalarizedLM(lm, scal, replacement)
    attribute: Any = exp.attribute  # duck-typed: GenItems and a ScalarizedLM "adapter"
    if exp.uses_model_internals:
        if exp.name not in GRADIENT_EXPLAINERS or not isinstance(scal, LogProb) or \
                isinstance(scal, SummaryProb):
            raise InputError(f"on generated text, model-internal explainers are "
                             f"{GRADIENT_EXPLAINERS} with the log_prob scalarizer")

        tokens: dict[str, Any] = {}  # one backward pass per prompt, whatever the rounds

        def attribute(_m: Any, its: Sequence[GenItem], _s: Any) -> Any:
            return gradient_scores(lm, its, exp, per_token=scal.per_token, mean=scal.mean,
                                   cache=tokens)
    t0 = time.perf_counter()
    rounds: list[list[int]] = [[it.n_units for it in items]]
    scores, infos = attribute(model, items, scal)
    for level in levels[1:]:
        items = [_refine(it, sc, level, top_k=top_k, top_fraction=top_fraction, by=refine_by)
                 for it, sc in zip(items, scores, strict=True)]
        rounds.append([it.n_units for it in items])
        scores, infos = attribute(model, items, scal)
    per = (time.perf_counter() - t0) / max(len(items), 1)
    ver = _versions()
    out = []
    for k, (it, sc, info) in enumerate(zip(items, scores, infos, strict=True)):
        out.append(Explanation(
            example_id=it.example_id, text=it.prompt, pair=None, units=it.units,
            scores=np.asarray(sc, dtype=np.float32), targets=it.targets,
            target_labels=scal.target_labels(it.reference), probs=np.ones(1, np.float32),
            explainer=exp.name, params=exp.params(), granularity="+".join(levels),
            target_fn=scal.name, model_id=getattr(lm, "model_id", "unknown"),
            model_revision=getattr(lm, "revision", None), seed=seed, runtime_s=per,
            info={**info, "output": it.reference.text,
                  "output_ids": [int(t) for t in it.reference.ids], "levels": list(it.levels),
                  "queries": model.queries.get(it.example_id, 0),
                  "units_per_round": [r[k] for r in rounds]},
            versions=ver))
    return out
