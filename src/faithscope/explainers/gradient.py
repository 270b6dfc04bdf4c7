"""Gradient explainers: saliency, gradient x input, Integrated Gradients.

All three run through one adapter kernel (:meth:`ModelAdapter.embedding_gradients`) that
accumulates weighted gradients w.r.t. the word embeddings over a virtual batch of every
(example, target, step) row. Token scores are pooled into units (sum; L2 for saliency norms).
Each method's reduction of (gradient, embedding, baseline) to token scores is defined once,
in :meth:`token_scores` (numpy or torch alike), and used by classifiers, generated text
(:mod:`faithscope.generation.gradients`) and the attack metric (:mod:`faithscope.metrics.attack`,
which differentiates through it).

References: Simonyan et al. 2014 (saliency); Shrikumar et al. 2017 (gradient x input);
Sundararajan et al. 2017 (Integrated Gradients, completeness axiom).

Example
-------
>>> from faithscope.explainers import IntegratedGradients
>>> IntegratedGradients(n_steps=32, baseline="zero").params()["n_steps"]
32
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..models.adapter import InputError, ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from .base import Explainer, Prepared, pool_tokens
from .perturbation import Result
from .scoring import class_values

BASELINES = ("mask", "pad", "unk", "zero")
METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left",
           "riemann_right")


def integration_points(n: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Points in [0, 1] and weights (summing to 1) of an n-point quadrature rule: read-only
    arrays, computed once per (n, method) (Gauss-Legendre's take about 1 ms at n = 50)."""
    if method not in METHODS:
        raise InputError(f"integration method must be one of {METHODS}, got {method!r}")
    return _integration_points(n, method)


@functools.lru_cache(maxsize=64)
def _integration_points(n: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        x, w = (x + 1) / 2, w / 2
    elif method == "riemann_trapezoid":
        if n == 1:
            x, w = np.array([1.0]), np.array([1.0])
        else:
            x = np.linspace(0, 1, n)
            w = np.full(n, 1.0 / (n - 1))
            w[[0, -1]] /= 2
    else:
        offset = {"riemann_middle": 0.5, "riemann_left": 0.0, "riemann_right": 1.0}[method]
        x, w = (np.arange(n) + offset) / n, np.full(n, 1.0 / n)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


@dataclass(frozen=True, kw_only=True)
class _GradientMethod(Explainer):
    """A gradient method = a reduction of (gradient, embedding, baseline embedding) to one score
    per token, plus how token scores pool into units. Defined once here and used by every
    caller of the family: classifiers (below) and generated text
    (:mod:`faithscope.generation.gradients`)."""

    uses_model_internals = True
    pooling: ClassVar[str] = "sum"
    # the capability metrics look for (not this class): scores are a differentiable function
    # of the word embeddings (token_scores of gradients along path_points), e.g. for attacks
    differentiable: ClassVar[bool] = True

    def path_points(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Points and weights of the path integral from ``baseline`` (Integrated Gradients),
        or None for a gradient at the input."""
        return None

    def token_scores(self, grad: Any, emb: Any, baseline: Any = None, *,
                     eps: float = 0.0) -> Any:
        """Token scores (... x tokens) from gradients and embeddings (... x tokens x hidden):
        numpy arrays, or torch tensors kept differentiable (the attack metric differentiates
        through them). ``eps`` keeps a norm's derivative finite at a zero gradient."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class _LocalGradient(_GradientMethod):
    """One backward pass per target at the input."""

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        grads, xs, _, _ = adapter.embedding_gradients(
            [it.enc for it in items], [it.targets for it in items], target_fn)
        scores = [pool_tokens(it, self.token_scores(g, x[None]), self.pooling)
                  for it, g, x in zip(items, grads, xs, strict=True)]
        return scores, [{"forwards": len(it.targets), "backwards": len(it.targets)}
                        for it in items]


@explainers.register("gradient")
@dataclass(frozen=True, kw_only=True)
class Gradient(_LocalGradient):
    """Saliency: L2 norm of the gradient w.r.t. each token's embedding (L2-pooled per unit)."""

    pooling = "l2"

    def token_scores(self, grad: Any, emb: Any, baseline: Any = None, *,
                     eps: float = 0.0) -> Any:
        return ((grad * grad).sum(-1) + eps) ** 0.5


@explainers.register("gradient_x_input")
@dataclass(frozen=True, kw_only=True)
class GradientXInput(_LocalGradient):
    """Gradient x input: sum over the embedding dimension of gradient * embedding."""


    def token_scores(self, grad: Any, emb: Any, baseline: Any = None, *,
                     eps: float = 0.0) -> Any:
        return (grad * emb).sum(-1)


@explainers.register("integrated_gradients")
@dataclass(frozen=True, kw_only=True)
class IntegratedGradients(_GradientMethod):
    """Integrated Gradients on word embeddings from a baseline (special tokens kept).

    ``info["delta"]`` holds the completeness error sum(attributions) - (f(x) - f(baseline)).
    """

    n_steps: int = 50
    baseline: str = "pad"
    method: str = "gausslegendre"

    def validate(self) -> None:
        super().validate()
        if self.baseline not in BASELINES:
            raise InputError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        integration_points(1, self.method)

    def path_points(self) -> tuple[np.ndarray, np.ndarray] | None:
        return integration_points(self.n_steps, self.method)

    def token_scores(self, grad: Any, emb: Any, baseline: Any = None, *,
                     eps: float = 0.0) -> Any:
        """Path-averaged gradient x (input - baseline): sums to f(x) - f(baseline)."""
        return (grad * (emb - (0.0 if baseline is None else baseline))).sum(-1)

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        alphas, weights = integration_points(self.n_steps, self.method)
        encs = [it.enc for it in items]
        grads, xs, bs, _ = adapter.embedding_gradients(
            encs, [it.targets for it in items], target_fn,
            alphas=alphas.tolist(), weights=weights.tolist(), baseline=self.baseline)
        base_logits = self._baseline_logits(adapter, items)
        # f(input) and f(baseline) of every (example, target) pair in one call each
        n_t = [len(it.targets) for it in items]
        classes = np.array([t for it in items for t in it.targets], dtype=np.int64)
        cuts = np.cumsum(n_t)[:-1]
        f_in = np.split(class_values(np.repeat(np.stack([it.logits for it in items]), n_t, 0),
                                     classes, target_fn), cuts) if items else []
        f_base = np.split(class_values(np.repeat(np.stack(base_logits), n_t, 0), classes,
                                       target_fn), cuts) if items else []
        scores, infos = [], []
        for it, g, x, b, fx, fb in zip(items, grads, xs, bs, f_in, f_base, strict=True):
            tok = self.token_scores(g, x[None], b[None])
            delta = tok.sum(-1) - (fx - fb)
            scores.append(pool_tokens(it, tok))
            infos.append({"delta": delta.tolist(), "f_input": fx.tolist(),
                          "f_baseline": fb.tolist(),
                          "forwards": self.n_steps * len(it.targets) + 1,
                          "backwards": self.n_steps * len(it.targets)})
        return scores, infos

    def _baseline_logits(self, adapter: ModelAdapter, items: Sequence[Prepared]
                         ) -> list[np.ndarray]:
        logits = adapter.interpolated_logits([it.enc for it in items], alphas=(0.0,),
                                             baseline=self.baseline)
        return [lg[0] for lg in logits]
