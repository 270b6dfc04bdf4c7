"""Sampling stability: does a stochastic explainer give the same explanation under another seed?

LIME, KernelSHAP, Shapley sampling and the other sampling explainers draw their perturbations
from a generator keyed by (seed, example id); two seeds give two estimates of the same
quantity. ``sampling_stability`` runs the explainer again on the same examples, targets and
units with the sampling seed ``seed + offset`` and compares the two score vectors: the value is
Spearman's rank correlation of the signed scores (``similarity``: ``kendall`` for Kendall's
tau-b, ``jaccard`` for the Jaccard index of the two top-``fraction`` sets), and the detail holds
all three. A deterministic explainer (gradients, leave-one-out, attention, ...) is not run again:
its value is 1.0 by construction and its detail says ``"deterministic": true``.

This is the "within model" agreement of :mod:`faithscope.metrics.stability` (Bogaert et al.
2024, the explainer's own noise floor) as a per-explanation metric, so that audits and studies
score it like any other metric.

Reference: Bogaert et al. 2024, "Explanation sensitivity to the randomness of large language
models"; Zhou et al. 2021, "S-LIME" (the instability of sampling explainers).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film , really", "a dull mess"],
...                   [("lime", {"n_samples": 16}), "gradient"])
>>> df = fs.evaluate(exps, model, metrics=["sampling_stability"], random=False)
>>> df.groupby("explainer")["value"].apply(lambda v: bool(v.between(-1, 1).all())).to_dict()
{'gradient': True, 'lime': True}
>>> bool(df[df.explainer == "gradient"]["detail"].iloc[0]["deterministic"])
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..explainers.base import Explainer, Prepared, attribute_grouped
from ..explanation import Explanation
from ..models.adapter import InputError, ModelAdapter
from ..registry import metrics
from ..targets import get_target
from .analysis import Analysis, Values, similarity
from .base import n_top

MEASURES = ("spearman", "kendall", "jaccard")


@metrics.register("sampling_stability")
@dataclass(frozen=True, kw_only=True)
class SamplingStability(Analysis):
    family = "stability"
    higher_is_better = True
    bounds = (-1.0, 1.0)
    reference = "Bogaert et al. 2024 (within-model agreement); Zhou et al. 2021 (S-LIME)"
    offset: int = 1  # the second run's sampling seed is the explanation's seed + offset
    similarity: str = "spearman"
    fraction: float = 0.2  # top-k share for the Jaccard index (at least one unit)

    def validate(self) -> None:
        super().validate()
        if self.similarity not in MEASURES:
            raise InputError(f"{self.name}: similarity must be one of {MEASURES}, "
                             f"got {self.similarity!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 1:
            raise InputError(f"{self.name}: offset must be a positive integer")

    def analyse(self, adapter: ModelAdapter, explainer: Explainer,
                explanations: Sequence[Explanation], items: Sequence[Prepared]) -> Values:
        if not items:
            return []
        if not explainer.stochastic:
            return [(1.0, {"deterministic": True, "similarity": self.similarity})
                    for _ in explanations]
        fn = get_target(explanations[0].target_fn)
        again = [replace(it, seed=it.seed + self.offset) for it in items]
        scores, _ = attribute_grouped(explainer, adapter, again, fn)
        out: list[tuple[float, dict[str, Any]]] = []
        for e, it, sc in zip(explanations, again, scores, strict=True):
            a = np.asarray(e.scores[0], dtype=np.float64)
            b = np.asarray(sc, dtype=np.float64)[0]
            k = n_top(self.fraction, len(a))
            vals = {m: similarity(a, b, m, k=k, by=self.by) for m in MEASURES}
            value = vals[self.similarity]
            out.append((value if math.isfinite(value) else math.nan,
                        {"deterministic": False, "similarity": self.similarity,
                         "seeds": [int(e.seed or 0), it.seed], "top_k": k,
                         **{m: (v if math.isfinite(v) else None) for m, v in vals.items()}}))
        return out
