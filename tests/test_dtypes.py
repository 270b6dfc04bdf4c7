"""Reduced precision: a bf16 model explains through the same engine, close to fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import faithscope as fs
from faithscope.models.tiny import tiny_classifier


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny16")
    tiny = tiny_classifier(seed=5, hidden=64)
    tiny.model.save_pretrained(path)
    tiny.tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("name", ["integrated_gradients", "lime", "gradient_x_input"])
def test_bf16_matches_fp32_ranking(saved_tiny, name):
    fp32 = fs.load_model(saved_tiny, device="cpu", dtype="float32")
    bf16 = fs.load_model(saved_tiny, device="cpu", dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16
    texts = ["a wonderful , witty and charming film", "the plot is a dull and tedious mess"]
    params = {"lime": {"n_samples": 200}, "integrated_gradients": {"n_steps": 16}}
    spec = [(name, params.get(name, {}))]
    a = fs.explain(fp32, texts, spec, target_fn="logit")
    b = fs.explain(bf16, texts, spec, target_fn="logit")
    for x, y in zip(a, b, strict=True):
        assert y.scores.dtype == np.float32 and np.isfinite(y.scores).all()
        assert spearmanr(x.scores[0], y.scores[0])[0] > 0.8, (x.scores, y.scores)


def test_bad_dtype_is_an_input_error(saved_tiny):
    with pytest.raises(fs.InputError, match="dtype"):
        fs.load_model(saved_tiny, dtype="float8")
