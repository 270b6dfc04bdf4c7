"""Audit budgets and the study an audit runs (a study with a fixed plan).

A budget fixes every cost knob of an audit, so that two audits with the same budget are the same
measurement: the number of examples, the sample counts and path steps of the explainers, how
many examples the costly checks re-explain (layer randomization re-runs an explainer once per
parameter group; sensitivity once per noise sample; sampling stability once), and the size of the
planted-feature fine-tune. The budget in force is written into the audit's JSON, HTML and
terminal output.

Measured on a 2-core CPU with MiniLM-L6 on 50 SST-2 dev sentences: see the README's audit
section (``fast`` is sized to finish in under 5 minutes there).

Example
-------
>>> from faithscope.audits.budgets import BUDGETS, explainer_specs
>>> BUDGETS["fast"].n, BUDGETS["fast"].samples
(50, 100)
>>> [(e.name, e.params) for e in explainer_specs(BUDGETS["fast"], ["lime", "gradient"])]
[('lime', {'n_samples': 100}), ('gradient', {})]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..studies.spec import DatasetSpec, ExplainerSpec, ModelSpec, StudySpec


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Every cost setting of an audit (see the module docstring)."""

    name: str
    n: int  # evaluation examples (unless the user gives --n)
    ig_steps: int  # Integrated Gradients path steps
    samples: int  # LIME / KernelSHAP / Shapley sampling perturbations per example
    max_evals: int  # PartitionSHAP model evaluations per example
    sanity_n: int  # examples re-explained per randomization step
    stability_n: int  # examples re-explained with a second sampling seed
    sensitivity_n: int  # examples re-explained under input noise (10 samples each; 0: not run)
    planted_train_n: int  # training examples of the planted-feature fine-tune
    planted_n: int  # planted evaluation examples
    planted_recipe: dict[str, Any]  # the planted fine-tune's recipe
    n_boot: int = 1000  # bootstrap resamples of every confidence interval

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PLANTED_FAST = {"epochs": 1, "batch_size": 16, "lr": 3e-4, "patience": None, "max_length": 64}
BUDGETS: dict[str, Budget] = {
    "fast": Budget(name="fast", n=50, ig_steps=16, samples=100, max_evals=100, sanity_n=3,
                   stability_n=10, sensitivity_n=0, planted_train_n=300, planted_n=25,
                   planted_recipe=_PLANTED_FAST),
    "standard": Budget(name="standard", n=200, ig_steps=32, samples=500, max_evals=500,
                       sanity_n=20, stability_n=50, sensitivity_n=10, planted_train_n=2000,
                       planted_n=100, planted_recipe=_PLANTED_FAST),
    "thorough": Budget(name="thorough", n=500, ig_steps=64, samples=1000, max_evals=1000,
                       sanity_n=50, stability_n=100, sensitivity_n=25, planted_train_n=8000,
                       planted_n=250,
                       planted_recipe={"epochs": 1, "batch_size": 16, "lr": 5e-5,
                                       "patience": None, "max_length": 96}),
}

# Every attribution method that can apply to a classifier; the audit probes each on the model and
# lists the ones that do not apply with the reason. Generated text: the perturbation and gradient
# families and MExGen.
CLASSIFIER_EXPLAINERS = ("gradient", "gradient_x_input", "integrated_gradients", "lime",
                         "kernel_shap", "partition_shap", "leave_one_out", "attention",
                         "attention_rollout", "lrp")
GENERATIVE_EXPLAINERS = ("leave_one_out", "gradient", "gradient_x_input", "integrated_gradients",
                         "lime", "kernel_shap", "partition_shap", "mexgen_clime")

FAITHFULNESS = ("comprehensiveness", "sufficiency", "aopc_comprehensiveness", "aopc_sufficiency")
PLAUSIBILITY = ("token_f1", "auprc")  # scored only where the data has human rationales
CHECKS = ("randomization", "sampling_stability", "avg_sensitivity")
PLANTED_METRICS = ("gt_overlap", "mean_rank")


def explainer_params(budget: Budget, name: str) -> dict[str, Any]:
    """The budget's sample count or path steps of explainer ``name`` (empty: defaults)."""
    if name == "integrated_gradients":
        return {"n_steps": budget.ig_steps}
    if name in ("lime", "kernel_shap"):
        return {"n_samples": budget.samples}
    if name == "shapley_sampling":  # a permutation costs units + 1 rows: ~LIME's at 20 units
        return {"n_permutations": max(2, round(budget.samples / 20))}
    if name == "mexgen_clime":  # queries = oversampling x units: LIME's budget at 20 units
        return {"oversampling": budget.samples / 20}
    if name == "partition_shap":
        return {"max_evals": budget.max_evals}
    return {}


def explainer_specs(budget: Budget, names: Sequence[str]) -> list[ExplainerSpec]:
    """The explainers with the budget's sample counts and steps (other settings: defaults)."""
    return [ExplainerSpec(name=n, params=explainer_params(budget, n)) for n in names]


def audit_spec(*, source: str, data: str, data_params: dict[str, Any], split: str, n: int,
               explainers: Sequence[str], budget: Budget, planted: bool, train_split: str,
               generative: bool, max_length: int, seed: int, device: str) -> StudySpec:
    """The study an audit runs: the model as it is on the user's data (faithfulness,
    plausibility, sanity, stability, robustness) and, with ``planted``, a copy fine-tuned on
    the same data with a planted feature (ground truth)."""
    model = ModelSpec(name="model", path=source, kind="generative" if generative else None)
    if generative:
        metrics: tuple[str, ...] = FAITHFULNESS
        caps: dict[str, int] = {}
    else:
        caps = {"randomization": budget.sanity_n, "sampling_stability": budget.stability_n,
                "avg_sensitivity": budget.sensitivity_n}
        caps = {k: v for k, v in caps.items() if v > 0}
        metrics = FAITHFULNESS + PLAUSIBILITY + tuple(m for m in CHECKS if m in caps)
    datasets = [DatasetSpec(name=data, split=split, n=n, seed=seed, params=data_params,
                            finetune=False, metrics=metrics, metric_n=caps, accuracy_n=n)]
    if planted:
        datasets.append(DatasetSpec(
            name="planted", split=split, n=min(n, budget.planted_n), seed=seed,
            train_split=train_split, train_n=budget.planted_train_n,
            params={"base": data, **data_params}, metrics=PLANTED_METRICS,
            accuracy_n=budget.planted_n))
    return StudySpec(name="audit", models=(model,), datasets=tuple(datasets),
                     explainers=tuple(explainer_specs(budget, explainers)), seeds=(seed,),
                     max_length=max_length, device=device,
                     target_fn="log_prob" if generative else "prob",
                     recipe=dict(budget.planted_recipe, seed=seed))
