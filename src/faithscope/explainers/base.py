"""The explainer contract and the batched perturbation engine shared by all removal methods.

An explainer is a frozen dataclass of keyword-only hyper-parameters with one kernel,
:meth:`Explainer.attribute`, which receives *all* examples of a call at once and returns one
``targets x units`` score matrix per example. Perturbation kernels only write binary unit masks
(True = unit present); :func:`score_masks` turns the masks of every example into model inputs with
the chosen masking operator and scores them in one virtual batch through the adapter.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import chain
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._lazy import lazy_import
from ..explanation import Explanation
from ..models.adapter import Encoded, InputError, ModelAdapter
from ..targets import TargetFn
from ..units import Unit
from .scoring import OPERATORS
from .scoring import score_masks as score_masks  # re-exported: the engine's one kernel
from .scoring import target_values as target_values
from .scoring import unique_rows as unique_rows

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

_FALLBACK = {"mask": ("mask", "unk", "pad"), "unk": ("unk", "pad"), "pad": ("pad",)}


def applied_operator(adapter: object, operator: str) -> str:
    """The masking operator ``operator`` actually applies on ``adapter``: its own answer when it
    has one (``mask_operator``: prompted decoders and generated text delete), else the token a
    classifier's ``mask`` falls back to (``unk``, ``pad``) when its tokenizer has no mask token.
    Recorded in every explanation's ``info["operator"]`` (what was used, not what was asked)."""
    own = getattr(adapter, "mask_operator", None)
    if callable(own):
        return str(own(operator))
    tok = getattr(adapter, "tokenizer", None)
    if operator not in _FALLBACK or tok is None:
        return operator
    return next((n for n in _FALLBACK[operator] if getattr(tok, f"{n}_token_id", None)
                 is not None), operator)


@dataclass(frozen=True)
class Prepared:
    """One example ready to explain: encoding, units, targets, model output on the input."""

    example_id: str
    enc: Encoded
    units: tuple[Unit, ...]
    targets: tuple[int, ...]
    logits: np.ndarray
    seed: int
    token_unit: np.ndarray = field(repr=False)  # unit index of each token, -1 for none

    @property
    def n_units(self) -> int:
        return len(self.units)

    def rng(self, salt: str = "") -> np.random.Generator:
        return example_rng(self.seed, self.example_id, salt)


def example_rng(seed: int, example_id: str, salt: str = "") -> np.random.Generator:
    """A generator that depends only on (seed, example id, salt): batch-order invariant."""
    key = zlib.crc32(f"{example_id}\0{salt}".encode())
    return np.random.default_rng([seed, key])


def token_unit_index(units: Sequence[Unit], n_tokens: int) -> np.ndarray:
    """Each token position's unit index, -1 for tokens in no unit (units never overlap)."""
    out = np.full(n_tokens, -1, dtype=np.int64)
    lens = [len(u.tokens) for u in units]
    total = sum(lens)
    if total:
        pos = np.fromiter(chain.from_iterable(u.tokens for u in units), np.int64, total)
        out[pos] = np.repeat(np.arange(len(units)), lens)
    return out


