"""Layer-wise Relevance Propagation for transformers as modified gradients, scoped by a block.

LRP rules for a network of linear maps and elementwise or bilinear interactions can be written as
*modified gradients*: when every non-linearity's backward pass is replaced by its rule, the
relevance of any tensor ``t`` is ``t * grad(t)``. :func:`lrp_rules` patches a Hugging Face model
for the duration of a ``with`` block (instance-level ``forward`` overrides and a scoped entry of
transformers' attention interface) and always restores it, even on error:

* LayerNorm / RMSNorm: the normalising scale is detached, centring stays linear (LN rule).
* Elementwise activations (GELU, SiLU, tanh, ...; also the functional tanh of RoBERTa-style
  classification heads): identity rule, ``R_in = R_out``, realised as ``x * (act(x) / x).detach()``.
* Attention, ``rule="cp"`` (Ali et al. 2022, conservative propagation, AH rule): the attention
  probabilities are detached, so relevance flows through the values only. Gated MLPs
  (``act(gate(x)) * up(x)``): the gate is detached likewise.
* Attention, ``rule="attnlrp"`` (Achtibat et al. 2024): the uniform rule on the bilinear maps
  ``q k^T`` and ``A v`` (half of the relevance to each factor) and the softmax's own Jacobian
  (AttnLRP's softmax rule); gated MLPs use the uniform rule too.
* Linear layers keep their gradient (LRP-0): biases absorb relevance, so conservation,
  ``sum(R_input) = f(x)``, is exact for bias-free models and approximate otherwise.

Relevance is read at the embedding sum entering the first normalisation (word + position +
segment embeddings, BERT family) or at the word embeddings (Llama family, rotary positions).
The target's gradient w.r.t. the logits starts the propagation, so conservation holds for targets
linear in the logits (``logit``, ``contrast``); for ``prob``/``log_prob`` the softmax at the output
is propagated by its Jacobian, as AttnLRP does inside attention.

References: Bach et al. 2015; Ali et al. 2022, "XAI for Transformers: Better Explanations through
Conservative Propagation" (ICML); Achtibat et al. 2024, "AttnLRP: Attention-Aware Layer-Wise
Relevance Propagation for Transformers" (ICML).

Example
-------
>>> from faithscope.models.tiny import tiny_classifier
>>> from faithscope.targets import get_target
>>> adapter = tiny_classifier()
>>> enc = adapter.encode("a gorgeous film")
>>> rel, value = adapter.lrp_relevance([enc], [(1,)], get_target("logit"), rule="cp")
>>> rel[0].shape
(1, 5)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..errors import InputError
from ..targets import TargetFn

if TYPE_CHECKING:
    import torch
    from torch import nn
else:
    torch = lazy_import("torch")
    nn = lazy_import("torch.nn")

if TYPE_CHECKING:
    from .adapter import Encoded, ModelAdapter

RULES = ("cp", "attnlrp")
_ACTIVATIONS = {"GELUActivation", "NewGELUActivation", "GELUTanh", "FastGELUActivation",
                "QuickGELUActivation", "SiLUActivation", "PytorchGELUTanh", "GELU", "SiLU",
                "Tanh", "ReLU", "Sigmoid", "Mish", "AccurateGELUActivation", "ClippedGELUActivation",
                "LaplaceActivation", "ReLUSquaredActivation"}


def _identity_rule(act: Callable[[torch.Tensor], torch.Tensor]
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        y = act(x)
        with torch.no_grad():
            small = x.abs() < 1e-6
            ratio = torch.where(small, torch.full_like(x, 0.5), y / torch.where(small, 1.0, x))
        return x * ratio
    return forward


def _layer_norm(m: nn.LayerNorm) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        scale = torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + m.eps).detach()
        y = centred / scale
        if m.weight is not None:
            y = y * m.weight
        if m.bias is not None:
            y = y + m.bias
        return y
    return forward


def _rms_norm(m: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``gain * x / rms(x)`` with the scale detached. The per-feature gain is read from the
    module itself (its output on a vector of ones, whose rms is 1), so conventions other than
    ``weight * x`` are kept: Gemma's RMSNorm multiplies by ``1 + weight``."""
    eps = float(getattr(m, "variance_epsilon", getattr(m, "eps", 1e-6)))
    with torch.no_grad():
        ones = torch.ones(m.weight.shape[-1], dtype=m.weight.dtype, device=m.weight.device)
        gain = m(ones).float() * (1.0 + eps) ** 0.5

    def forward(x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps).detach()
        return (gain * (xf * scale)).to(x.dtype)
    return forward


