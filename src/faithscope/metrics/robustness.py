"""Input robustness of explanations: max and average sensitivity (Quantus definitions).

A small change of the input that leaves the model's prediction alone should leave the
explanation (nearly) alone. For ``n_samples`` random perturbations ``x'`` of the input, the
explainer runs again for the same target class and the relative change of the explanation is

    sensitivity(x') = || a(x) - a(x') ||_2 / || a(x) ||_2

(Frobenius norm of the difference, normalised by the explanation's norm so that explainers of
different scales and texts of different lengths compare). ``max_sensitivity`` reports the
largest value over the samples, ``avg_sensitivity`` the mean (Yeh et al. 2019; Quantus's
``MaxSensitivity`` / ``AvgSensitivity`` with the explanation-norm denominator). Lower is better.

Two perturbations of text:

* ``noise`` (``max_sensitivity``, ``avg_sensitivity``): uniform noise in ``[-r, r]`` on every
  dimension of the word embeddings of the input's tokens (Quantus's ``uniform_noise``), with
  ``r = radius`` times the standard deviation of the embedding matrix so that one radius fits
  every model; each token id gets one noise vector per sample (special tokens are untouched);
* ``drop_unit`` (``max_sensitivity_word``, ``avg_sensitivity_word``): delete the tokens of one
  unit chosen at random among those outside the top ``fraction`` of the explanation (by
  absolute score); both explanations are compared on the remaining units.

Samples whose perturbation changes the predicted class are left out (``exclude_flips=True``,
Quantus's ``return_nan_when_prediction_changes``); their number is in the detail. Quantus's
default of 200 samples is lowered to 10: each sample re-runs the explainer.

References: Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations" (NeurIPS);
Bhatt et al. 2020 (avg-sensitivity); Hedstroem et al. 2023, "Quantus" (JMLR).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film , really", "a dull mess"], ["gradient_x_input"])
>>> df = fs.evaluate(exps, model, metrics=["max_sensitivity", "avg_sensitivity_word"],
...                  random=False)
>>> sorted(df["family"].unique()), bool((df["value"] >= 0).all())
(['robustness'], True)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._lazy import lazy_import
from ..explainers.base import Explainer, Prepared, token_unit_index
from ..explanation import Explanation
from ..models.adapter import Encoded, InputError, ModelAdapter
from ..registry import metrics
from ..targets import get_target
from .analysis import Analysis, Values, nan_to_none
from .base import n_top

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

PERTURBATIONS = ("noise", "drop_unit")


def drop_unit(item: Prepared, u: int) -> Prepared:
    """``item`` with the tokens of unit ``u`` deleted (units after it renumbered; the logits
    are still the original input's: rescore before relying on them)."""
    enc = item.enc
    keep = np.ones(len(enc), dtype=bool)
    keep[list(item.units[u].tokens)] = False
    new_pos = np.cumsum(keep) - 1
    new_enc = Encoded(
        text=enc.text, pair=enc.pair, ids=enc.ids[keep],
        type_ids=None if enc.type_ids is None else enc.type_ids[keep],
        offsets=tuple(o for o, k in zip(enc.offsets, keep, strict=True) if k),
        sequence_ids=tuple(s for s, k in zip(enc.sequence_ids, keep, strict=True) if k),
        truncated=enc.truncated)
    units = tuple(replace(v, tokens=tuple(int(new_pos[t]) for t in v.tokens))
                  for j, v in enumerate(item.units) if j != u)
    return replace(item, enc=new_enc, units=units,
                   token_unit=token_unit_index(units, len(new_enc)))


def _rescored(adapter: ModelAdapter, items: Sequence[Prepared]) -> list[Prepared]:
    """Items with the model's logits on their (possibly changed) input."""
    if not items:
        return []
    types = None if items[0].enc.type_ids is None else [
        it.enc.type_ids[None, :] for it in items]  # type: ignore[index]
    logits = adapter.logits([it.enc.ids[None, :] for it in items], types)
    return [replace(it, logits=lg[0]) for it, lg in zip(items, logits, strict=True)]


def relative_change(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||a||; NaN when ``a`` is all zero."""
    den = float(np.linalg.norm(a))
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / den) if den > 0 else math.nan


@dataclass(frozen=True, kw_only=True)
class _Sensitivity(Analysis):
    family = "robustness"
    higher_is_better = False
    bounds = (0.0, math.inf)
    reference = "Yeh et al. 2019; Quantus (Hedstroem et al. 2023)"
    aggregate: ClassVar[str] = "max"
    perturbation: ClassVar[str] = "noise"
    n_samples: int = 10
    radius: float = 0.2  # noise half-width, in standard deviations of the embedding matrix
    fraction: float = 0.2  # drop_unit: the top share of units that is never dropped
    exclude_flips: bool = True
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) \
                or self.n_samples < 1:
            raise InputError(f"{self.name}: n_samples must be a positive integer")
        if not self.radius > 0:
            raise InputError(f"{self.name}: radius must be positive, got {self.radius!r}")

    def analyse(self, adapter: ModelAdapter, explainer: Explainer,
                explanations: Sequence[Explanation], items: Sequence[Prepared]) -> Values:
        if not items:
            return []
        fn = get_target(explanations[0].target_fn)
        n, s_count = len(items), self.n_samples
        vals = np.full((n, s_count), np.nan)
        flipped = np.zeros((n, s_count), dtype=bool)
        base = [np.asarray(e.scores[0], dtype=np.float64) for e in explanations]
        pred = [int(np.argmax(it.logits)) for it in items]
        sigma = float(adapter.embedding_matrix().float().std()) if self.perturbation == "noise" \
            else 0.0
        for s in range(s_count):
            if self.perturbation == "noise":
                idx = list(range(n))
                refs = base
                rows = self._noise(adapter, items, sigma, s)
                with adapter.perturbed_embeddings(rows):
                    new = _rescored(adapter, items)
                    torch.manual_seed(items[0].seed)
                    scores, _ = explainer.attribute(adapter, new, fn)
            else:
                idx, dropped = [], []
                for i, (it, a) in enumerate(zip(items, base, strict=True)):
                    protect = set(np.argsort(-np.abs(a), kind="stable")[
                        : n_top(self.fraction, it.n_units)].tolist())
                    cand = [u for u in range(it.n_units) if u not in protect]
                    if cand:
                        rng = np.random.default_rng(
                            [self.seed, s, zlib.crc32(it.example_id.encode())])
                        idx.append(i)
                        dropped.append(int(rng.choice(cand)))
                new = _rescored(adapter, [drop_unit(items[i], u)
                                          for i, u in zip(idx, dropped, strict=True)])
                refs = [np.delete(base[i], u) for i, u in zip(idx, dropped, strict=True)]
                if new:
                    torch.manual_seed(items[0].seed)
                    scores, _ = explainer.attribute(adapter, new, fn)
                else:
                    scores = []
            for r, (i, sc) in enumerate(zip(idx, scores, strict=True)):
                ref = refs[i] if self.perturbation == "noise" else refs[r]
                vals[i, s] = relative_change(ref, np.asarray(sc, dtype=np.float64)[0])
                flipped[i, s] = int(np.argmax(new[r].logits)) != pred[i]
        out = []
        for i in range(n):
            use = vals[i][~flipped[i]] if self.exclude_flips else vals[i]
            use = use[np.isfinite(use)]
            mx = float(use.max()) if len(use) else math.nan
            mean = float(use.mean()) if len(use) else math.nan
            detail: dict[str, Any] = {
                "perturbation": self.perturbation, "n_samples": s_count,
                "n_used": len(use), "n_flipped": int(flipped[i].sum()), "max": mx,
                "mean": mean, "per_sample": nan_to_none(vals[i].tolist())}
            detail["radius" if self.perturbation == "noise" else "fraction"] = (
                self.radius if self.perturbation == "noise" else self.fraction)
            out.append((mx if self.aggregate == "max" else mean, detail))
        return out

    def _noise(self, adapter: ModelAdapter, items: Sequence[Prepared], sigma: float, s: int
               ) -> dict[int, np.ndarray]:
        """One uniform noise vector per (non-special) token id of the items' units."""
        special = adapter.special_ids
        ids = sorted({int(t) for it in items for t in it.enc.ids[it.token_unit >= 0]}
                     - special)
        hidden = int(adapter.embedding_matrix().shape[1])
        rng = np.random.default_rng([self.seed, s])
        half = self.radius * sigma
        noise = rng.uniform(-half, half, size=(len(ids), hidden)).astype(np.float32)
        return dict(zip(ids, noise, strict=True))


@metrics.register("max_sensitivity")
@dataclass(frozen=True, kw_only=True)
class MaxSensitivity(_Sensitivity):
    """Largest relative change of the explanation under embedding noise (lower is better)."""

    name = "max_sensitivity"
    aggregate = "max"
    perturbation = "noise"


@metrics.register("avg_sensitivity")
@dataclass(frozen=True, kw_only=True)
class AvgSensitivity(_Sensitivity):
    """Mean relative change of the explanation under embedding noise (lower is better)."""

    name = "avg_sensitivity"
    aggregate = "mean"
    perturbation = "noise"


@metrics.register("max_sensitivity_word")
@dataclass(frozen=True, kw_only=True)
class MaxSensitivityWord(_Sensitivity):
    """Largest relative change of the explanation when one non-top unit is deleted."""

    name = "max_sensitivity_word"
    aggregate = "max"
    perturbation = "drop_unit"


@metrics.register("avg_sensitivity_word")
@dataclass(frozen=True, kw_only=True)
class AvgSensitivityWord(_Sensitivity):
    """Mean relative change of the explanation when one non-top unit is deleted."""

    name = "avg_sensitivity_word"
    aggregate = "mean"
    perturbation = "drop_unit"

