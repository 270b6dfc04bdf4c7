"""The gradient family on generated text: saliency, gradient x input and Integrated Gradients
of the output's log-probability (whole output, or each output token) w.r.t. the prompt's word
embeddings, pooled into the prompt's units by character offsets.

Gradients do not depend on the units, so a multi-level explanation costs one pass: the token
scores are pooled into whatever mix of units the refinement produces. IG integrates from the
explainer's ``baseline`` on the prompt's own tokens (template and special tokens kept): ``zero``
(a zero embedding) or a token's embedding (``pad``, ``unk``, ``mask``, resolved as for
classifiers), with the explainer's quadrature; the baseline used is the one recorded
(``params["baseline"]``, ``info["baseline"]``), and ``info["attribution_sum"]`` should equal
log p(output | prompt) - log p(output | baseline prompt) (completeness).

Example
-------
>>> from faithscope.generation.gradients import pool_by_offsets
>>> import numpy as np
>>> from faithscope.units import Unit
>>> units = (Unit("big", 4, 7), Unit("dog", 8, 11))
>>> pool_by_offsets(np.array([[1.0, 2.0, 3.0]]), np.array([[-1, -1], [4, 7], [8, 11]]), units)
array([[2., 3.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..explainers.base import pool_by_index
from ..explainers.gradient import integration_points
from ..units import Unit

GRADIENT_EXPLAINERS = ("gradient", "gradient_x_input", "integrated_gradients")


def pool_by_offsets(token_scores: np.ndarray, offsets: np.ndarray, units: Sequence[Unit],
                    how: str = "sum") -> np.ndarray:
    """Token scores (targets x tokens) -> unit scores (targets x units); a token belongs to the
    first unit its span overlaps (template and special tokens, offsets -1, to none); pooled by
    the classifiers' :func:`~faithscope.explainers.base.pool_by_index`."""
    starts = np.array([u.start for u in units])
    ends = np.array([u.end for u in units])
    token_unit = np.full(len(offsets), -1, dtype=np.int64)
    for k, (a, b) in enumerate(offsets):
        if 0 <= a < b:
            hit = np.nonzero((starts < b) & (ends > a))[0]
            token_unit[k] = hit[0] if len(hit) else -1
    return pool_by_index(token_scores, token_unit, len(units), how)


def gradient_scores(lm: Any, items: Sequence[Any], explainer: Any, target: Any, *,
                    cache: dict[str, Any] | None = None
                    ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Unit scores (targets x units) and info per item for a gradient explainer of ``target``
    (a log-probability target: :class:`~faithscope.generation.scalarizers.LogProb` or
    :class:`~faithscope.generation.scalarizers.Contrast`). Token scores do not depend on the
    units: with a ``cache`` (example id -> token scores) later rounds of a multi-level
    explanation only pool them again."""
    cache = {} if cache is None else cache
    todo = [it for it in items if it.example_id not in cache]
    if todo:
        cache.update(zip([it.example_id for it in todo],
                         _token_scores(lm, todo, explainer, target), strict=True))
    scores, infos = [], []
    for it in items:
        tok, offs, how, info = cache[it.example_id]
        scores.append(pool_by_offsets(tok, offs, it.units, how))
        infos.append(dict(info))
    return scores, infos


def _token_scores(lm: Any, items: Sequence[Any], explainer: Any, target: Any
                  ) -> list[tuple[np.ndarray, np.ndarray, str, dict[str, Any]]]:
    """The target is a weighted sum of teacher-forced terms (``target.gradient_terms``: the
    output, or output and foil); every term of every item runs in one virtual batch and the
    terms' gradients are summed (the gradient of the target) before the method's reduction."""
    if not hasattr(lm, "output_gradients"):
        raise InputError(f"{explainer.name} needs a local model (gradients); this one only "
                         "returns text")
    name = explainer.name
    if any(len(it.reference.ids) == 0 for it in items):
        raise InputError(f"{name}: a reference output is empty or has no token ids")
    terms = [target.gradient_terms(lm, it.reference) for it in items]
    rows = [(k, t) for k, ts in enumerate(terms) for t in ts]
    ig = name == "integrated_gradients"
    alphas, weights = (integration_points(explainer.n_steps, explainer.method) if ig
                       else (np.ones(1), np.ones(1)))
    baseline = str(explainer.baseline) if ig else "zero"
    per_token = bool(target.per_token)
    grads, embs = lm.output_gradients(
        [items[k].prompt for k, _ in rows], [ids for _, (ids, _, _) in rows],
        foils=[foil for _, (_, foil, _) in rows], per_token=per_token,
        alphas=alphas.tolist(), weights=weights.tolist(),
        **({"baseline": baseline} if ig else {}))
    summed: list[Any] = [None] * len(items)
    x_of: list[Any] = [None] * len(items)
    for (k, (_, _, w)), g, x in zip(rows, grads, embs, strict=True):
        summed[k] = w * g if summed[k] is None else summed[k] + w * g
        x_of[k] = x
    bases = (lm.baseline_embeddings([it.prompt for it in items], baseline) if ig
             else [None] * len(items))
    out = []
    for it, g, x, b, ts in zip(items, summed, x_of, bases, terms, strict=True):
        _, offs = lm.prompt_encoding(it.prompt)
        own = (offs[:, 0] >= 0)[None, :, None]  # the prompt's own tokens, not the template's
        # the method's own reduction (explainers/gradient.py), as for classifiers
        tok = explainer.token_scores(g, np.where(own, x[None], 0.0),
                                     None if b is None else np.where(own, b[None], 0.0))
        info: dict[str, Any] = {"backwards": len(g) * len(alphas) * len(ts)}
        if ig:
            info["attribution_sum"] = tok.sum(-1).tolist()
            info["baseline"] = baseline
        out.append((tok, offs, explainer.pooling, info))
    return out