def _gated_mlp(m: Any, rule: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        g = m.act_fn(m.gate_proj(x))
        u = m.up_proj(x)
        h = g.detach() * u if rule == "cp" else 0.5 * (g * u.detach()) + 0.5 * (g.detach() * u)
        return m.down_proj(h)
    return forward


def _tanh_head(m: Any) -> Callable[..., torch.Tensor]:
    """RoBERTa-style classification heads, whose tanh is functional: identity rule on it.
    A head with its own ``activation`` (ELECTRA's GELU) gets the identity rule on that."""
    act = _identity_rule(getattr(m, "activation", None) or torch.tanh)

    def forward(features: torch.Tensor, **_: Any) -> torch.Tensor:
        x = m.dense(m.dropout(features[:, 0, :]))
        return m.out_proj(m.dropout(act(x)))
    return forward


def _attention(rule: str, ours: set[int], counter: list[int]) -> Callable[..., Any]:
    def forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, scaling: float | None = None,
                dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if id(module) not in ours:  # another model in this process: its own eager attention
            own = sys.modules[type(module).__module__].eager_attention_forward
            return own(module, query, key, value, attention_mask, scaling=scaling,
                       dropout=dropout, **kwargs)
        counter[0] += 1
        rep = int(getattr(module, "num_key_value_groups", 1))
        if rep > 1:
            key = key.repeat_interleave(rep, dim=1)
            value = value.repeat_interleave(rep, dim=1)
        scaling = query.size(-1) ** -0.5 if scaling is None else scaling
        kt = key.transpose(2, 3)
        if rule == "attnlrp":
            scores = 0.5 * (query @ kt.detach() + query.detach() @ kt) * scaling
        else:
            scores = (query @ kt) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask[:, :, :, : key.shape[-2]]
        probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        if rule == "cp":
            out = probs.detach() @ value
        else:
            out = 0.5 * (probs @ value.detach()) + 0.5 * (probs.detach() @ value)
        return out.transpose(1, 2).contiguous(), probs
    return forward


@contextlib.contextmanager
def lrp_rules(model: nn.Module, rule: str = "cp") -> Iterator[list[int]]:
    """Within the block, gradients of ``model`` are LRP modified gradients (see module doc).

    Yields a one-element list counting the attention calls routed through the LRP rule, so that
    callers can refuse models whose attention bypasses transformers' attention interface.
    """
    if rule not in RULES:
        raise InputError(f"lrp rule must be one of {RULES}, got {rule!r}")
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    patched: list[nn.Module] = []
    counter = [0]
    ours = {id(m) for m in model.modules()}
    mapping = ALL_ATTENTION_FUNCTIONS._local_mapping
    had_eager = "eager" in mapping
    previous = mapping.get("eager")
    try:
        for m in model.modules():
            name = type(m).__name__
            fwd: Callable[..., Any] | None = None
            if isinstance(m, nn.LayerNorm):
                fwd = _layer_norm(m)
            elif name.endswith("RMSNorm") and hasattr(m, "weight"):
                fwd = _rms_norm(m)
            elif name in _ACTIVATIONS and not list(m.parameters()):
                fwd = _identity_rule(m.forward)
            elif all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
                fwd = _gated_mlp(m, rule)
            elif name.endswith("ClassificationHead") and all(
                    hasattr(m, a) for a in ("dense", "out_proj", "dropout")):
                fwd = _tanh_head(m)
            if fwd is not None:
                m.forward = fwd
                patched.append(m)
        mapping["eager"] = _attention(rule, ours, counter)
        yield counter
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)
        if had_eager:
            mapping["eager"] = previous
        else:
            mapping.pop("eager", None)


def _input_point(model: nn.Module) -> tuple[nn.Module, bool]:
    """The module whose input (True) or output (False) is the relevance read-out point."""
    emb = getattr(getattr(model, "base_model", model), "embeddings", None)
    for name in ("LayerNorm", "layer_norm", "norm"):
        ln = getattr(emb, name, None) if emb is not None else None
        if isinstance(ln, nn.Module):
            return ln, True
    return model.get_input_embeddings(), False  # type: ignore[operator]


def lrp_relevance(adapter: ModelAdapter, encs: Sequence[Encoded],
                  targets: Sequence[Sequence[int]], target_fn: TargetFn, *, rule: str = "cp"
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token relevances (targets x length, float64) and target values (targets,) per encoding.

    Every (encoding, target) pair is one row of a virtual batch run by the adapter's chunker.
    """
    model = adapter.model
    rows = [(e, k) for e in range(len(encs)) for k in range(len(targets[e]))]
    lengths = np.array([len(encs[e]) for e, _ in rows], dtype=np.int64)
    rel = [np.zeros((len(targets[e]), len(encs[e]))) for e in range(len(encs))]
    vals = [np.zeros(len(targets[e])) for e in range(len(encs))]
    point, pre = _input_point(model)
    captured: list[torch.Tensor] = []

    def leaf(t: torch.Tensor) -> torch.Tensor:
        h = t.detach().float().requires_grad_(True)
        captured.append(h)
        return h.to(t.dtype)

    def pre_hook(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (leaf(args[0]), *args[1:])

    def post_hook(_m: nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
        return leaf(out)

    def run(idx: np.ndarray) -> None:
        chosen = [rows[i] for i in idx]
        from .adapter import type_rows
        inputs = adapter.model_inputs([encs[e].ids for e, _ in chosen],
                                 type_rows([encs[e] for e, _ in chosen]))
        captured.clear()
        with torch.enable_grad():
            logits = adapter.logits_of(adapter.forward(inputs))
            tidx = torch.tensor([targets[e][k] for e, k in chosen], device=adapter.device)
            val = target_fn(logits.float(), tidx)
            (g,) = torch.autograd.grad(val.sum(), captured[0])
        r = (captured[0].detach() * g).sum(-1).double().cpu().numpy()
        v = val.detach().double().cpu().numpy()
        for j, (e, k) in enumerate(chosen):
            rel[e][k] = r[j, : len(encs[e])]
            vals[e][k] = v[j]
        adapter.stats.backward_rows += len(idx)

    handle = (point.register_forward_pre_hook(pre_hook) if pre
              else point.register_forward_hook(post_hook))
    try:
        with adapter.eager_attention(), lrp_rules(model, rule) as counter:
            adapter.run_chunks(adapter.plan_chunks(lengths), run)
    finally:
        handle.remove()
    if rows and counter[0] == 0:
        raise InputError(f"lrp: the attention of {type(model).__name__} does not go through "
                         "transformers' attention interface; LRP supports BERT-family encoders "
                         "and Llama-family decoders")
    return rel, vals
