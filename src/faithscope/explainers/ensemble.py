"""Ensembles of explainers: normalise each member's explanation, then average.

Explainers disagree, and each has its own failure mode (sampling noise for LIME and KernelSHAP,
saturation for gradients, attention that is not attribution). Averaging several normalised
explanations trades some of each method's sharpness for agreement. Each member's scores are
normalised per explained target before averaging:

* ``abs`` (default): absolute values summing to 1 (``|s| / sum |s|``): signs are dropped, so
  methods that disagree on the direction of an effect still agree on its size;
* ``l1``: signed values whose absolute values sum to 1 (``s / sum |s|``);
* ``rank``: ranks of ``|s|`` scaled to (0, 1] (1 = most important), as in
  :func:`faithscope.explanation.normalize`.

Members are given verbatim, as names or (name, hyper-parameters) pairs, and are stored as given
in the explanation's ``params``, so an ensemble can be rebuilt from a saved explanation. Each
member sees exactly what it would see on its own (same items, same seed), so an ensemble of one
explainer equals that explainer after normalisation.

Presets: ``ensemble_top3`` (lime, kernel_shap, integrated_gradients: the three methods with
the best ground-truth recovery in the thesis) and ``ensemble_all`` (the ten classic methods).

Reference: the ensembles of "Assessing the Interpretability of Large Language Models" (thesis);
Rieger & Hansen 2020, "Aggregating explanation methods for stable and robust explainability".

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> ens = fs.explainers.Ensemble(members=("gradient", ("lime", {"n_samples": 64})))
>>> (e,) = fs.explain(tiny_classifier(), ["a tender film"], [ens])
>>> e.explainer, e.params["members"], round(float(e.scores.sum()), 4)
('ensemble', ('gradient', ('lime', {'n_samples': 64})), 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..explanation import normalize
from ..models.adapter import InputError, ModelAdapter
from ..models.batching import seed_torch
from ..registry import explainers
from ..targets import TargetFn
from .base import Explainer, Prepared
from .perturbation import Result

# "abs": |l1-normalised scores|; "l1", "rank": explanation.normalize
ENSEMBLE_NORMALIZATIONS = ("abs", "l1", "rank")
TOP3 = ("lime", "kernel_shap", "integrated_gradients")
ALL = ("lime", "kernel_shap", "shapley_sampling", "partition_shap", "leave_one_out",
       "integrated_gradients", "gradient", "gradient_x_input", "attention", "attention_rollout")


def member_spec(spec: Any) -> tuple[str, dict[str, Any]]:
    """A member given as ``"name"``, ``("name", {params})`` / ``["name", {params}]`` (e.g. read
    back from JSON) or ``{"name": ..., "params": {...}}`` -> (name, params)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and "name" in spec:
        extra = set(spec) - {"name", "params"}
        if extra:
            raise InputError(f"ensemble member {dict(spec)!r}: unknown key(s) {sorted(extra)}")
        return str(spec["name"]), dict(spec.get("params") or {})
    if (isinstance(spec, list | tuple) and len(spec) == 2 and isinstance(spec[0], str)
            and isinstance(spec[1], Mapping)):
        return spec[0], dict(spec[1])
    raise InputError(f"ensemble member must be a name or a (name, params) pair, got {spec!r}")


def normalize_scores(scores: np.ndarray, kind: str) -> np.ndarray:
    """Per-row normalisation of a targets x units matrix (see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    if kind == "abs":
        return np.abs(normalize(s, "l1")).astype(np.float64)
    if kind in ("l1", "rank"):
        return normalize(s, kind).astype(np.float64)
    raise InputError(f"ensemble normalization must be one of {ENSEMBLE_NORMALIZATIONS}, "
                     f"got {kind!r}")


@explainers.register("ensemble")
@dataclass(frozen=True, kw_only=True)
class Ensemble(Explainer):
    """Weighted mean of the members' normalised explanations (equal weights by default)."""

    stochastic = True  # its default members include sampling methods
    members: tuple[Any, ...] = TOP3
    normalization: str = "abs"
    weights: tuple[float, ...] | None = None

    def validate(self) -> None:
        super().validate()
        if isinstance(self.members, str | bytes) or not isinstance(self.members, Sequence) \
                or not self.members:
            raise InputError(f"{self.name}: members must be a non-empty list of explainers")
        if self.normalization not in ENSEMBLE_NORMALIZATIONS:
            raise InputError(f"{self.name}: normalization must be one of {ENSEMBLE_NORMALIZATIONS}, "
                             f"got {self.normalization!r}")
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64) if not isinstance(
                self.weights, str) else np.zeros(0)
            if w.shape != (len(self.members),) or (w < 0).any() or not w.sum() > 0:
                raise InputError(f"{self.name}: weights must be {len(self.members)} "
                                 f"non-negative numbers with a positive sum")
        self.built()

    def built(self) -> list[Explainer]:
        """The member explainers, built and validated."""
        out = []
        for spec in self.members:
            name, params = member_spec(spec)
            exp: Explainer = explainers.build(name, params)
            exp.validate()
            out.append(exp)
        return out

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        members = self.built()
        w = np.ones(len(members)) if self.weights is None else np.asarray(self.weights, float)
        w = w / w.sum()
        total = [np.zeros((len(it.targets), it.n_units)) for it in items]
        infos: list[dict[str, Any]] = [
            {"members": [], "member_info": [], "forwards": 0, "backwards": 0} for _ in items]
        for exp, wk in zip(members, w, strict=True):
            if items:  # as explain() does before each explainer: a member sees the same seed
                seed_torch(items[0].seed)
            # a model with its own way of running explainers (generated text: gradients of
            # the output's log-probability) runs the members itself, as score_masks does
            own = getattr(adapter, "run_explainer", None)
            scores, member_infos = (own(exp, items) if own is not None
                                    else exp.attribute(adapter, items, target_fn))
            for k, (sc, info) in enumerate(zip(scores, member_infos, strict=True)):
                total[k] += wk * normalize_scores(sc, self.normalization)
                infos[k]["members"].append(exp.name)
                infos[k]["member_info"].append({a: b for a, b in info.items() if a != "se"})
                for key in ("forwards", "backwards"):
                    infos[k][key] += int(info.get(key, 0) or 0)
        return total, infos


# registered presets of the one Ensemble class (different default members)
EnsembleTop3 = explainers.preset("ensemble_top3", Ensemble, members=TOP3)
EnsembleAll = explainers.preset("ensemble_all", Ensemble, members=ALL)
