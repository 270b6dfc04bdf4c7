"""Removal metrics: comprehensiveness, sufficiency, AOPC, flip rate, deletion/insertion curves.

All of them are "remove (or keep) the top-k units and rescore": each returns unit masks
(True = unit kept) and the evaluator scores every mask of every metric in one batch with the
same masking operators the explainers use. ``p`` is the probability of the explained class.

* comprehensiveness = p(x) - p(x without the top-k units)  (higher is better)
* sufficiency       = p(x) - p(only the top-k units)       (lower is better)
* aopc_*            = the mean of the above over the bins (default 1, 5, 10, 20, 50 %)

Conventions. ``comprehensiveness``, ``sufficiency`` and both AOPCs take ``convention``, how a
ranking is cut into the top units of a fraction ``f`` of ``n`` units and which bins count:

* ``"eraser"`` (default; DeYoung et al. 2020, ``rationale_benchmark/metrics.py`` and its
  baseline models): k = ceil(f * n), at least 1, the k best units by score (``by``), ties to
  the earlier unit; AOPC is the mean over all the bins.
* ``"ferret"`` (Attanasio et al. 2023, ``ferret/evaluators/faithfulness_measures.py``): k =
  floor(f * n) (``int(f * n)``), and a bin with k = 0 is skipped; with ``by="value"`` only
  units with a positive score are taken (ferret's default ``only_pos``: a bin may hold fewer
  than k units, and one with none is skipped); ties to the later unit (``argsort()[-k:][::-1]``
  under a stable sort); a bin whose units equal those of the last bin used is dropped; AOPC is
  the mean over the bins used. With no bin left ferret's fallback applies: comprehensiveness
  0, sufficiency 1. ``by="abs"`` ranks by |score| and keeps every unit (a faithscope
  extension: ferret's ``only_pos=False`` ranks signed scores). ferret's own default bins are
  :data:`FERRET_BINS` (10 %, 20 %, ..., 100 %); ``bins`` stays a separate hyper-parameter
  (default ERASER's), so pass ``bins=FERRET_BINS`` for ferret's defaults.

Both count k on exact fractions (a product within 1e-9 of an integer is that integer), delete
whole units, and score the kept token ids directly (ferret decodes them to text and
re-tokenizes). A binary explanation is scored on its selection in both conventions.

Both score the explained class (``Explanation.targets[0]``; ERASER scores the predicted class,
the default target; ferret the ``target`` passed). The convention is a hyper-parameter, and
every row's ``detail`` records it (``"convention"``); a ferret row's detail also lists the
``bins`` used, with their ``k`` and ``values``.

Binary explanations (``Explanation.binary``: a selected set of units, e.g. the words an LLM
lists with ``self_explanation``) are scored on their selection: the "top units" are exactly the
selected ones, whatever ``fraction`` (:meth:`Metric.top_masks`). Metrics over several fractions
(AOPC, deletion/insertion/perturbation curves) then make ONE removal, the selection: AOPC equals
comprehensiveness (or sufficiency) of the selection, a curve has the two points x = 0 and x =
the share of the text the selection covers (its value: the mean of the two, or for
``perturbation_curve`` the one drop), uncapped by ``max_fraction``. An empty selection removes
nothing: comprehensiveness 0, flip rate 0, a deletion curve flat at p(x) (sufficiency and the
insertion curve keep nothing: the empty input).

References: DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate Rationalized NLP Models";
Samek et al. 2017 (AOPC); Petsiuk et al. 2018 (deletion/insertion); Attanasio et al. 2023
(ferret).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film", "a dull mess"], ["leave_one_out"])
>>> df = fs.evaluate(exps, model, metrics=["comprehensiveness", "sufficiency"], random=False)
>>> sorted(df["metric"].unique())
['comprehensiveness', 'sufficiency']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import InputError
from ..registry import metrics
from .base import UNIT_SIZES, EvalItem, Metric, unit_sizes

ERASER_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
FERRET_BINS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # np.arange(0.1, 1.1, 0.1)


@dataclass(frozen=True, kw_only=True)
class _Removal(Metric):
    family = "faithfulness"
    needs = frozenset({"model"})
    bounds = (-1.0, 1.0)
    reference = "DeYoung et al. 2020 (ERASER)"

    def fractions(self) -> tuple[float, ...]:
        raise NotImplementedError

    keep_top = False  # False: remove the top-k units; True: keep only them

    def weights(self, item: EvalItem) -> np.ndarray | None:
        """Size of each unit on the x axis (None: every unit counts 1)."""
        return None

    def tops(self, item: EvalItem) -> np.ndarray:
        """The top units of each fraction (rows x units); one row, the selection, for a binary
        explanation."""
        return self.top_masks(item, self.fractions(), self.weights(item))

    def reached(self, item: EvalItem, tops: np.ndarray) -> list[float]:
        """Share of the units (or of their weight) that each row of ``tops`` covers."""
        w = self.weights(item)
        w = np.ones(item.n_units) if w is None else w
        total = float(w.sum())
        return [float(r @ w) / total if total > 0 else 0.0 for r in tops.astype(np.float64)]

    def masks(self, item: EvalItem) -> np.ndarray:
        m = self.tops(item)
        return m if self.keep_top else ~m

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        drops = full[item.target] - probs[:, item.target]
        ks = [int(r.sum()) for r in self.tops(item)]
        return float(drops.mean()), {"k": ks, "values": drops.tolist()}


@dataclass(frozen=True, kw_only=True)
class _Conventional(_Removal):
    """A removal metric whose top units follow a named ``convention`` (module docstring)."""

    convention: str = "eraser"

    def _cut(self, item: EvalItem) -> tuple[np.ndarray, list[int]]:
        """The rows scored and the indices of the fractions they stand for (ferret: empty
        bins and a bin repeating the last one used are left out)."""
        rows = self.top_masks(item, self.fractions(), self.weights(item),
                              convention=self.convention)
        if self.convention != "ferret" or item.explanation.binary:
            return rows, list(range(len(rows)))
        used: list[int] = []
        for i, r in enumerate(rows):
            if r.any() and not (used and np.array_equal(r, rows[used[-1]])):
                used.append(i)
        return rows[used], used

    def tops(self, item: EvalItem) -> np.ndarray:
        return self._cut(item)[0]

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        if self.convention != "ferret" or item.explanation.binary:
            value, detail = super().from_probs(item, full, probs)
            return value, {**detail, "convention": self.convention}
        rows, used = self._cut(item)
        drops = full[item.target] - probs[:, item.target]
        fr = self.fractions()
        detail = {"k": [int(r.sum()) for r in rows], "values": drops.tolist(),
                  "convention": "ferret", "bins": [float(fr[i]) for i in used]}
        if not used:  # ferret's fallback: 0 (comprehensiveness), 1 (sufficiency)
            return (1.0 if self.keep_top else 0.0), detail
        return float(drops.mean()), detail


@metrics.register("comprehensiveness")
@dataclass(frozen=True, kw_only=True)
class Comprehensiveness(_Conventional):
    """p(x) - p(x without its top ``fraction`` units); higher = more faithful."""

    fraction: float = 0.2

    def fractions(self) -> tuple[float, ...]:
        return (self.fraction,)


@metrics.register("sufficiency")
@dataclass(frozen=True, kw_only=True)
class Sufficiency(_Conventional):
    """p(x) - p(only its top ``fraction`` units); lower = more faithful."""

    higher_is_better = False
    keep_top = True
    fraction: float = 0.2

    def fractions(self) -> tuple[float, ...]:
        return (self.fraction,)


@metrics.register("aopc_comprehensiveness")
@dataclass(frozen=True, kw_only=True)
class AopcComprehensiveness(_Conventional):
    """Comprehensiveness averaged over ``bins`` (ERASER: 1, 5, 10, 20, 50 %)."""

    bins: tuple[float, ...] = ERASER_BINS

    def fractions(self) -> tuple[float, ...]:
        return tuple(self.bins)

    def validate(self) -> None:
        super().validate()
        if not self.bins or any(not 0 < b <= 1 for b in self.bins):
            raise InputError(f"{self.name}: bins must be fractions in (0, 1]")


@metrics.register("aopc_sufficiency")
@dataclass(frozen=True, kw_only=True)
class AopcSufficiency(AopcComprehensiveness):
    """Sufficiency averaged over ``bins`` (ERASER: 1, 5, 10, 20, 50 %)."""

    higher_is_better = False
    keep_top = True


@metrics.register("flip_rate")
@dataclass(frozen=True, kw_only=True)
class FlipRate(_Removal):
    """1 if the predicted label changes once the top ``fraction`` units are removed, else 0;
    its mean over examples is the flip rate. ``rationale=True`` removes the human rationale
    (or planted ground truth) instead of the explainer's top units."""

    bounds = (0.0, 1.0)
    reference = "Fayyaz et al. 2024; Chen et al. 2023"
    fraction: float = 0.2
    rationale: bool = False

    def fractions(self) -> tuple[float, ...]:
        return (self.fraction,)

    def masks(self, item: EvalItem) -> np.ndarray:
        if not self.rationale:
            return super().masks(item)
        if item.reference is None:
            raise InputError("flip_rate(rationale=True) needs examples with a rationale")
        return ~np.asarray(item.reference, dtype=bool)[None, :]

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        before, after = int(np.argmax(full)), int(np.argmax(probs[0]))
        k = (int(np.sum(item.reference)) if self.rationale and item.reference is not None
             else int(self.tops(item)[0].sum()))
        return float(before != after), {"before": before, "after": after, "k": k}


