"""Integration: MiniLM-L6 fine-tuned on planted-feature SST-2 (bundled data).

The planted word is the only predictive feature, so a faithful explainer must rank it first.
"""

from __future__ import annotations

import numpy as np
import pytest

import faithscope as fs
from faithscope.data import load_dataset
from faithscope.demo import default_encoder
from faithscope.models.finetune import Recipe, finetune
from helpers import torch_threads

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    with torch_threads(2):
        train = load_dataset("sst2_planted", bundled=True, split="train", n=800, seed=0)
        dev = load_dataset("sst2_planted", bundled=True, split="dev", n=50, seed=0)
        model, info = finetune(default_encoder(), list(train.examples), labels=train.labels,
                               dev=list(dev.examples), device="cpu",
                               recipe=Recipe(epochs=2, batch_size=32, lr=1e-4, seed=0),
                               cache_dir=tmp_path_factory.mktemp("planted"))
        yield model, info, dev


def test_planted_model_learns_the_planted_word(planted):
    _, info, dev = planted
    assert info["dev_accuracy"] >= 0.95
    # the labels were shuffled: the original sentiment no longer predicts the label
    agree = np.mean([ex.meta["original_label"] == ex.label for ex in dev.examples])
    assert 0.2 < agree < 0.8


def test_faithful_explainers_find_the_planted_word(planted):
    model, _, dev = planted
    exps = fs.explain(model, list(dev.examples),
                      [("integrated_gradients", {"n_steps": 32}), ("lime", {"n_samples": 200}),
                       ("kernel_shap", {"n_samples": 200})], seed=0)
    df = fs.evaluate(exps, model, ["gt_overlap", "mean_rank"], examples=dev.examples)
    s = fs.summarize(df, n_boot=200).set_index(["explainer", "metric"])["mean"]
    for name in ("integrated_gradients", "lime", "kernel_shap"):
        assert s[(name, "gt_overlap")] >= 0.9, s
    # evaluate() adds the random baseline on the same examples (same units)
    chance = np.mean([1 / e.scores.shape[1] for e in exps if e.explainer == "lime"])
    assert abs(s[("random", "gt_overlap")] - chance) < 0.1, (s, chance)
    assert s[("random", "mean_rank")] > 3 * s[("integrated_gradients", "mean_rank")]
