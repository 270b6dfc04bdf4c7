"""Explaining generated text: units of the prompt, scalarized scoring, multi-level refinement.

:func:`faithscope.explain` given a generative adapter (:func:`~faithscope.models.generative.
is_generative`) comes here (:func:`explain_generated`): it generates the reference output of
every prompt once, splits each
prompt into units (rule-based :mod:`faithscope.segment`), and runs any perturbation explainer
(``mexgen_loo``, ``mexgen_clime``, ``mexgen_lshap``, ``lime``, ``kernel_shap``,
``partition_shap``, ``leave_one_out``) on them: the explainers write unit masks as they do for
classifiers, and :class:`ScalarizedLM` turns every mask of every prompt into a perturbed prompt
and scores all of them with the scalarizer in one virtual batch. Local models also take the
gradient family (``gradient``, ``gradient_x_input``, ``integrated_gradients``) on the
log-probability of the output (whole, or per output token with ``per_token``); IG starts from
the explainer's own ``baseline`` (see :mod:`faithscope.generation.gradients`).

Perturbation operator: removed units are *deleted* from the prompt text (MExGen's default,
ICX360's ``replacement_str=""``), whatever the explainer's ``mask`` says by default: a decoder
has no mask token, and ``<unk>`` is a token such models never see in training. ``<unk>`` is
used only when asked for: the explainer's ``mask="unk"`` (the tokenizer's unk token text), or
``replacement="<unk>"``; ``replacement`` may be any string. The operator actually used is the
one recorded: ``params["mask"]`` (``delete``, ``unk`` or ``replace``), ``info["operator"]`` and
``info["replacement"]``.

With ``levels=("sentence", "phrase", "word")`` (MExGen's multi-level mode) the prompt is first
attributed at the coarsest level; then each round refines only units of the level just above
it: the ``top_k`` (or ``top_fraction``) most important *sentences* are split into phrases, then
the most important *phrases* (among the phrase-level units) into words, and the mixed-level
unit set is attributed again after each round. A unit that was not refined keeps its level and
never jumps two levels down. The Explanation keeps the mixed units; ``Explanation.levels`` names
each unit's level (``output`` and ``output_ids`` hold the reference output) and ``info["queries"]`` counts the model queries made: the distinct perturbed
prompts of each round, summed over the rounds (a prompt scored again in a later round, e.g.
the full prompt, counts again).

The reference output is the model's own generation (its end-of-sequence token included when it
stopped by itself, :class:`~faithscope.models.generative.Generation`). An empty output, or a
prompt with no units (no letters or digits), is refused with an :class:`InputError`.

Reference: Monteiro Paes, Wei et al. 2025, "Multi-Level Explanations for Generative Language
Models" (ACL).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.generative import load_generative
>>> lm = load_generative("tests/assets/stories260K", max_new_tokens=8)  # doctest: +SKIP
>>> (e,) = fs.explain(lm, ["Tom had a dog. The dog was big and brown."],
...                   "mexgen_loo", levels=("sentence", "word"), top_k=1)  # doctest: +SKIP
>>> e.levels  # doctest: +SKIP
('word', 'word', 'word', 'word', 'word', 'word', 'word', 'sentence')
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..explainers.base import example_rng
from ..explanation import Explanation
from ..models.batching import seed_torch
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
    # per output token: its text and step scores (local models; see Explanation)
    output_tokens: tuple[str, ...] | None = None
    step_scores: dict[str, tuple[float, ...]] | None = None

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
    _gradients: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def mask_operator(self, operator: str) -> str:
        """The operator this model applies, whatever the explainer asks (see the module
        docstring): ``delete``, ``unk`` or ``replace``."""
        return operator_of(self.lm, self.replacement)

    def run_explainer(self, exp: Any, items: Sequence[GenItem]) -> Any:
        """Attribute ``items`` with ``exp`` on this model: the gradient family through the
        model's gradients of the log-probability (token scores cached per explainer and prompt,
        so later multi-level rounds only pool them again), every other explainer through its own
        kernel with this object as its adapter. Ensembles reach their members through here."""
        if not exp.uses_model_internals:
            return exp.attribute(self, items, self.scalarizer)
        check_internal(exp, self.scalarizer)
        cache = self._gradients.setdefault(repr(exp), {})
        return gradient_scores(self.lm, items, exp, self.scalarizer, cache=cache)

    def score_unit_masks(self, items: Sequence[GenItem], masks: Sequence[np.ndarray]
                         ) -> list[np.ndarray]:
        prompts: dict[tuple[Any, str], int] = {}
        refs: dict[Any, Generation] = {}
        plan = []
        for it, m in zip(items, masks, strict=True):
            m = np.asarray(m, dtype=bool).reshape(-1, it.n_units)
            ref = it.reference
            rkey = (ref.text, tuple(int(t) for t in ref.ids), ref.eos)
            refs.setdefault(rkey, ref)
            rows = []
            for row in m:
                key = (rkey, it.perturbed(row, self.replacement))
                rows.append(prompts.setdefault(key, len(prompts)))
            plan.append(rows)
            self.queries[it.example_id] = self.queries.get(it.example_id, 0) + len(set(rows))
        keys = list(prompts)
        values = self.scalarizer(self.lm, [p for _, p in keys], [refs[r] for r, _ in keys])
        return [np.stack([values[i] for i in rows]).astype(np.float64) for rows in plan]


def make_units(prompt: str, spans: Sequence[tuple[int, int]]) -> tuple[Unit, ...]:
    return tuple(Unit(prompt[a:b], a, b, 0, ()) for a, b in spans)


def _refine(item: GenItem, scores: np.ndarray, parent: str, level: str, *,
            top_k: int | None, top_fraction: float | None, by: str) -> GenItem:
    """Split the most important units of level ``parent`` (the level just above ``level``
    among the requested ones) into ``level`` units; every other unit is kept as it is.

    Only ``parent``-level units compete: a coarser unit left unrefined in an earlier round is
    never split straight into ``level`` (MExGen refines one level at a time)."""
    cand = [i for i, lv in enumerate(item.levels) if lv == parent]
    if not cand:
        return item
    s = np.asarray(scores, dtype=np.float64)[:, cand].sum(0)
    key = np.abs(s) if by == "abs" else s
    n = top_k if top_k is not None else max(1, int(np.ceil((top_fraction or 0.0) * len(cand))))
    chosen = {cand[j] for j in np.argsort(-key, kind="stable")[:n]}
    spans, levels = [], []
    for i, (u, lv) in enumerate(zip(item.units, item.levels, strict=True)):
        sub = segment(item.prompt, level, u.start, u.end) if i in chosen else []
        if sub:
            spans += sub
            levels += [level] * len(sub)
        else:
            spans.append((u.start, u.end))
            levels.append(lv)
    return dataclasses.replace(item, units=make_units(item.prompt, spans), levels=tuple(levels))


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[: n - 1] + "\u2026")


def operator_of(lm: Any, replacement: str) -> str:
    """The operator a replacement text applies: ``delete`` (empty), ``unk`` (the tokenizer's
    unk token) or ``replace`` (any other text)."""
    if replacement == "":
        return "delete"
    unk = getattr(getattr(lm, "tokenizer", None), "unk_token", None)
    return "unk" if unk is not None and replacement == str(unk) else "replace"


def check_internal(explainer: Any, scalarizer: Scalarizer) -> None:
    """On generated text, the model-internal explainers are the gradient family of a
    log-probability target (log_prob, contrast) of the explained model."""
    if explainer.name not in GRADIENT_EXPLAINERS or not isinstance(scalarizer, LogProb) or \
            isinstance(scalarizer, SummaryProb):
        raise InputError(f"on generated text, model-internal explainers are "
                         f"{GRADIENT_EXPLAINERS} with the log_prob target")


def perturbation_operator(lm: Any, explainer: Any, replacement: str | None
                          ) -> tuple[str, str]:
    """``(operator, replacement text)`` that removes a unit from a prompt: ``("delete", "")``
    by default (the explainer's default ``mask``, or ``mask="delete"``), ``("unk", "<unk>")``
    for ``mask="unk"`` or a ``replacement`` equal to the tokenizer's unk token, and
    ``("replace", text)`` for any other ``replacement`` string."""
    op = getattr(explainer, "mask", None)
    unk = getattr(getattr(lm, "tokenizer", None), "unk_token", None)
    if replacement is not None:
        if not isinstance(replacement, str):
            raise InputError(f"replacement must be a string, got {replacement!r}")
        if op in ("unk", "pad"):
            raise InputError(f"{explainer.name}: give either mask={op!r} or replacement=, "
                             "not both")
        return operator_of(lm, replacement), replacement
    if op in (None, "mask", "delete"):
        return "delete", ""
    if op == "unk":
        if unk is None:
            raise InputError(f"{explainer.name}: mask='unk' needs a model whose tokenizer has an "
                             "unk token; use replacement= for a text replacement")
        return "unk", str(unk)
    raise InputError(f"{explainer.name}: on generated text mask must be 'mask' or 'delete' "
                     f"(the unit's text is deleted) or 'unk', got {op!r}; use replacement= for "
                     "any other text")


def check_levels(levels: Sequence[str]) -> tuple[str, ...]:
    """``levels`` as a tuple, refused unless coarse-to-fine names among :data:`LEVELS`."""
    levels = (levels,) if isinstance(levels, str) else tuple(levels)
    if not levels or any(lv not in LEVELS for lv in levels) or list(levels) != sorted(
            levels, key=LEVELS.index) or len(set(levels)) != len(levels):
        raise InputError(f"levels must be coarse-to-fine names among {LEVELS}, got {levels}")
    return levels


def explain_generated(
    lm: Any,
    prompts: Sequence[tuple[str, str]],
    explainers: Sequence[Any],
    *,
    target_fn: Any = "log_prob",
    levels: Sequence[str] = ("word",),
    top_k: int | None = None,
    top_fraction: float | None = 0.3,
    refine_by: str = "value",
    replacement: str | None = None,
    references: Sequence[Generation] | None = None,
    seed: int = 0,
    group_rows: int | None = None,
) -> list[Explanation]:
    """The generative branch of :func:`faithscope.explain` (see the module docstring):
    ``prompts`` are ``(id, text)`` pairs, ``explainers`` built instances; example-major
    Explanations. Every check runs before the reference outputs are generated (once). Each
    explainer runs on groups of about ``group_rows`` model rows at a time
    (:func:`~faithscope.explainers.base.item_groups`), as for classifiers."""
    from ..explainers.base import GROUP_ROWS, item_groups

    levels = check_levels(levels)
    if refine_by not in ("value", "abs"):
        raise InputError("refine_by must be 'value' or 'abs'")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
    if top_k is None and (top_fraction is None or not 0 < top_fraction <= 1):
        raise InputError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    if not prompts or any(not isinstance(p, str) or not p.strip() for _, p in prompts):
        raise InputError("prompt is empty or whitespace-only")
    first: list[list[tuple[int, int]]] = []
    for _, p in prompts:
        spans = segment(p, levels[0])
        if not spans:
            raise InputError(f"prompt {_short(p)} has no {levels[0]} units to attribute "
                             "(no letters or digits)")
        first.append(spans)
    scal = get_scalarizer(target_fn)
    ops = [("none", "") if exp.uses_model_internals else
           perturbation_operator(lm, exp, replacement) for exp in explainers]
    for exp in explainers:
        if exp.uses_model_internals:
            check_internal(exp, scal)
    texts = [p for _, p in prompts]
    refs = list(references) if references is not None else lm.generate(texts)
    if len(refs) != len(prompts):
        raise InputError(f"{len(refs)} references for {len(prompts)} prompts")
    checked = []
    for p, ref in zip(texts, refs, strict=True):
        if not ref.text.strip():
            raise InputError(f"the model generated an empty output for prompt {_short(p)}; "
                             "nothing to explain")
        if not len(ref.ids) and hasattr(lm, "output_ids"):  # a given text: score its tokens
            ref = Generation(ref.prompt, ref.text, lm.output_ids(ref.text), ref.eos)
        checked.append(ref)
    steps = _steps(lm, texts, checked)
    items = []
    for (pid, p), ref, spans, (toks, st) in zip(prompts, checked, first, steps, strict=True):
        items.append(GenItem(pid, p, make_units(p, spans), (levels[0],) * len(spans), ref,
                             tuple(range(scal.n_targets(ref))), seed, toks, st))
    results: list[list[Explanation]] = [[] for _ in items]
    for exp, (operator, rep) in zip(explainers, ops, strict=True):
        made: list[Explanation] = []
        for group in item_groups(exp, items, group_rows or GROUP_ROWS):
            made += attribute_items(lm, items[group], exp, scal, levels=levels, top_k=top_k,
                                    top_fraction=top_fraction, refine_by=refine_by,
                                    operator=operator, replacement=rep, seed=seed)
        for k, e in enumerate(made):
            results[k].append(e)
    return [e for row in results for e in row]


def _steps(lm: Any, prompts: Sequence[str], refs: Sequence[Generation]
           ) -> list[tuple[tuple[str, ...] | None, dict[str, tuple[float, ...]] | None]]:
    """Per reference, its tokens' texts and step scores (probability, entropy) under the
    original prompt, in one virtual batch; ``(None, None)`` for models that only return text."""
    if not hasattr(lm, "step_scores") or not hasattr(lm, "token_texts") or \
            any(not len(r.ids) for r in refs):
        return [(None, None)] * len(refs)
    scores = lm.step_scores(list(prompts), [r.ids for r in refs])
    return [(lm.token_texts(r.ids), {k: tuple(float(x) for x in v) for k, v in sc.items()})
            for r, sc in zip(refs, scores, strict=True)]


def attribute_items(lm: Any, items: Sequence[GenItem], exp: Any, scal: Scalarizer, *,
                    levels: Sequence[str], top_k: int | None = None,
                    top_fraction: float | None = 0.3, refine_by: str = "value",
                    operator: str = "delete", replacement: str = "", seed: int = 0,
                    granularity: str | None = None) -> list[Explanation]:
    """One explainer on prepared prompts: attribute the units, refine level by level (one
    level of ``levels`` after another), and return one Explanation per prompt."""

    from ..explainers.base import explanations_of

    model = ScalarizedLM(lm, scal, replacement)
    seed_torch(seed)
    t0 = time.perf_counter()
    rounds: list[list[int]] = [[it.n_units for it in items]]
    scores, infos = model.run_explainer(exp, items)
    for parent, level in zip(levels, levels[1:]):
        items = [_refine(it, sc, parent, level, top_k=top_k, top_fraction=top_fraction,
                         by=refine_by) for it, sc in zip(items, scores, strict=True)]
        rounds.append([it.n_units for it in items])
        scores, infos = model.run_explainer(exp, items)
    per = (time.perf_counter() - t0) / max(len(items), 1)
    params = exp.params()
    extra: dict[str, Any] = {}
    if not exp.uses_model_internals:
        extra = {"replacement": replacement}
        if "mask" in params:
            params["mask"] = operator  # deletion unless asked (see the module docstring)
    for info in infos:
        if "baseline" in params and "baseline" in info:
            params["baseline"] = info["baseline"]  # the baseline IG integrated from
    n_rounds = {it.example_id: [r[k] for r in rounds] for k, it in enumerate(items)}
    return explanations_of(
        exp, model, items, scores,
        [{**info, **extra, "output_eos": bool(it.reference.eos),
          "queries": model.queries.get(it.example_id, 0),
          "units_per_round": n_rounds[it.example_id]}
         for it, info in zip(items, infos, strict=True)],
        runtime_s=per, seed=seed, params=params,
        fields=lambda it: dict(
            example_id=it.example_id, text=it.prompt, pair=None, units=it.units,
            targets=it.targets, target_labels=scal.target_labels(it.reference),
            probs=np.ones(1, np.float32), output=it.reference.text,
            output_ids=tuple(int(t) for t in it.reference.ids), levels=tuple(it.levels),
            output_tokens=it.output_tokens, step_scores=it.step_scores),
        granularity=granularity or "+".join(levels), target_fn=scal.name,
        model_id=getattr(lm, "model_id", "unknown"), model_revision=getattr(lm, "revision", None))


def gen_item(e: Explanation) -> GenItem:
    """Rebuild the explained prompt (units, levels, reference output) from an Explanation."""
    if e.output is None:
        raise InputError(f"{e.explainer} on {e.example_id}: not an explanation of generated "
                         "text (no output)")
    ref = Generation(e.text, e.output, np.asarray(e.output_ids or (), dtype=np.int64),
                     bool(e.info.get("output_eos", False)))
    return GenItem(e.example_id, e.text, e.units, tuple(e.levels or ()), ref, (0,), e.seed or 0,
                   e.output_tokens,
                   None if e.step_scores is None else dict(e.step_scores))