@dataclass(frozen=True, kw_only=True)
class _Curve(_Removal):
    steps: int = 10
    max_fraction: float = 1.0

    def fractions(self) -> tuple[float, ...]:
        return tuple(self.max_fraction * (i + 1) / self.steps for i in range(self.steps))

    def validate(self) -> None:
        super().validate()
        if self.steps < 1 or not 0 < self.max_fraction <= 1:
            raise InputError(f"{self.name}: steps >= 1 and 0 < max_fraction <= 1")

    def curve(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([[0.0], self.reached(item, self.tops(item))])
        y = np.concatenate([[self.start(item, full)], probs[:, item.target]])
        return x, y

    def start(self, item: EvalItem, full: np.ndarray) -> float:
        return float(full[item.target])

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        x, y = self.curve(item, full, probs)
        span = x[-1] - x[0]
        area = float(np.trapezoid(y, x) / span) if span > 0 else float(y[0])
        return area, {"x": x.tolist(), "y": y.tolist()}


@metrics.register("deletion_curve")
@dataclass(frozen=True, kw_only=True)
class DeletionCurve(_Curve):
    """Probability as the top units are removed, up to ``max_fraction``; the value is the
    normalised area under it (AUPC). Lower = the explanation finds what matters sooner."""

    higher_is_better = False
    bounds = (0.0, 1.0)
    reference = "Petsiuk et al. 2018 (RISE); Samek et al. 2017"


@metrics.register("insertion_curve")
@dataclass(frozen=True, kw_only=True)
class InsertionCurve(_Curve):
    """Probability as the top units are inserted into an empty input; normalised area.
    Higher = better. The curve starts at the fully masked input."""

    bounds = (0.0, 1.0)
    keep_top = True
    reference = "Petsiuk et al. 2018 (RISE)"

    def masks(self, item: EvalItem) -> np.ndarray:
        empty = np.zeros((1, item.n_units), dtype=bool)
        return np.vstack([empty, super().masks(item)])

    def curve(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([[0.0], self.reached(item, self.tops(item))])
        return x, probs[:, item.target]


@metrics.register("perturbation_curve")
@dataclass(frozen=True, kw_only=True)
class PerturbationCurve(_Curve):
    """Drop of the explained quantity as the top units are removed, up to ``max_fraction``
    (default 50 %) of the text; the value is the mean drop over the steps (area under the drop
    curve, as MExGen's perturbation curves). Higher = the explanation finds what matters
    sooner. With a generative model the quantity is the scalarizer (e.g. the output's
    log-probability).

    ``fraction_of`` sets what the x axis counts: ``"words"`` (default), ``"tokens"`` or
    ``"units"``. With multi-level units (MExGen mixes sentences, phrases and words) a fraction
    of *units* is no fraction of the text (the top half of the units may hold 14 % or 86 % of
    its words), so by default the x axis is the fraction of words removed, as ICX360's
    ``PerturbCurveEvaluator`` does with ``token_frac=True``: with ``w_u`` the size of unit
    ``u`` (words: the number of matches of the regex ``\\w+`` in ``u.text``, 0 for a
    punctuation unit, which moves nothing on the x axis; tokens: ``len(u.tokens)``, which
    units of generated text lack; units: 1), units are ranked by score per word (per token),
    ``s_u / max(w_u, 1)`` (ICX360: score divided by the unit's token count; ``by="abs"``:
    ``|s_u| / max(w_u, 1)``), and step ``i`` removes whole units in that order, the shortest
    prefix ``u_1 .. u_k`` (k >= 1) with
    ``sum_{j<=k} w_{u_j} >= x_i * sum_u w_u`` for ``x_i = max_fraction * i / steps``. Whole
    units overshoot: ``detail["x"]`` records the fractions actually reached (``detail
    ["x_target"]`` the nominal ones). With flat one-word units ("word" granularity without
    punctuation units) ``"words"`` equals ``"units"``, where step ``i`` removes ceil(x_i * n)
    units. A text without any word is measured in units. A binary explanation (a selection)
    has one step: its whole selection, at the share of the text it covers (module docstring).

    References: Monteiro Paes et al. 2025 (MExGen); IBM ICX360, ``icx360/metrics/
    perturb_curve.py`` (``eval_perturb_curve(token_frac=True)``); Samek et al. 2017.
    """

    # bounds (-1, 1) hold for probabilities, not log-probabilities
    max_fraction: float = 0.5
    fraction_of: str = "words"
    reference = "Monteiro Paes et al. 2025 (MExGen); ICX360; Samek et al. 2017"

    def validate(self) -> None:
        super().validate()
        if self.fraction_of not in UNIT_SIZES:
            raise InputError(f"{self.name}: fraction_of must be one of {UNIT_SIZES}, got "
                             f"{self.fraction_of!r}")

    def weights(self, item: EvalItem) -> np.ndarray | None:
        if self.fraction_of == "units":
            return None
        w = unit_sizes(item.explanation.units, self.fraction_of)
        return w if w.sum() > 0 else None

    def from_probs(self, item: EvalItem, full: np.ndarray, probs: np.ndarray
                   ) -> tuple[float, dict[str, Any]]:
        x, y = self.curve(item, full, probs)
        drop = y[0] - y[1:]
        detail: dict[str, Any] = {"x": x.tolist(), "y": y.tolist(),
                                  "fraction_of": self.fraction_of}
        if not item.explanation.binary:  # a selection is removed at once, at no nominal x
            detail["x_target"] = list(self.fractions())
        return float(drop.mean()), detail
