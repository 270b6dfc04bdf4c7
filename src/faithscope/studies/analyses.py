"""Study analyses: computations over every seed of a model on a dataset, run as ``analysis`` units.

A spec lists them under ``analyses:``; each runs once per (model, dataset) after all seeds are
fine-tuned and explained, reads what it needs through an :class:`AnalysisContext` (fine-tuned
models, stored explanations, data, accuracies) and returns one tidy frame whose ``table`` column
names the sub-table; the frame is stored as the unit's shard and read back with
:meth:`faithscope.studies.results.Study.analysis`.

* ``seed_stability``: :func:`faithscope.metrics.stability.seed_stability` over the seeds'
  stored explanations, plus ``repeats`` runs of every stochastic explainer of the spec with other
  sampling seeds on the model of ``repeat_seed`` (the explainer's own randomness).
* ``ling_lr``: LING-LR and LING-LR-E (:mod:`faithscope.models.ling`) against the transformer: the
  lexicon pools the ``lexicon_explainer``'s attributions towards the gold label on
  ``lexicon_n`` training examples over all seeds; LING-LR-E with each single seed's lexicon, and
  refits on training data permuted by each seed, show what depends on the seed.

Example
-------
>>> from faithscope.registry import study_analyses
>>> study_analyses.build(("seed_stability", {"k": 3, "repeats": 4})).repeats
4
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..data.example import Example
from ..errors import InputError
from ..explanation import Explanation, explanations_from_table
from ..registry import explainers as explainer_registry
from ..registry import study_analyses

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

if TYPE_CHECKING:
    from ..models.adapter import ModelAdapter
    from .plan import Unit
    from .work import Worker


@dataclass
class AnalysisContext:
    """What an analysis unit may read: everything of one model on one dataset, every seed."""

    worker: Worker
    unit: Unit
    units: dict[str, Unit] = field(default_factory=dict)  # the plan, to retrain lost checkpoints

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.unit.params["finetune"])

    def adapter(self, seed: int) -> ModelAdapter:
        key = self.unit.params["finetune"][str(seed)]
        return self.worker.finetuned(key, self.units.get(key))

    def explanations(self, seed: int) -> list[Explanation]:
        out: list[Explanation] = []
        for key in self.unit.params["explain"].get(str(seed), []):
            out += explanations_from_table(self.worker.store.read_table("explain", key))
        return out

    def accuracy(self) -> dict[int, float]:
        acc = {}
        for s in self.seeds:
            row = self.worker.store.read_shard("finetune",
                                               self.unit.params["finetune"][str(s)]).iloc[0]
            acc[s] = float(row["accuracy"])
        return acc

    def examples(self, which: str) -> list[Example]:
        """``eval``, ``train`` or ``accuracy`` examples of the unit's dataset."""
        return list(self.worker.data(self.worker.dataset_spec(self.unit.dataset),
                                     which).examples)


