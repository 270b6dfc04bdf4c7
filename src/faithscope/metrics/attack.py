"""Adversarial attacks on explanations, in embedding space (Ghorbani et al.'s top-k attack).

A perturbation ``delta`` of the word embeddings of the input's units (special tokens untouched),
bounded by ``||delta||_inf <= epsilon``, is optimised so that the explanation moves away from
the original one while the model's decision does not. With ``n(x) = |a(x)| / sum |a(x)|`` the
explanation's absolute scores as shares and ``K`` the original top-k units (by ``|a(x)|``),
the *top-k attack distance* is the share the top-k units lose:

    D(delta) = sum_{i in K} n_i(x) - sum_{i in K} n_i(x + delta)

* ``explanation_attack`` (objective ``unconstrained``): maximise ``D`` subject to the predicted
  class staying the same. The constraint is enforced by *rejection*: every iterate is scored
  before it is accepted; an iterate that flips the class is rolled back to the last accepted
  one and that example's step size is halved. The reported perturbation is the accepted
  iterate with the largest ``D``, so an unconstrained attack always keeps the prediction.
* ``explanation_attack_constrained``: maximise ``alpha * D - beta * (m(x) - m(x + delta))**2``
  with ``m`` the probability of the predicted class: no rejection, the penalty keeps the
  output probability close (the prediction may still flip: it is reported).

The explanation is differentiated through (double backpropagation, ``create_graph=True``), so
only explainers that are differentiable functions of the embeddings are attacked: ``gradient``
(L2 norms), ``gradient_x_input`` and ``integrated_gradients`` (same quadrature and baseline as
the explainer); rows of other explainers get NaN with the reason in the detail.

Defaults follow the thesis: epsilon 2, k = 15 % of the units (rounded down, at least 1), 500
steps, learning rate 0.1 halved every 200 steps, early stop once delta changes by less than
1e-5 (L-inf) for 20 consecutive steps, alpha = beta = 1. The update rule is Adam (per-example
moments; ``optimizer="sgd"`` for plain gradient descent, ``"sign"`` for signed steps); the
thesis says "gradient descent" without naming the rule, and with plain steps of 0.1 x a
gradient of order 1e-2 an L-inf budget of 2 is never reached.

Reported per example: ``rank_change`` (the row's value: share of the k top positions whose unit
changes), ``topk_sum_change`` (relative loss of the original top-k's share,
``D / sum_{i in K} n_i(x)``), ``probability_change`` (``|m(x) - m(x + delta)|``),
``kept_prediction``, and the top-k intersection, L-inf norm and steps run.

References: Ghorbani, Abid & Zou 2019, "Interpretation of Neural Networks is Fragile" (AAAI);
Sinha et al. 2021, "Perturbing Inputs for Fragile Interpretations in Deep NLP"; the attacks
of "Assessing the Interpretability of Large Language Models" (thesis).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film , really very fine acting"], ["gradient"])
>>> df = fs.evaluate(exps, model, metrics=[("explanation_attack", {"steps": 20})],
...                  random=False)
>>> d = df.loc[0, "detail"]
>>> d["kept_prediction"], d["linf"] <= 2.0, d["k"]
(True, True, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._lazy import lazy_import
from ..explainers.base import Explainer, Prepared, pool_by_matrix
from ..explanation import Explanation
from ..models.adapter import InputError, ModelAdapter
from ..registry import metrics
from ..targets import TargetFn, get_target
from .analysis import Analysis, Values

if TYPE_CHECKING:
    import pandas as pd
    import torch
else:
    pd = lazy_import("pandas")
    torch = lazy_import("torch")

OBJECTIVES = ("unconstrained", "constrained")
OPTIMIZERS = ("adam", "sgd", "sign")


def supported(explainer: Explainer) -> bool:
    """Explainers whose scores are a differentiable function of the word embeddings (they
    declare ``differentiable`` and define ``token_scores`` and ``path_points``: gradient,
    gradient x input, Integrated Gradients)."""
    return bool(getattr(explainer, "differentiable", False)) and \
        hasattr(explainer, "token_scores") and hasattr(explainer, "path_points")
_TINY = 1e-12


def top_k_size(n_units: int, fraction: float = 0.15) -> int:
    """k = floor(fraction * n), at least 1 (0 for an empty input)."""
    return 0 if n_units == 0 else max(1, min(n_units, math.floor(fraction * n_units + 1e-9)))


@dataclass(frozen=True)
class AttackResult:
    """One attacked example: the perturbation (tokens x hidden) and what it changed."""

    example_id: str
    objective: str
    k: int
    top_before: tuple[int, ...]
    top_after: tuple[int, ...]
    rank_change: float
    topk_intersection: float
    topk_sum_change: float
    probability_change: float
    kept_prediction: bool
    linf: float
    steps: int
    rejected: int
    scores_before: np.ndarray
    scores_after: np.ndarray
    delta: np.ndarray

    def detail(self) -> dict[str, Any]:
        return {"objective": self.objective, "k": self.k,
                "rank_change": self.rank_change, "topk_intersection": self.topk_intersection,
                "topk_sum_change": _finite(self.topk_sum_change),
                "probability_change": self.probability_change,
                "kept_prediction": self.kept_prediction, "linf": self.linf,
                "steps": self.steps, "rejected": self.rejected,
                "top_before": list(self.top_before), "top_after": list(self.top_after)}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class _Scorer:
    """Differentiable unit scores of a supported explainer at word embeddings ``z``."""

    def __init__(self, adapter: ModelAdapter, explainer: Explainer, items: Sequence[Prepared],
                 target_fn: TargetFn, width: int) -> None:
        if not supported(explainer):
            raise InputError(f"{explainer.name} is not differentiable in the embeddings: "
                             "attacks support gradient, gradient_x_input, integrated_gradients")
        self.adapter, self.explainer, self.fn = adapter, explainer, target_fn
        self.encs = [it.enc for it in items]
        dev = adapter.device
        self.targets = torch.tensor([it.targets[0] for it in items], device=dev)
        self.pool = []  # units x width, one per example
        for it in items:
            p = torch.zeros((it.n_units, width), device=dev)
            for u, unit in enumerate(it.units):
                p[u, list(unit.tokens)] = 1.0
            self.pool.append(p)
        points = explainer.path_points()  # type: ignore[attr-defined]
        self.on_path = points is not None
        if points is not None:
            a, w = points
            self.alphas = torch.tensor(a, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
            self.weights = torch.tensor(w, dtype=torch.float32, device=dev).view(1, -1, 1, 1)

    def __call__(self, z: torch.Tensor, b: torch.Tensor, create_graph: bool
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(unit scores per example, logits at z)."""
        ad = self.adapter
        logits = ad.embedding_logits(self.encs, z)
        exp: Any = self.explainer  # differentiable (see :func:`supported`)
        if self.on_path:
            r, s = z.shape[0], self.alphas.shape[1]
            path = (b[:, None] + self.alphas * (z - b)[:, None]).reshape(r * s, *z.shape[1:])
            lg = ad.embedding_logits([e for e in self.encs for _ in range(s)], path)
            f = self.fn(lg, self.targets.repeat_interleave(s))
            (g,) = torch.autograd.grad(f.sum(), path, create_graph=create_graph)
            g = (g.view(r, s, *z.shape[1:]) * self.weights).sum(1)  # the quadrature
        else:
            f = self.fn(logits, self.targets)
            (g,) = torch.autograd.grad(f.sum(), z, create_graph=create_graph)
        # the explainer's own reduction and pooling (explainers/gradient.py, explainers/base.py)
        tok = exp.token_scores(g, z, b, eps=_TINY)
        return [pool_by_matrix(t, p, exp.pooling) for p, t in zip(self.pool, tok, strict=True)
                ], logits


