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


def test_head_only_finetuning_leaves_encoder_untouched(saved_tiny, tmp_path):
    from faithscope.data import Example
    from faithscope.models.finetune import Recipe, finetune

    data = [Example(str(i), t, label=y) for i, (t, y) in
            enumerate([("good film", 1), ("bad film", 0)] * 4)]
    before = fs.load_model(saved_tiny, device="cpu", labels=("negative", "positive"))
    tuned, info = finetune(saved_tiny, data, cache_dir=tmp_path, device="cpu",
                           recipe=Recipe(epochs=1, batch_size=4, lr=1e-2, train_encoder=False))
    enc_before = dict(before.model.base_model.named_parameters())
    for name, p in tuned.model.base_model.named_parameters():
        assert torch.equal(p, enc_before[name]), name
    head_changed = any(not torch.equal(p, dict(before.model.named_parameters())[n])
                       for n, p in tuned.model.named_parameters() if "classifier" in n)
    assert head_changed and info["recipe"]["train_encoder"] is False
