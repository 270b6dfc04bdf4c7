"""``lrp``: Layer-wise Relevance Propagation for BERT-family encoders and Llama-family decoders.

The kernel asks the adapter for token relevances under the LRP rules of
:mod:`faithscope.models.lrp` (one backward pass per example and target, all rows in one virtual
batch) and sums them into units. ``rule="cp"`` is conservative propagation (Ali et al. 2022:
LayerNorm and attention-head rules); ``rule="attnlrp"`` is AttnLRP (Achtibat et al. 2024: uniform
rule on ``q k^T`` and ``A v``, softmax Jacobian, identity rule on activations).

``info`` per example: ``relevance_sum`` (all tokens, special tokens included), ``target_value``
and ``conservation_error`` (their difference) per target. The relevance sum equals the target value
for bias-free models and targets linear in the logits; biases absorb the rest.

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> exp = fs.explain(tiny_classifier(), "a gorgeous film", "lrp", target_fn="logit")[0]
>>> exp.scores.shape, exp.params["rule"]
((1, 3), 'cp')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models.adapter import InputError, ModelAdapter
from ..models.lrp import RULES
from ..registry import explainers
from ..targets import TargetFn
from .base import Explainer, Prepared, pool_tokens
from .perturbation import Result


@explainers.register("lrp")
@dataclass(frozen=True, kw_only=True)
class LRP(Explainer):
    """LRP with conservative LayerNorm/attention rules (``cp``) or AttnLRP (``attnlrp``)."""

    uses_model_internals = True
    rule: str = "cp"

    def validate(self) -> None:
        super().validate()
        if self.rule not in RULES:
            raise InputError(f"lrp: rule must be one of {RULES}, got {self.rule!r}")

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        rel, vals = adapter.lrp_relevance([it.enc for it in items],
                                          [it.targets for it in items], target_fn,
                                          rule=self.rule)
        scores, infos = [], []
        for it, r, v in zip(items, rel, vals, strict=True):
            scores.append(pool_tokens(it, r))
            total = r.sum(-1)
            infos.append({"relevance_sum": total.tolist(), "target_value": v.tolist(),
                          "conservation_error": (total - v).tolist(),
                          "forwards": len(it.targets), "backwards": len(it.targets)})
        return scores, infos
