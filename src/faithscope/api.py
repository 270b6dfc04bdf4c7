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

import dataclasses
import platform
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lazy import lazy_import
from .data.example import Example
from .explainers.base import Explainer, Prepared, applied_operator, token_unit_index
from .explanation import Explanation
from .models.adapter import InputError, ModelAdapter
from .models.generative import Generation, is_generative
from .registry import explainers, targets
from .targets import for_classifiers, get_target
from .units import GRANULARITIES, build_units

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

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


def versions() -> dict[str, str]:
    import transformers

    from . import __version__

    return {"faithscope": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def resolve_targets(adapter: ModelAdapter, target: Any, logits: np.ndarray) -> tuple[int, ...]:
    """``None``/"predicted" -> argmax; "all" -> every class; int, label name, or a list."""
    n = adapter.num_labels
    if target is None or target == "predicted":
        return (int(np.argmax(logits)),)
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
    encs = [adapter.encode(ex.text, ex.pair, strict=strict) for ex in examples]
    logits = adapter.logits([e.ids[None, :] for e in encs],
                            None if not encs or encs[0].type_ids is None
                            else [e.type_ids[None, :] for e in encs])  # type: ignore[index]
    out = []
    for ex, enc, lg in zip(examples, encs, logits, strict=True):
        units = build_units(ex.text, ex.pair, enc.offsets, enc.sequence_ids, granularity,
                            truncated=enc.truncated)
        out.append(Prepared(example_id=ex.id, enc=enc, units=units,
                            targets=resolve_targets(adapter, target, lg[0]), logits=lg[0],
                            seed=seed, token_unit=token_unit_index(units, len(enc))))
    return out


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
) -> list[Explanation]:
    """Explain every input with every explainer; returns example-major Explanations.

    Each explainer sees all inputs at once, so perturbations and integration steps of many
    examples share the adapter's batches. ``target_fn``: a registered target name (default
    ``prob`` for classifiers, ``log_prob`` for generative models), or for generative models a
    ``(name, params)`` pair or a :class:`~faithscope.generation.scalarizers.Scalarizer`.

    Generative models only (see the module docstring): ``levels`` (coarse-to-fine segmentation
    levels), ``top_k`` / ``top_fraction`` (units refined per round), ``refine_by`` (``value``
    or ``abs``), ``replacement`` (text that replaces a removed unit; default: deleted) and
    ``references`` (outputs to explain instead of generating them). ``granularity``, ``target``
    and ``strict`` are for classifiers.
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
                                  replacement=replacement, references=references, seed=seed)
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
    results: list[list[Explanation]] = [[] for _ in items]
    for exp in exps:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        scores, infos = exp.attribute(model, items, fn)
        per = (time.perf_counter() - t0) / max(len(items), 1)
        made = explanations_of(
            exp, model, items, scores, infos, runtime_s=per, seed=seed,
            fields=lambda it: dict(
                example_id=it.example_id, text=it.enc.text, pair=it.enc.pair, units=it.units,
                targets=it.targets, target_labels=tuple(model.labels[t] for t in it.targets),
                probs=_softmax(it.logits)),
            granularity=granularity, target_fn=target_fn, model_id=model.model_id,
            model_revision=model.revision)
        for k, e in enumerate(made):
            results[k].append(e)
    return [e for row in results for e in row]


def explanations_of(exp: Explainer, model: Any, items: Sequence[Any],
                    scores: Sequence[np.ndarray], infos: Sequence[Mapping[str, Any]], *,
                    runtime_s: float, seed: int, fields: Any,
                    params: Mapping[str, Any] | None = None, **common: Any
                    ) -> list[Explanation]:
    """The one assembly of explainer results into Explanations, for every model kind
    (classifiers here, generated text in :mod:`faithscope.generation.explain`): ``fields(item)``
    gives an item's own fields (text, units, targets, ...), ``common`` the run's (model id,
    target, granularity, ...). What was used is recorded, not what was asked: the masking
    operator the model applied (:func:`~faithscope.explainers.base.applied_operator`) goes to
    ``info["operator"]``, and ``params`` may carry settings resolved while running."""
    op = getattr(exp, "mask", None)
    used = applied_operator(model, op) if op is not None and not exp.uses_model_internals \
        else None
    ver = versions()
    out = []
    for it, sc, info in zip(items, scores, infos, strict=True):
        out.append(Explanation(
            **fields(it), scores=np.asarray(sc, dtype=np.float32), explainer=exp.name,
            params=dict(exp.params() if params is None else params), seed=seed,
            runtime_s=runtime_s, info={**info, **({"operator": used} if used else {})},
            versions=ver, binary=type(exp).binary, **common))
    return out


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


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return (z / z.sum()).astype(np.float32)