@dataclass(frozen=True, kw_only=True)
class Explainer:
    """Base class: subclasses set ``name`` and implement :meth:`attribute`."""

    name: ClassVar[str] = ""
    uses_model_internals: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    needs_generation: ClassVar[bool] = False  # needs a model that generates text
    # True: scores are a 0/1 selection of units (Explanation.binary), scored as a set
    binary: ClassVar[bool] = False
    # the budget field that may be "auto" (adaptive precision, :mod:`.adaptive`), if any
    budget_field: ClassVar[str | None] = None

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self) -> None:
        for f in fields(self):
            if f.name.startswith("n_") or f.name in ("max_evals",):
                value = getattr(self, f.name)
                if value == "auto" and f.name == self.budget_field:
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise InputError(f"{self.name}: {f.name} must be a positive integer, "
                                     f"got {value!r}")
        op = getattr(self, "mask", None)
        if op is not None and op not in OPERATORS:
            raise InputError(f"{self.name}: mask must be one of {OPERATORS}, got {op!r}")

    def attribute(
        self, adapter: ModelAdapter, items: Sequence[Prepared], target_fn: TargetFn
    ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        raise NotImplementedError


GROUP_ROWS = 65536  # model rows an explain call plans per group of items (see item_groups)


def estimated_rows(exp: Explainer, item: Any) -> int:
    """About how many model rows ``exp`` runs for ``item`` (a :class:`Prepared` or any item with
    ``n_units`` and ``targets``), for :func:`item_groups`: the explainer's own
    ``rows_for(item)`` when it has one, else from its budget: ``n_samples`` (or, when that is
    not a number, ``max_samples``), ``max_evals``, ``n_permutations`` x (units + 1),
    ``n_steps`` x targets, ``oversampling`` x units, the members' sum for an ensemble, and
    otherwise 16 x (units + 1) (leave-one-out, MExGen's L-SHAP, gradients).

    >>> from faithscope.explainers.perturbation import Lime
    >>> from types import SimpleNamespace as NS
    >>> estimated_rows(Lime(n_samples=300), NS(n_units=5, targets=(1,)))
    300
    """
    own = getattr(exp, "rows_for", None)
    if callable(own):
        return max(1, int(own(item)))
    built = getattr(exp, "built", None)
    if callable(built):
        return sum(estimated_rows(m, item) for m in built())
    d, t = int(item.n_units), max(len(item.targets), 1)
    p = exp.params()

    def num(name: str) -> float | None:
        v = p.get(name)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def budget(name: str) -> float | None:  # a number, or the cap of an adaptive budget
        return None if name not in p else num(name) if num(name) is not None \
            else num("max_samples")

    samples, evals, perms = budget("n_samples"), num("max_evals"), budget("n_permutations")
    steps, over = num("n_steps"), num("oversampling")
    if samples is not None:
        return max(1, int(samples))
    if evals is not None:
        return max(1, int(evals))
    if perms is not None:
        return int(perms) * (d + 1)
    if steps is not None:
        return int(steps) * t + 1
    if over is not None:
        return int(over * d) + 1
    return 16 * (d + 1)


def item_groups(exp: Explainer | Sequence[Explainer], items: Sequence[Any],
                max_rows: int = GROUP_ROWS) -> list[slice]:
    """Consecutive groups of ``items`` whose :func:`estimated_rows` (summed over ``exp``, one
    explainer or several that explain the same items) sum to at most ``max_rows`` (an item
    above it is a group of its own). Explaining group by group keeps memory flat in the number
    of items (the masks, ids and values of one group at a time) while each group is still a
    large virtual batch; randomness is keyed per example, so the results are those of one call
    over all items.

    >>> from faithscope.explainers.perturbation import Lime
    >>> from types import SimpleNamespace as NS
    >>> item_groups(Lime(n_samples=100), [NS(n_units=3, targets=(0,))] * 5, max_rows=250)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if max_rows < 1:
        raise InputError(f"max_rows must be >= 1, got {max_rows!r}")
    exps = [exp] if isinstance(exp, Explainer) else list(exp)
    groups, start, total = [], 0, 0
    for i, it in enumerate(items):
        rows = sum(estimated_rows(e, it) for e in exps)
        if i > start and total + rows > max_rows:
            groups.append(slice(start, i))
            start, total = i, 0
        total += rows
    if start < len(items):
        groups.append(slice(start, len(items)))
    return groups


def attribute_grouped(exp: Explainer, adapter: Any, items: Sequence[Any], target_fn: Any,
                      max_rows: int | None = None
                      ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """``exp.attribute`` over :func:`item_groups` of ``items``: the analyses that re-run an
    explainer (layer randomization, sensitivity, sampling stability) keep memory bounded by a
    group as :func:`faithscope.explain` does; the results are those of one call.
    ``max_rows``: default :data:`GROUP_ROWS`."""
    scores: list[np.ndarray] = []
    infos: list[dict[str, Any]] = []
    for group in item_groups(exp, items, GROUP_ROWS if max_rows is None else max_rows):
        sc, inf = exp.attribute(adapter, items[group], target_fn)
        scores += list(sc)
        infos += list(inf)
    return scores, infos


def pool_tokens(item: Prepared, token_scores: np.ndarray, how: str = "sum") -> np.ndarray:
    """Token scores (targets x tokens) -> unit scores (targets x units) by sum or L2 norm."""
    return pool_by_index(token_scores, item.token_unit, item.n_units, how)


def pool_by_index(token_scores: np.ndarray, token_unit: np.ndarray, n_units: int,
                  how: str = "sum") -> np.ndarray:
    """The one pooling of token scores into units: ``token_unit`` is each token's unit index
    (-1 for none); sum, or L2 norm with ``how="l2"``."""
    ts = np.asarray(token_scores, dtype=np.float64)
    out = np.zeros((ts.shape[0], n_units), dtype=np.float64)
    tu = np.asarray(token_unit)
    sel = tu >= 0
    if how == "l2":
        np.add.at(out.T, tu[sel], (ts[:, sel] ** 2).T)
        return np.sqrt(out)
    np.add.at(out.T, tu[sel], ts[:, sel].T)
    return out


def pool_by_matrix(token_scores: Any, pool: Any, how: str = "sum") -> Any:
    """:func:`pool_by_index` as a product with a units x tokens 0/1 matrix ``pool`` (numpy
    arrays, or torch tensors kept differentiable): sum, or L2 norm with ``how="l2"``."""
    return (pool @ (token_scores * token_scores)) ** 0.5 if how == "l2" else pool @ token_scores


def full_masks(item: Prepared, n: int = 1, value: bool = True) -> np.ndarray:
    return np.full((n, item.n_units), value, dtype=bool)


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
    from ..provenance import versions

    ver = versions()
    used_params = exp.params() if params is None else params
    out = []
    for it, sc, info in zip(items, scores, infos, strict=True):
        info = dict(info)
        se = info.pop("se", None)
        out.append(Explanation(
            **fields(it), scores=np.asarray(sc, dtype=np.float32), explainer=exp.name,
            params=dict(used_params), seed=seed,
            runtime_s=runtime_s, info={**info, **({"operator": used} if used else {})},
            versions=ver, binary=type(exp).binary,
            errors=None if se is None else np.asarray(se, dtype=np.float32), **common))
    return out
