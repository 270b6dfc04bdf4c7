"""evaluate(): explanations + model + metrics -> a tidy DataFrame; summarize() adds CIs.

Every removal metric of every explanation is scored in ONE virtual batch through the model
adapter (masks deduplicated per example). Unless ``random=False``, the ``random`` explainer is
evaluated on the same examples, so every table shows the chance level next to real explainers.

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film", "a dull mess", "fine acting"], ["leave_one_out"])
>>> df = fs.evaluate(exps, model, metrics=["aopc_comprehensiveness"])
>>> sorted(df["explainer"].unique())
['leave_one_out', 'random']
>>> list(fs.summarize(df, n_boot=200).columns)[:6]
['explainer', 'metric', 'mean', 'ci_low', 'ci_high', 'n']

Explanations of generated text (from :func:`faithscope.explain` on a generative adapter) are
scored the same way with the generative adapter: every removal metric contributes its unit
masks (``Metric.masks``); :class:`~faithscope.generation.explain.ScalarizedLM` turns them into
perturbed prompts and scores all of them, plus each unperturbed prompt, in one virtual batch
with the target of generated text (``target_fn``, default ``log_prob``); ``Metric.from_probs``
turns the values into the metric, exactly as for classifiers. So ``perturbation_curve``,
``deletion_curve``, ``comprehensiveness``, ``sufficiency`` and their AOPC versions all apply to
generation. ``flip_rate`` becomes: the greedy output changes once the top units are removed (the
prompt is re-generated and compared with the reference output). The random baseline has
random scores on the very units (and levels) of each explained prompt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lazy import lazy_import
from .api import explain, prepare
from .data.example import Example
from .explainers.base import OPERATORS, Prepared, applied_operator, score_masks
from .explanation import Explanation
from .metrics.analysis import Analysis, run_analyses
from .metrics.base import EvalItem, Metric, get_metric
from .metrics.stats import bootstrap_ci
from .models.adapter import InputError, ModelAdapter, softmax
from .models.generative import is_generative
from .targets import get_target

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

DEFAULT_METRICS = ("aopc_comprehensiveness", "aopc_sufficiency", "comprehensiveness",
                   "sufficiency", "flip_rate")
COLUMNS = ["example_id", "explainer", "metric", "value", "family", "higher_is_better",
           "label", "predicted", "correct", "target", "n_units", "granularity", "model_id",
           "operator", "detail"]


def _reference(exp: Explanation, example: Example | None) -> np.ndarray | None:
    if example is None or example.rationale is None:
        return None
    from .data import rationale_mask

    return rationale_mask(exp.units, example.rationale)


def evaluate(
    explanations: Sequence[Explanation],
    model: Any,
    metrics: Sequence[Any] = DEFAULT_METRICS,
    *,
    examples: Iterable[Example] | None = None,
    operator: str = "delete",
    random: bool = True,
    seed: int = 0,
    target_fn: Any = "log_prob",
    replacement: str = "",
) -> pd.DataFrame:
    """Score explanations with metrics; one row per (explanation, metric).

    ``examples`` supplies gold labels and human rationales / planted ground truth (matched by
    example id). ``operator`` is the masking operator of removal metrics: ``delete`` (default:
    the removed tokens are deleted, as ERASER and ferret do), ``mask`` (replaced by the mask
    token, falling back to unk/pad where the tokenizer has none), ``pad`` or ``unk``; the
    operator actually applied is the ``operator`` column of every removal metric's row (empty
    for metrics that remove nothing). Analyses (metrics
    that need the explainer: randomization, sensitivity, attacks) rebuild the explainer of each
    group of explanations from their stored name and hyper-parameters and run it again.

    With a generative ``model`` (explanations of generated text): ``target_fn`` is the target
    of generated text the removal metrics score (a name, ``(name, params)`` or a scalarizer)
    and ``replacement`` the text that replaces a removed unit (default: deleted); analyses are
    not available.
    """
    ms: list[Metric] = [get_metric(m) for m in metrics]
    by_id: dict[str, Example] = {ex.id: ex for ex in examples or ()}
    exps = list(explanations)
    generative = model is not None and is_generative(model)
    if generative:
        if any("explainer" in m.needs for m in ms):
            raise InputError("analyses (re-running the explainer) are not available for "
                             "generation")
        for e in exps:
            if e.output is None:
                raise InputError(f"{e.explainer} on {e.example_id}: not an explanation of "
                                 "generated text (no output), but the model is generative")
    elif any(e.output is not None for e in exps) and model is not None:
        raise InputError("explanations of generated text need the generative model")
    if random and model is not None and exps:
        exps += (_random_generated(model, exps, seed) if generative else
                 _random_baseline(model, exps, by_id, seed))
    items = [EvalItem(e, None if e.generated or e.example_id not in by_id
                      else by_id[e.example_id].label,
                      _reference(e, by_id.get(e.example_id)), e.targets[0]) for e in exps]
    values: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
    analyses = [(j, m) for j, m in enumerate(ms) if isinstance(m, Analysis)]
    model_metrics = [(j, m) for j, m in enumerate(ms)
                     if "model" in m.needs and not isinstance(m, Analysis)]
    used = None
    if model_metrics:
        if model is None:
            raise InputError("removal metrics need the model")
        used = _used_operator(model, operator, target_fn, replacement, generative)
        values.update(_generated_values(model, items, model_metrics, target_fn, replacement)
                      if generative else _removal_values(model, items, model_metrics, operator))
    if analyses:
        if model is None:
            raise InputError(f"{analyses[0][1].name} needs the model")
        values.update(run_analyses(model, items, analyses))
    for j, m in enumerate(ms):
        if "model" in m.needs:
            continue
        for i, it in enumerate(items):
            values[(i, j)] = m.value(it)
    rows = []
    for i, it in enumerate(items):
        e = it.explanation
        pred = None if e.generated else e.predicted
        for j, m in enumerate(ms):
            v, detail = values[(i, j)]
            rows.append({
                "example_id": e.example_id, "explainer": e.explainer, "metric": m.name,
                "value": v, "family": m.family, "higher_is_better": m.higher_is_better,
                "label": it.label, "predicted": pred,
                "correct": None if it.label is None else bool(pred == it.label),
                "target": it.target, "n_units": it.n_units, "granularity": e.granularity,
                "model_id": e.model_id,
                "operator": used if "model" in m.needs and not isinstance(m, Analysis)
                else None, "detail": detail})
    return pd.DataFrame(rows, columns=COLUMNS)


def _used_operator(model: Any, operator: str, target_fn: Any, replacement: str,
                   generative: bool) -> str:
    """The operator removal metrics actually apply (recorded in every row)."""
    if generative:
        from .generation.explain import ScalarizedLM
        from .generation.scalarizers import get_scalarizer

        return ScalarizedLM(model, get_scalarizer(target_fn), replacement).mask_operator(operator)
    if operator not in OPERATORS:
        raise InputError(f"operator must be one of {', '.join(OPERATORS)}, got {operator!r}")
    return applied_operator(model, operator)


def _without_random(exps: list[Explanation]) -> dict[tuple[str, str], Explanation]:
    """(example id, granularity) -> the first explanation of each example and granularity
    that has no ``random`` explanation yet (the random baseline is made for these)."""
    have = {(e.example_id, e.granularity) for e in exps if e.explainer == "random"}
    todo: dict[tuple[str, str], Explanation] = {}
    for e in exps:
        key = (e.example_id, e.granularity)
        if key not in have:
            todo.setdefault(key, e)
    return todo


def _random_baseline(model: ModelAdapter, exps: list[Explanation], by_id: Mapping[str, Example],
                     seed: int) -> list[Explanation]:
    out = []
    for (ex_id, gran), e in _without_random(exps).items():
        example = by_id.get(ex_id) or Example(id=ex_id, text=e.text, pair=e.pair)
        out += explain(model, [example], ["random"], granularity=gran, target=list(e.targets),
                       target_fn=e.target_fn, seed=seed)
    return out


def _random_generated(model: Any, exps: list[Explanation], seed: int) -> list[Explanation]:
    """The random explainer on the units (and levels) of each explained prompt."""
    from .explainers.perturbation import RandomExplainer
    from .generation.explain import attribute_items, gen_item
    from .generation.scalarizers import LogProb

    out = []
    for e in _without_random(exps).values():
        item = dataclasses.replace(gen_item(e), targets=e.targets, seed=seed)
        (r,) = attribute_items(model, [item], RandomExplainer(), LogProb(), levels=(),
                               granularity=e.granularity, seed=seed)
        out.append(dataclasses.replace(r, target_fn=e.target_fn, target_labels=e.target_labels,
                                       info={k: v for k, v in r.info.items()
                                             if k not in ("units_per_round",)}))
    return out


def _generated_values(
    lm: Any, items: list[EvalItem], model_metrics: list[tuple[int, Metric]], target_fn: Any,
    replacement: str,
) -> dict[tuple[int, int], tuple[float, dict[str, Any]]]:
    """Removal metrics of explanations of generated text: the masks of every metric of every
    explanation -> perturbed prompts -> one scoring pass with the target of generated text."""
    from .generation.explain import ScalarizedLM, gen_item
    from .generation.scalarizers import SameOutput, get_scalarizer
    from .metrics.faithfulness import FlipRate

    gens = [gen_item(it.explanation) for it in items]
    scored = ScalarizedLM(lm, get_scalarizer(target_fn), replacement)
    removal = [(j, m) for j, m in model_metrics if not isinstance(m, FlipRate)]
    flip_plan = [(i, j) for i in range(len(items)) for j, m in model_metrics
                 if isinstance(m, FlipRate)]
    flip_masks = [dict(model_metrics)[j].masks(items[i]) for i, j in flip_plan]
    plan: list[tuple[int, int, int, int]] = []
    masks: list[np.ndarray] = []
    for i, g in enumerate(gens):  # row 0 of each prompt: the prompt itself
        ms, rows = _metric_masks(items, [i], removal, start=1)
        masks.append(np.concatenate([np.ones((1, g.n_units), bool), *ms]))
        plan += rows
    values = scored.score_unit_masks(gens, masks)
    metric_of = dict(model_metrics)
    out: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
    for i, j, a, b in plan:
        out[(i, j)] = metric_of[j].from_probs(items[i], values[i][0], values[i][a:b])
    if flip_plan:
        flips = ScalarizedLM(lm, SameOutput(), replacement)
        same = flips.score_unit_masks([gens[i] for i, _ in flip_plan], flip_masks)
        for (i, j), mk, s in zip(flip_plan, flip_masks, same, strict=True):
            out[(i, j)] = (float(1.0 - s[0, 0]), {"k": int((~mk[0]).sum()),
                                                   "output_changed": bool(s[0, 0] < 1)})
    return out


def _metric_masks(items: list[EvalItem], idx: list[int], model_metrics: list[tuple[int, Metric]],
                  *, start: int = 0) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    """The unit masks of every metric for the explanations ``idx`` of one example, stacked in
    order, and per (explanation, metric) its rows ``[a, b)`` counted from ``start``."""
    masks: list[np.ndarray] = []
    rows: list[tuple[int, int, int, int]] = []
    for i in idx:
        for j, m in model_metrics:
            mk = m.masks(items[i])
            masks.append(mk)
            rows.append((i, j, start, start + len(mk)))
            start += len(mk)
    return masks, rows


def _removal_values(
    model: ModelAdapter, items: list[EvalItem], model_metrics: list[tuple[int, Metric]],
    operator: str,
) -> dict[tuple[int, int], tuple[float, dict[str, Any]]]:
    """All removal metrics of all explanations: masks -> one scoring pass -> values."""
    groups: dict[tuple[str, str, str | None, str], list[int]] = {}
    for i, it in enumerate(items):
        e = it.explanation
        groups.setdefault((e.example_id, e.text, e.pair, e.granularity), []).append(i)
    prepared_by: dict[tuple[str, str, str | None, str], Prepared] = {}
    for gran in sorted({k[3] for k in groups}):
        sub = [k for k in groups if k[3] == gran]
        ps = prepare(model, [Example(id=k[0], text=k[1], pair=k[2]) for k in sub],
                     granularity=gran, target="all")
        prepared_by.update(zip(sub, ps, strict=True))
    plans: list[tuple[Prepared, list[tuple[int, int, int, int]], list[np.ndarray]]] = []
    for key, idx in groups.items():
        p = prepared_by[key]
        for i in idx:
            if items[i].explanation.units != p.units:
                raise InputError(f"example {key[0]}: explanation units differ from this "
                                 "model's units (another tokenizer or granularity?)")
        masks, rows = _metric_masks(items, idx, model_metrics)
        plans.append((p, rows, masks))
    probs = score_masks(model, [p for p, _, _ in plans],
                        [np.concatenate(ms) for _, _, ms in plans], get_target("prob"),
                        operator=operator)
    out: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
    metric_of = dict(model_metrics)
    for (p, rows, _), pr in zip(plans, probs, strict=True):
        full = softmax(p.logits)
        for i, j, a, b in rows:
            out[(i, j)] = metric_of[j].from_probs(items[i], full, pr[a:b])
    return out





def summarize(df: pd.DataFrame, by: Sequence[str] = ("explainer", "metric"), *,
              n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
              pooled: bool = True) -> pd.DataFrame:
    """Mean with a bootstrap confidence interval per group (e.g. add ``"label"`` to break
    results down by gold label).

    The ``aggregate`` column says which quantity ``mean`` holds. ``"mean"``: the mean of the
    per-example values (NaNs left out), for every metric; for token_f1 and iou_f1 that is the
    mean of per-example F1s. With ``pooled`` (the default), ``"metric"`` among ``by`` and the
    rows' ``detail``, each token_f1 / iou_f1 group is followed by ERASER's dataset-level F1s
    (DeYoung et al. 2020), computed from the counts in ``detail``: rows whose metric is
    ``"token_f1 (micro)"``, ``"token_f1 (macro)"``, ``"iou_f1 (micro)"``, ``"iou_f1 (macro)"``
    and whose aggregate is ``"micro"`` (F1 of the precision and recall of the counts pooled
    over the examples) or ``"macro"`` (ERASER's macro; for token_f1 the mean of per-example F1,
    for iou_f1 the F1 of mean precision and mean recall). Definitions:
    :mod:`faithscope.metrics.plausibility`. Their interval is a percentile bootstrap over the
    examples and ``n`` the number of examples pooled."""
    rows = []
    by = list(by)
    for key, g in df.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        keys = dict(zip(by, key, strict=True))
        mean, lo, hi = bootstrap_ci(g["value"].to_numpy(dtype=np.float64), n_boot=n_boot,
                                    ci=ci, seed=seed)
        up = bool(g["higher_is_better"].iloc[0])
        rows.append({**keys, "mean": mean, "ci_low": lo, "ci_high": hi,
                     "n": int(g["value"].notna().sum()), "higher_is_better": up,
                     "aggregate": "mean"})
        if pooled and "metric" in keys and "detail" in g.columns:
            for agg, (m, low, high, n) in _pooled(str(keys["metric"]), g["detail"], n_boot=n_boot,
                                                  ci=ci, seed=seed).items():
                rows.append({**keys, "metric": f"{keys['metric']} ({agg})", "mean": m,
                             "ci_low": low, "ci_high": high, "n": n, "higher_is_better": up,
                             "aggregate": agg})
    return pd.DataFrame(rows)


def _pooled(metric: str, details: Iterable[Any], *, n_boot: int, ci: float, seed: int
            ) -> dict[str, tuple[float, float, float, int]]:
    """ERASER's pooled values of ``metric`` from its rows' details (dicts, or JSON text as
    stored by studies): aggregate -> (value, ci_low, ci_high, examples); empty for a metric
    without pooled values or rows without counts."""
    import json

    from .metrics.plausibility import POOLED

    cls = POOLED.get(metric)
    if cls is None:
        return {}
    stats = []
    for d in details:
        if isinstance(d, str):
            try:
                d = json.loads(d)
            except ValueError:
                continue
        s = cls.example_stats(d) if isinstance(d, Mapping) else None
        if s is not None:
            stats.append(s)
    if not stats:
        return {}
    x = np.asarray(stats, dtype=np.float64)
    n = len(x)
    point = cls.pooled(x.sum(axis=0))
    boot: dict[str, list[np.ndarray]] = {a: [] for a in point}
    rng = np.random.default_rng(seed)
    step = max(1, min(n_boot, 4_000_000 // n))  # resamples per chunk: bounded memory
    for start in range(0, n_boot if n > 1 else 0, step):
        m = min(step, n_boot - start)
        idx = rng.integers(0, n, size=(m, n)) + n * np.arange(m)[:, None]
        weights = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n)
        for a, v in cls.pooled(weights @ x).items():
            boot[a].append(v)
    out = {}
    for a, v in point.items():
        val = float(v)
        if boot[a]:
            lo, hi = np.quantile(np.concatenate(boot[a]), [(1 - ci) / 2, 1 - (1 - ci) / 2])
            out[a] = (val, float(lo), float(hi), n)
        else:
            out[a] = (val, val, val, n)
    return out

