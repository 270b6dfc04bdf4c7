"""Attributed quantities ("targets"): functions of the logits explained by every explainer.

Each target maps ``logits`` (rows x classes, a torch tensor) and the class index of each row to
one scalar per row. They are differentiable, so gradient explainers and perturbation explainers
explain the same number. Reference: Inseq's attributed-function design (Sarti et al., 2023).

The same registry holds the targets of generated text (the attributed quantity of a generative
LM, :mod:`faithscope.generation.scalarizers`): classes that declare ``for_generation``; the
ones that also have a classifier meaning (``log_prob``, ``contrast``) carry it as ``classifier_target``.

Example
-------
>>> import torch
>>> from faithscope.targets import get_target
>>> logits = torch.tensor([[0.0, 2.0]])
>>> round(float(get_target("prob")(logits, torch.tensor([1]))[0]), 4)
0.8808
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._lazy import lazy_import
from .registry import targets

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

TargetFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def _pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return values.gather(-1, index.long().view(-1, 1)).squeeze(-1)


@targets.register("logit")
def logit(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The raw logit of the target class."""
    return _pick(logits.float(), index)


@targets.register("prob")
def prob(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the target class (ERASER's and ferret's quantity)."""
    return _pick(torch.softmax(logits.float(), dim=-1), index)


def log_prob(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Log-softmax of the target class (registered as ``log_prob``, the classifier meaning of
    the generation target :class:`~faithscope.generation.scalarizers.LogProb`)."""
    return _pick(torch.log_softmax(logits.float(), dim=-1), index)


def contrast(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Log-odds of the target against all other classes: logit_t - logsumexp(other logits)
    (registered as ``contrast``, the classifier meaning of the generation target
    :class:`~faithscope.generation.scalarizers.Contrast`)."""
    x = logits.float()
    t = _pick(x, index)
    others = x.scatter(-1, index.long().view(-1, 1), float("-inf"))
    return t - torch.logsumexp(others, dim=-1)


def for_generation(name: str) -> bool:
    """Whether the registered target ``name`` is a target of generated text."""
    return bool(getattr(targets.get(name), "for_generation", False))


def for_classifiers(name: str) -> bool:
    """Whether the registered target ``name`` applies to a classifier's logits."""
    entry = targets.get(name)
    return not getattr(entry, "for_generation", False) or \
        getattr(entry, "classifier_target", None) is not None


def get_target(name: str) -> TargetFn:
    """The function of a classifier's logits registered as ``name``."""
    entry = targets.get(name)
    if getattr(entry, "for_generation", False):
        fn = getattr(entry, "classifier_target", None)
        if fn is None:
            from .errors import InputError

            raise InputError(f"target {name!r} applies to generated text (a generative model), "
                             "not to a classifier")
        return fn
    out: TargetFn = entry  # type: ignore[assignment]
    return out

