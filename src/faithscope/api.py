"""explain(): texts (or examples) + explainers -> Explanations, every explainer batched.

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()            # or fs.load_model("hub-id-or-path")
>>> exps = fs.explain(model, ["a gorgeous, witty film", ("a man plays", "someone plays")],
...                   explainers=["lime", "gradient"], granularity="word")
>>> [(e.example_id, e.explainer, e.scores.shape) for e in exps]
[('0', 'lime', (1, 5)), ('0', 'gradient', (1, 5)), ('1', 'lime', (1, 5)), ('1', 'gradient', (1, 5))]

The same call explains a generative LM (a :class:`~faithscope.models.generative.
GenerativeAdapter` or :class:`~faithscope.models.http.HTTPAdapter`: any adapter that
:func:`~faithscope.models.generative.is_generative`): the inputs are prompts, the reference
output of each is generated once (fixed decoding), units are segments of the prompt at
``levels`` (MExGen's multi-level refinement, :mod:`faithscope.generation.explain`), and
``target_fn`` is a target of generated text (default ``log_prob``; ``faithscope list targets``
marks them). For example ``fs.explain(lm, prompts, "mexgen_lshap", levels=("sentence", "phrase",
"word"))``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .data.example import Example
from .explainers.base import GROUP_ROWS, Explainer, explanations_of, item_groups
from .explainers.prepare import (
    ExplainerLike,
    InputLike,
    make_explainer,
    prepare,
    resolve_targets,
)
from .explainers.reuse import shared_scores
from .explanation import Explanation
from .models.adapter import InputError, softmax
from .models.batching import seed_torch
from .models.generative import Generation, is_generative
from .provenance import versions
from .registry import targets
from .targets import for_classifiers, get_target

# the public entry points, with those of the explainer layer re-exported
__all__ = ["ExplainerLike", "InputLike", "explain", "explanations_of", "make_explainer", "prepare",
           "resolve_targets", "versions"]


def explain(
    model: Any,
    inputs: Sequence[InputLike] | InputLike,
    explainers: Sequence[ExplainerLike] | ExplainerLike = ("integrated_gradients",),
    *,
    granularity: str = "word",
    target: Any = None,
    target_fn: Any = None,
    seed: int = 0,
    strict: bool = False,
    levels: Sequence[str] | str = ("word",),
    top_k: int | None = None,
    top_fraction: float | None = 0.3,
    refine_by: str = "value",
    replacement: str | None = None,
    references: Sequence[Generation] | None = None,
    group_rows: int = GROUP_ROWS,
    reuse: bool = True,
) -> list[Explanation]:
    """Explain every input with every explainer; returns example-major Explanations.

    Each explainer sees the inputs in groups of about ``group_rows`` model rows
    (:func:`~faithscope.explainers.base.item_groups`; all inputs when they fit), so
    perturbations and integration steps of many examples share the adapter's batches while
    memory stays flat in the number of inputs; the results are those of one call. ``target_fn``: a registered target name (default
    ``prob`` for classifiers, ``log_prob`` for generative models), or for generative models a
    ``(name, params)`` pair or a :class:`~faithscope.generation.scalarizers.Scalarizer`.

    Generative models only (see the module docstring): ``levels`` (coarse-to-fine segmentation
    levels), ``top_k`` / ``top_fraction`` (units refined per round), ``refine_by`` (``value``
    or ``abs``), ``replacement`` (text that replaces a removed unit; default: deleted) and
    ``references`` (outputs to explain instead of generating them). ``granularity``, ``target``
    and ``strict`` are for classifiers.

    ``reuse``: explainers of the call share scored masks (:mod:`~faithscope.explainers.reuse`:
    a mask one explainer scored is not run again for the next; ``info["reused"]`` counts them;
    with one explainer, not an ensemble, there is nothing to share and no scope is opened).
    """
    if isinstance(inputs, str | Example) or (  # one input; a (text, pair) tuple is one input
            isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], str)):
        inputs = [inputs]  # type: ignore[list-item]
    if isinstance(explainers, str | Explainer) or (
        isinstance(explainers, tuple) and len(explainers) == 2
        and isinstance(explainers[0], str) and isinstance(explainers[1], Mapping)
    ):  # one explainer: a name, an instance or a (name, params) pair
        explainers = [explainers]
    exps = [make_explainer(e) for e in explainers]
    if is_generative(model):
        return _explain_generated(model, list(inputs), exps, target_fn=target_fn, levels=levels,
                                  top_k=top_k, top_fraction=top_fraction, refine_by=refine_by,
                                  replacement=replacement, references=references, seed=seed,
                                  group_rows=group_rows)
    if target_fn is None:
        target_fn = "prob"
    if not isinstance(target_fn, str) or target_fn not in targets:
        raise InputError(targets.unknown_message(str(target_fn)))
    if not for_classifiers(target_fn):
        raise InputError(f"target {target_fn!r} applies to generated text (a generative model), "
                         "not to a classifier")
    fn = get_target(target_fn)
    items = prepare(model, list(inputs), granularity=granularity, target=target, seed=seed,
                    strict=strict)
    scores: list[list[np.ndarray]] = [[] for _ in exps]
    infos: list[list[dict[str, Any]]] = [[] for _ in exps]
    seconds = [0.0] * len(exps)
    # masks are shared between explainers (or an ensemble's members); one explainer alone
    # de-duplicates its own masks, and the scope's per-mask lookups would cost for nothing
    share = reuse and (len(exps) > 1 or any(callable(getattr(e, "built", None)) for e in exps))
    for group in item_groups(exps, items, group_rows):
        # one scope per group: a mask one explainer scored is not run again for the next
        with shared_scores(enabled=share) as cache:
            for k, exp in enumerate(exps):
                t0 = time.perf_counter()
                seed_torch(seed)
                before = [cache.reused(it) if cache else 0 for it in items[group]]
                sc, inf = exp.attribute(model, items[group], fn)
                scores[k] += list(sc)
                infos[k] += [{**info, "reused": cache.reused(it) - b} if cache
                             else {**info, "reused": 0} if reuse else info
                             for it, info, b in zip(items[group], inf, before, strict=True)]
                seconds[k] += time.perf_counter() - t0
    results: list[list[Explanation]] = [[] for _ in items]
    labels = model.labels
    probs = {id(it): p for it, p in zip(items, softmax(np.stack([it.logits for it in items]))
                                        .astype(np.float32), strict=True)} if items else {}
    for k, exp in enumerate(exps):
        made = explanations_of(
            exp, model, items, scores[k], infos[k], runtime_s=seconds[k] / max(len(items), 1),
            seed=seed,
            fields=lambda it: dict(
                example_id=it.example_id, text=it.enc.text, pair=it.enc.pair, units=it.units,
                targets=it.targets, target_labels=tuple(labels[t] for t in it.targets),
                probs=probs[id(it)]),
            granularity=granularity, target_fn=target_fn, model_id=model.model_id,
            model_revision=model.revision)
        for j, e in enumerate(made):
            results[j].append(e)
    return [e for row in results for e in row]


def _explain_generated(model: Any, inputs: list[Any], exps: list[Explainer], *,
                       target_fn: Any, **kw: Any) -> list[Explanation]:
    from .generation.explain import explain_generated

    prompts = []
    for i, x in enumerate(inputs):
        if isinstance(x, Example):
            if x.pair is not None:
                raise InputError(f"example {x.id}: a generative model explains one prompt, "
                                 "not a text pair")
            prompts.append((x.id, x.text))
        elif isinstance(x, str):
            prompts.append((str(i), x))
        else:
            raise InputError(f"a generative model explains prompts (strings), got "
                             f"{type(x).__name__}")
    return explain_generated(model, prompts, exps,
                             target_fn="log_prob" if target_fn is None else target_fn, **kw)



