"""Model-parameter randomization: do explanations depend on what the model has learned?

An explanation that survives the destruction of the model's weights explains the input, not the
model. Following Adebayo et al., the model's parameter groups are re-initialised with the
model's own initialiser and the explainer is run again on the same examples, for the same
target class; the similarity between the original and the randomized explanation is recorded
after each step:

* ``randomization`` (cascading): the classification head, then the transformer blocks from the
  last to the first (each block = self-attention + MLP as one unit), then the embeddings, each
  step adding to the previous ones, so the last step is a fully random model;
* ``randomization_independent``: the same groups one at a time, the rest of the model intact.

A group gets the same random weights in both modes (its generator is seeded by the ``seed``
hyper-parameter and the group's name), and the model is restored bit for bit after every step
(:meth:`~faithscope.models.adapter.ModelAdapter.randomized`). Similarity is Spearman's rank
correlation by default (``kendall``: Kendall's tau-b; ``topk``: share of the top ``fraction``
units kept), of absolute scores by default (``by="value"`` compares signed scores).

Each explanation gives one row: its value is the mean similarity over the steps (lower = the
explanation depends more on the parameters, which is what a sanity check wants), and its detail
holds the curve, ``{"mode", "steps": [...], "values": [...]}``, for the report's per-step plot;
:func:`~faithscope.metrics.analysis.curve_table` gives per-step means with bootstrap CIs.

Reference: Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (NeurIPS); the layer
randomization of "Assessing the Interpretability of Large Language Models" (thesis).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film , really", "a dull mess"], ["gradient"])
>>> df = fs.evaluate(exps, model, metrics=["randomization"], random=False)
>>> df.loc[0, "detail"]["steps"]
['head', 'layer 1', 'layer 0', 'embeddings']
>>> list(fs.metrics.curve_table(df)["step"])
['head', 'layer 1', 'layer 0', 'embeddings']
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..explainers.base import Explainer, Prepared, attribute_grouped
from ..explanation import Explanation
from ..models.adapter import InputError, ModelAdapter
from ..models.batching import seed_torch
from ..models.surgery import parameter_groups, randomized
from ..registry import metrics
from ..targets import get_target
from .analysis import SIMILARITIES, Analysis, Values, nan_to_none, similarity
from .base import n_top

MODES = ("cascading", "independent")


def randomization_steps(adapter: ModelAdapter, mode: str = "cascading", *, head: bool = True,
                        embeddings: bool = True) -> list[tuple[str, list[str]]]:
    """(step label, groups randomized at that step): top-down order, head first.

    >>> from faithscope.models.tiny import tiny_classifier
    >>> randomization_steps(tiny_classifier(), "cascading")[:2]
    [('head', ['head']), ('layer 1', ['head', 'layer 1'])]
    """
    if mode not in MODES:
        raise InputError(f"randomization mode must be one of {MODES}, got {mode!r}")
    groups = parameter_groups(adapter)
    layers = [g for g in groups if g.startswith("layer ")]
    order = (["head"] if head and "head" in groups else []) + layers[::-1]
    order += ["embeddings"] if embeddings and groups.get("embeddings") else []
    if mode == "cascading":
        return [(g, order[: i + 1]) for i, g in enumerate(order)]
    return [(g, [g]) for g in order]


@dataclass(frozen=True, kw_only=True)
class _Randomization(Analysis):
    family = "sanity"
    higher_is_better = False
    bounds = (-1.0, 1.0)
    reference = "Adebayo et al. 2018 (Sanity Checks for Saliency Maps)"
    mode: ClassVar[str] = "cascading"
    similarity: str = "spearman"
    by: str = "abs"
    fraction: float = 0.2  # top-k share for similarity="topk"
    head: bool = True
    embeddings: bool = True
    seed: int = 0  # seeds the re-initialisation

    def validate(self) -> None:
        super().validate()
        if self.similarity not in SIMILARITIES:
            raise InputError(f"{self.name}: similarity must be one of {SIMILARITIES}, "
                             f"got {self.similarity!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"{self.name}: seed must be a non-negative integer")

    def analyse(self, adapter: ModelAdapter, explainer: Explainer,
                explanations: Sequence[Explanation], items: Sequence[Prepared]) -> Values:
        if not items:
            return []
        fn = get_target(explanations[0].target_fn)
        steps = randomization_steps(adapter, self.mode, head=self.head,
                                    embeddings=self.embeddings)
        sims = np.full((len(items), len(steps)), np.nan)
        for s, (_, groups) in enumerate(steps):
            with randomized(adapter, groups, seed=self.seed):
                seed_torch(items[0].seed)
                scores, _ = attribute_grouped(explainer, adapter, items, fn)
            for i, (e, sc) in enumerate(zip(explanations, scores, strict=True)):
                k = n_top(self.fraction, len(e.units))
                sims[i, s] = similarity(e.scores[0], np.asarray(sc)[0], self.similarity,
                                        k=k, by=self.by)
        labels = [label for label, _ in steps]
        out = []
        for row in sims:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                value = float(np.nanmean(row)) if np.isfinite(row).any() else float("nan")
            out.append((value, {"mode": self.mode, "similarity": self.similarity, "by": self.by,
                                "seed": self.seed, "steps": labels,
                                "step_index": list(range(len(labels))),
                                "values": nan_to_none(row.tolist())}))
        return out


# one metric class, two registered presets (Adebayo et al. 2018): cascading randomization
# (head -> last block -> ... -> embeddings) and independent (one group at a time)
Randomization = metrics.preset("randomization", _Randomization, mode="cascading")
RandomizationIndependent = metrics.preset("randomization_independent", _Randomization,
                                          mode="independent")