def _tables(**frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([f.assign(table=name) for name, f in frames.items()], ignore_index=True)


@study_analyses.register("seed_stability")
@dataclass(frozen=True, kw_only=True)
class SeedStability:
    """Between-seed vs within-model agreement, per-unit spread and prediction agreement."""

    k: int = 5
    by: str = "value"
    repeats: int = 5  # runs of each stochastic explainer on one model (sampling seeds)
    repeat_seed: int | None = None  # that model's training seed (default: the first seed)
    # the class whose explanations are compared across seeds: "gold" (the example's label,
    # explained again where a seed explained another class) or "first_row" (each run's own
    # first target, usually its predicted class: pairs of seeds that disagree then compare
    # explanations of different classes)
    target: str = "gold"

    def __post_init__(self) -> None:
        if self.k < 1 or self.repeats < 1 or self.by not in ("value", "abs"):
            raise InputError("seed_stability: k and repeats must be >= 1, by 'value' or 'abs'")
        if self.target not in ("gold", "first_row"):
            raise InputError(f"seed_stability: target must be 'gold' or 'first_row', got "
                             f"{self.target!r}")

    def run(self, ctx: AnalysisContext) -> pd.DataFrame:
        from ..metrics.stability import seed_stability

        spec = ctx.worker.spec
        examples = ctx.examples("eval")
        gold = ({ex.id: int(ex.label) for ex in examples if ex.label is not None}
                if self.target == "gold" else None)
        by_seed = {s: ctx.explanations(s) for s in ctx.seeds}
        if gold is not None:
            by_seed = {s: self._of_gold(ctx, s, exps, examples, gold)
                       for s, exps in by_seed.items()}
            by_seed = {s: [e for e in exps if e.example_id in gold]
                       for s, exps in by_seed.items()}
        s0 = ctx.seeds[0] if self.repeat_seed is None else self.repeat_seed
        if s0 not in by_seed:
            raise InputError(f"seed_stability: repeat_seed {s0} is not a seed of the study")
        stochastic = [e for e in spec.explainers
                      if getattr(explainer_registry.get(e.name), "stochastic", False)]
        names = {e.name for e in stochastic}
        repeats: dict[Any, list[Explanation]] = {}
        if stochastic and self.repeats > 1:
            repeats[s0] = [e for e in by_seed[s0] if e.explainer in names]
            adapter = ctx.adapter(s0)
            for r in range(1, self.repeats):
                repeats[s0 + 1000 * r] = _explain_targets(
                    adapter, examples, [(e.name, e.params) for e in stochastic], gold,
                    granularity=spec.granularity, target_fn=spec.target_fn, seed=s0 + 1000 * r)
        res = seed_stability(by_seed, repeats=repeats, k=self.k, by=self.by,
                             accuracy=ctx.accuracy(), targets=gold)
        pairs = res.pairs.assign(run_a=res.pairs["run_a"].astype("int64"),
                                 run_b=res.pairs["run_b"].astype("int64"),
                                 target_source="gold label" if gold is not None else
                                 "first row (each run's own target)")
        return _tables(pairs=pairs, units=res.units, accuracy=res.accuracy)

    @staticmethod
    def _of_gold(ctx: AnalysisContext, seed: int, exps: list[Explanation],
                 examples: list[Any], gold: dict[str, int]) -> list[Explanation]:
        """``exps`` with every explanation that lacks the gold class explained again for it
        (same explainer, hyper-parameters and seed, on that seed's model)."""
        redo = [e for e in exps if e.example_id in gold and gold[e.example_id] not in e.targets]
        if not redo:
            return exps
        spec = ctx.worker.spec
        by_id = {ex.id: ex for ex in examples}
        fresh: dict[tuple[str, str], Explanation] = {}
        for (name, params_json), group in _group_by_explainer(redo).items():
            params = json.loads(params_json)
            for e in _explain_targets(ctx.adapter(seed), [by_id[e.example_id] for e in group],
                                      [(name, params)], gold, granularity=spec.granularity,
                                      target_fn=spec.target_fn, seed=seed):
                fresh[(e.explainer, e.example_id)] = e
        return [fresh.get((e.explainer, e.example_id), e) for e in exps]


def _group_by_explainer(exps: list[Explanation]) -> dict[tuple[str, str], list[Explanation]]:
    out: dict[tuple[str, str], list[Explanation]] = {}
    for e in exps:
        out.setdefault((e.explainer, json.dumps(dict(e.params), sort_keys=True, default=str)),
                       []).append(e)
    return out


def _explain_targets(adapter: Any, examples: list[Any], specs: list[Any],
                     gold: dict[str, int] | None, **kw: Any) -> list[Explanation]:
    """Explain ``examples`` for their gold class (grouped by class: one call per class), or
    for the predicted class when ``gold`` is None."""
    from ..api import explain

    if gold is None:
        return explain(adapter, examples, specs, **kw)
    out: list[Explanation] = []
    for label in sorted({gold[ex.id] for ex in examples if ex.id in gold}):
        group = [ex for ex in examples if gold.get(ex.id) == label]
        out += explain(adapter, group, specs, target=label, **kw)
    return out


@study_analyses.register("ling_lr")
@dataclass(frozen=True, kw_only=True)
class LingLRAnalysis:
    """LING-LR vs LING-LR-E vs the transformer's seeds, with the lexicons and determinism."""

    lexicon_explainer: str = "leave_one_out"
    lexicon_params: dict[str, Any] = field(default_factory=dict)
    lexicon_n: int = 1000  # training examples explained per seed for the lexicon
    lexicon_size: int = 50
    min_count: int = 3
    ngram_vocab: int = 500
    l2: float = 1.0

    def __post_init__(self) -> None:
        explainer_registry.build((self.lexicon_explainer, dict(self.lexicon_params)))
        if min(self.lexicon_n, self.lexicon_size, self.min_count) < 1:
            raise InputError("ling_lr: lexicon_n, lexicon_size and min_count must be >= 1")

    def _fit(self, texts: Sequence[str], y: Sequence[int], lexicon: Any = None) -> Any:
        from ..models.ling import LingLR

        return LingLR(ngram_vocab=self.ngram_vocab, l2=self.l2, lexicon=lexicon).fit(texts, y)

    def run(self, ctx: AnalysisContext) -> pd.DataFrame:
        from ..api import explain
        from ..models.ling import attribution_lexicon

        spec = ctx.worker.spec
        train = [e for e in ctx.examples("train") if e.label is not None]
        dev = ctx.examples("accuracy")
        xt, yt = [_text(e) for e in train], [int(e.label) for e in train]  # type: ignore[arg-type]
        xd, yd = [_text(e) for e in dev], [int(e.label) for e in dev]  # type: ignore[arg-type]
        base = self._fit(xt, yt)
        lex_exps: dict[int, list[Explanation]] = {}
        sub = train[: self.lexicon_n]
        for s in ctx.seeds:
            exps = explain(ctx.adapter(s), sub, [(self.lexicon_explainer, self.lexicon_params)],
                           granularity="word", target_fn=spec.target_fn, target="all", seed=s)
            lex_exps[s] = [_gold_row(e, int(ex.label)) for e, ex in  # type: ignore[arg-type]
                           zip(exps, sub, strict=True)]
        labels = [int(e.label) for e in sub]  # type: ignore[arg-type]
        pooled = attribution_lexicon([e for s in ctx.seeds for e in lex_exps[s]],
                                     labels * len(ctx.seeds), size=self.lexicon_size,
                                     min_count=self.min_count * len(ctx.seeds))
        enriched = self._fit(xt, yt, pooled)
        acc = [{"classifier": "ling_lr", "seed": -1, "accuracy": base.accuracy(xd, yd),
                "n_features": len(base.feature_names)},
               {"classifier": "ling_lr_e", "seed": -1, "accuracy": enriched.accuracy(xd, yd),
                "n_features": len(enriched.feature_names)}]
        lex_rows = [{"lexicon": "pooled", "class": c, "rank": i, "word": w}
                    for c, ws in pooled.items() for i, w in enumerate(ws)]
        for s, a in ctx.accuracy().items():
            acc.append({"classifier": "transformer", "seed": s, "accuracy": a,
                        "n_features": np.nan})
        for s in ctx.seeds:
            lex = attribution_lexicon(lex_exps[s], labels, size=self.lexicon_size,
                                      min_count=self.min_count)
            lex_rows += [{"lexicon": f"seed {s}", "class": c, "rank": i, "word": w}
                         for c, ws in lex.items() for i, w in enumerate(ws)]
            clf = self._fit(xt, yt, lex)
            acc.append({"classifier": "ling_lr_e_single_seed", "seed": s,
                        "accuracy": clf.accuracy(xd, yd), "n_features": len(clf.feature_names)})
        det = []
        for name, model, lexicon in (("ling_lr", base, None), ("ling_lr_e", enriched, pooled)):
            ref = model.explain(xd)
            again = self._fit(xt, yt, lexicon).explain(xd)
            det.append({"classifier": name, "seed": -1, "order": "same",
                        "max_abs_diff": float(np.abs(again - ref).max())})
            for s in ctx.seeds:
                perm = np.random.default_rng(s).permutation(len(xt))
                other = self._fit([xt[i] for i in perm], [yt[i] for i in perm], lexicon)
                det.append({"classifier": name, "seed": s, "order": "permuted by seed",
                            "max_abs_diff": float(np.abs(other.explain(xd) - ref).max())})
        coef = enriched.coef_ - enriched.coef_.mean(1, keepdims=True)
        top = np.argsort(-np.abs(coef).max(1), kind="stable")[:40]
        coefs = [{"classifier": "ling_lr_e", "feature": enriched.feature_names[i],
                  "class": c, "coef": float(coef[i, c])} for i in top
                 for c in range(coef.shape[1])]
        return _tables(accuracy=pd.DataFrame(acc), lexicon=pd.DataFrame(lex_rows),
                       determinism=pd.DataFrame(det), coefficients=pd.DataFrame(coefs))


def _text(e: Example) -> str:
    return e.text if not e.pair else f"{e.text} {e.pair}"


def _gold_row(e: Explanation, label: int) -> Explanation:
    """The explanation's row for the gold ``label`` (explained with ``target="all"``)."""
    from dataclasses import replace

    row = list(e.targets).index(label)
    return replace(e, scores=e.scores[row : row + 1], targets=(label,),
                   target_labels=(e.target_labels[row],))