def _shares(scores: list[torch.Tensor], tops: list[np.ndarray]) -> torch.Tensor:
    out = []
    for s, top in zip(scores, tops, strict=True):
        a = s.abs()
        out.append(a[torch.as_tensor(top, dtype=torch.long, device=a.device)].sum()
                   / (a.sum() + _TINY))
    return torch.stack(out)


def attack(adapter: ModelAdapter, explainer: Explainer, items: Sequence[Prepared],
           target_fn: TargetFn, *, objective: str = "unconstrained", epsilon: float = 2.0,
           top_fraction: float = 0.15, steps: int = 500, lr: float = 0.1,
           halve_every: int = 200, tol: float = 1e-5, patience: int = 20, alpha: float = 1.0,
           beta: float = 1.0, optimizer: str = "adam") -> list[AttackResult]:
    """Attack the explanations of ``items`` (their first target); see the module docstring.
    Examples are optimised together in chunks that fit the adapter's batch size."""
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not supported(explainer):
        raise InputError(f"{explainer.name} is not differentiable in the embeddings: "
                         "attacks support gradient, gradient_x_input, integrated_gradients")
    points = explainer.path_points()  # type: ignore[attr-defined]
    per_row = 1 if points is None else len(points[0])
    size = max(1, (adapter.max_batch_size or 1) // per_row)  # resolved when the adapter is made
    out: list[AttackResult] = []
    kw = dict(objective=objective, epsilon=epsilon, top_fraction=top_fraction, steps=steps,
              lr=lr, halve_every=halve_every, tol=tol, patience=patience, alpha=alpha,
              beta=beta, optimizer=optimizer)
    with adapter.eager_attention(), torch.enable_grad():
        for start in range(0, len(items), size):
            out += _attack_chunk(adapter, explainer, list(items[start:start + size]),
                                 target_fn, **kw)  # type: ignore[arg-type]
    return out


def _attack_chunk(adapter: ModelAdapter, explainer: Explainer, items: list[Prepared],
                  target_fn: TargetFn, *, objective: str, epsilon: float, top_fraction: float,
                  steps: int, lr: float, halve_every: int, tol: float, patience: int,
                  alpha: float, beta: float, optimizer: str) -> list[AttackResult]:
    on_path = explainer.path_points() is not None  # type: ignore[attr-defined]
    baseline = getattr(explainer, "baseline", None) if on_path else None
    x, b = adapter.embedding_inputs([it.enc for it in items], baseline)
    rows, width, _ = x.shape
    dev = x.device
    mask = torch.zeros((rows, width, 1), device=dev)
    for r, it in enumerate(items):
        mask[r, : len(it.enc), 0] = torch.from_numpy(it.token_unit >= 0).float().to(dev)
    score = _Scorer(adapter, explainer, items, target_fn, width)
    z0 = x.clone().requires_grad_(True)
    s0_t, logits0 = score(z0, b, create_graph=False)
    s0 = [s.detach().double().cpu().numpy() for s in s0_t]
    p0 = torch.softmax(logits0.detach(), -1)
    cls = p0.argmax(-1)
    m0 = p0.gather(1, cls[:, None])[:, 0]
    ks = [top_k_size(it.n_units, top_fraction) for it in items]
    tops = [np.argsort(-np.abs(s), kind="stable")[:k] for s, k in zip(s0, ks, strict=True)]
    share0 = _shares([s.detach() for s in s0_t], tops)

    delta = torch.zeros_like(x)
    prev = delta.clone()
    best = delta.clone()
    best_obj = torch.full((rows,), -math.inf, device=dev)
    m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
    t_row = torch.zeros(rows, device=dev)
    scale = torch.ones(rows, device=dev)
    still = torch.zeros(rows, dtype=torch.long, device=dev)
    active = torch.ones(rows, dtype=torch.bool, device=dev)
    n_steps = torch.zeros(rows, dtype=torch.long, device=dev)
    rejected = torch.zeros(rows, dtype=torch.long, device=dev)
    for t in range(steps):
        if not bool(active.any()):
            break
        lr_t = lr * 0.5 ** (t // halve_every)
        d = delta.clone().requires_grad_(True)
        scores, logits = score(x + d * mask, b, create_graph=True)
        dist = share0 - _shares(scores, tops)
        m = torch.softmax(logits, -1).gather(1, cls[:, None])[:, 0]
        obj = dist if objective == "unconstrained" else alpha * dist - beta * (m0 - m) ** 2
        ok = (logits.detach().argmax(-1) == cls) | (objective == "constrained")
        upd = active & ok
        grad = None
        if bool(upd.any()):
            (grad,) = torch.autograd.grad(-(obj * upd.float()).sum(), d)
        with torch.no_grad():
            o = obj.detach()
            better = ok & (o > best_obj)
            best[better], best_obj[better] = delta[better], o[better]
            new = delta.clone()
            reject = active & ~ok  # unconstrained only: roll back to the last accepted iterate
            new[reject] = prev[reject]
            scale[reject] *= 0.5
            rejected += reject.long()
            if grad is not None:
                if optimizer == "adam":
                    t_row += upd.float()
                    u = upd.float().view(-1, 1, 1)
                    m1.mul_(1 - 0.1 * u).add_(0.1 * u * grad)
                    m2.mul_(1 - 0.001 * u).add_(0.001 * u * grad * grad)
                    tc = t_row.clamp(min=1).view(-1, 1, 1)
                    step = (m1 / (1 - 0.9**tc)) / ((m2 / (1 - 0.999**tc)).sqrt() + 1e-8)
                else:
                    step = grad.sign() if optimizer == "sign" else grad
                cand = (delta - lr_t * scale.view(-1, 1, 1) * step).clamp(-epsilon, epsilon)
                cand = cand * mask
                prev[upd] = delta[upd]
                new[upd] = cand[upd]
            change = (new - delta).abs().amax(dim=(1, 2))
            n_steps += active.long()
            still = torch.where(active & (change < tol), still + 1, torch.zeros_like(still))
            active &= still < patience
            delta = new
    with torch.enable_grad():
        zb = (x + best * mask).requires_grad_(True)
        s1_t, logits1 = score(zb, b, create_graph=False)
    s1 = [s.detach().double().cpu().numpy() for s in s1_t]
    p1 = torch.softmax(logits1.detach(), -1)
    share1 = _shares([s.detach() for s in s1_t], tops)
    out = []
    for r, it in enumerate(items):
        k = ks[r]
        after = np.argsort(-np.abs(s1[r]), kind="stable")[:k]
        sh0, sh1 = float(share0[r]), float(share1[r])
        out.append(AttackResult(
            example_id=it.example_id, objective=objective, k=k,
            top_before=tuple(int(i) for i in tops[r]), top_after=tuple(int(i) for i in after),
            rank_change=float(np.mean(tops[r] != after)) if k else math.nan,
            topk_intersection=len(set(tops[r].tolist()) & set(after.tolist())) / k if k
            else math.nan,
            topk_sum_change=(sh0 - sh1) / sh0 if sh0 > 0 else math.nan,
            probability_change=abs(float(m0[r]) - float(p1[r, cls[r]])),
            kept_prediction=bool(p1[r].argmax() == cls[r]),
            linf=float(best[r].abs().max()), steps=int(n_steps[r]), rejected=int(rejected[r]),
            scores_before=s0[r], scores_after=s1[r],
            delta=best[r, : len(it.enc)].cpu().numpy()))
    return out


@dataclass(frozen=True, kw_only=True)
class _Attack(Analysis):
    family = "adversarial"
    higher_is_better = False
    bounds = (0.0, 1.0)
    reference = "Ghorbani et al. 2019 (Interpretation of Neural Networks is Fragile)"
    objective: ClassVar[str] = "unconstrained"
    by: str = "abs"
    epsilon: float = 2.0
    top_fraction: float = 0.15
    steps: int = 500
    lr: float = 0.1
    halve_every: int = 200
    tol: float = 1e-5
    patience: int = 20
    alpha: float = 1.0
    beta: float = 1.0
    optimizer: str = "adam"

    def validate(self) -> None:
        super().validate()
        for name in ("steps", "halve_every", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{self.name}: {name} must be a positive integer, got {v!r}")
        for name in ("epsilon", "lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"{self.name}: {name} must be positive")
        if not 0 < self.top_fraction <= 1:
            raise InputError(f"{self.name}: top_fraction must be in (0, 1]")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"{self.name}: optimizer must be one of {OPTIMIZERS}")

    def analyse(self, adapter: ModelAdapter, explainer: Explainer,
                explanations: Sequence[Explanation], items: Sequence[Prepared]) -> Values:
        if not supported(explainer):
            reason = (f"{explainer.name} is not differentiable in the embeddings; attacks "
                      "support gradient, gradient_x_input and integrated_gradients")
            return [(math.nan, {"objective": self.objective, "skipped": reason})
                    for _ in explanations]
        kw = {k: v for k, v in self.params().items() if k != "by"}
        results = attack(adapter, explainer, items, get_target(explanations[0].target_fn),
                         objective=self.objective, **kw)
        return [(r.rank_change, r.detail()) for r in results]


# one metric class, two registered presets: the unconstrained attack and the one that keeps
# the prediction's probability
ExplanationAttack = metrics.preset("explanation_attack", _Attack, objective="unconstrained")
ExplanationAttackConstrained = metrics.preset("explanation_attack_constrained", _Attack,
                                              objective="constrained")


def attack_table(df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The attack rows of ``df`` summarised per explainer and objective: mean (95 % bootstrap
    CI) of RankChange, TopkSumChange and ProbabilityChange, and the share of attacks that
    kept the prediction."""
    import json

    from .stats import bootstrap_ci

    names = ("explanation_attack", "explanation_attack_constrained")
    sub = df[df["metric"].isin(names)]
    rows = []
    for (explainer, metric), g in sub.groupby(["explainer", "metric"], sort=True):
        ds = [json.loads(d) if isinstance(d, str) else dict(d) for d in g["detail"]]
        ds = [d for d in ds if "skipped" not in d]
        if not ds:
            continue
        row: dict[str, Any] = {"explainer": explainer, "metric": metric,
                               "objective": ds[0]["objective"], "n": len(ds)}
        for q in ("rank_change", "topk_sum_change", "probability_change", "kept_prediction"):
            v = np.array([np.nan if d.get(q) is None else float(d[q]) for d in ds])
            mean, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
            row[q], row[f"{q}_ci_low"], row[f"{q}_ci_high"] = mean, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
