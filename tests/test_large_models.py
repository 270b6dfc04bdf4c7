"""Large models on one GPU, checked on CPU: placement keywords (dtype, device_map, 8/4-bit),
gradients within the chunker's memory bound, and the warning before a long model call."""

from __future__ import annotations

import warnings

import pytest
import torch

import faithscope as fs
from faithscope.models.generative import load_generative
from faithscope.models.loading import placement_kwargs
from helpers import ASSETS, save_tiny


def test_placement_keywords_and_refusals():
    assert placement_kwargs("bfloat16", None, None) == {"dtype": torch.bfloat16}
    assert placement_kwargs("float32", "auto", None)["device_map"] == "auto"
    with pytest.raises(fs.InputError, match="quantization must be one of"):
        placement_kwargs("float16", None, "3bit")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:  # this machine: a one-line refusal naming the extra
        with pytest.raises(fs.InputError, match=r"bitsandbytes.*faithscope\[quant\]"):
            placement_kwargs("float16", None, "4bit")


def test_device_map_auto_loads_and_explains(tmp_path):
    path = save_tiny(tmp_path / "m", seed=1)
    placed = fs.load_model(str(path), device_map="auto", dtype="bfloat16")
    plain = fs.load_model(str(path))
    assert next(placed.model.parameters()).dtype == torch.bfloat16
    e = fs.explain(placed, ["a fine film"], ["gradient"])[0]
    assert e.scores.shape == (1, 3)
    lm = load_generative(str(ASSETS / "stories260K"), device_map="auto", max_new_tokens=4)
    assert lm.generate(["Once upon a time"])[0]
    assert plain.predict_proba([plain.encode("a fine film")]).shape == (1, 2)


def test_integrated_gradients_never_backpropagates_more_than_one_chunk(tmp_path):
    """IG over many steps accumulates gradients chunk by chunk: no autograd graph ever holds
    more rows than max_batch_size (what keeps a 7B model within GPU memory)."""
    model = fs.load_model(str(save_tiny(tmp_path / "m", seed=2)), max_batch_size=4)
    seen: list[int] = []

    def record(module, args, out):
        if out.logits.requires_grad:  # a pass that will be differentiated
            seen.append(out.logits.shape[0])

    handle = model.model.register_forward_hook(record)
    try:
        fs.explain(model, ["a gorgeous , witty film", "a dull mess"],
                   [("integrated_gradients", {"n_steps": 16})])
    finally:
        handle.remove()
    assert seen and max(seen) <= 4
    assert model.stats.backward_rows == 2 * 16


def test_a_long_model_call_warns_before_the_rest_runs(tmp_path):
    model = fs.load_model(str(save_tiny(tmp_path / "m", seed=4)), max_batch_size=8)
    model.warn_seconds = 1e-6
    with pytest.warns(UserWarning, match=r"model rows in this call: about .* s at the rate"):
        fs.explain(model, ["a gorgeous , witty and moving film"], [("lime", {"n_samples": 64})])
    model.warn_seconds = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs.explain(model, ["a gorgeous , witty and moving film"], [("lime", {"n_samples": 64})])


def test_remote_code_is_refused_unless_asked(tmp_path):
    """A repository that ships its own model code is not run unless --trust-remote-code."""
    import io
    import json
    from contextlib import redirect_stderr

    from faithscope.cli import main

    repo = tmp_path / "custom"
    repo.mkdir()
    (repo / "config.json").write_text(json.dumps({
        "model_type": "faithscope-custom", "architectures": ["CustomForSequenceClassification"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}))
    (repo / "configuration_custom.py").write_text(
        "from transformers import PretrainedConfig\n"
        "class CustomConfig(PretrainedConfig):\n    model_type = 'faithscope-custom'\n")
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["explain", "--model", str(repo), "--text", "a fine film", "--explainer",
                     "gradient"])
    assert code == 2 and "--trust-remote-code" in err.getvalue(), err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1
