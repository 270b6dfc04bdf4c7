"""LoRA for sequence classifiers (decoder LMs such as ``LlamaForSequenceClassification``).

Used by :func:`faithscope.models.finetune.finetune` when ``Recipe.lora_r`` is set. ``peft`` is
imported lazily. The adapters are injected in place into the model's attention projections; the
classification head (every top-level module outside the backbone: ``score``, ``classifier``...)
stays fully trainable. After training, :func:`merge` folds the adapters into the weights so the
checkpoint is a plain transformers model again.

Example
-------
>>> from faithscope.models.lora import default_targets, head_modules
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier().model
>>> default_targets(model), head_modules(model)
(('query', 'value'), ['classifier'])
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._lazy import lazy_import
from .adapter import InputError

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

# Candidate target sets, tried in order; the first whose names all occur among the backbone's
# linear layers wins (Llama/Mistral/Qwen, BERT/RoBERTa, GPT-2, DistilBERT, GPT-NeoX/Falcon,
# ModernBERT, Phi-3, MPNet/T5).
TARGET_SETS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "v_proj"), ("query", "value"), ("c_attn",), ("q_lin", "v_lin"),
    ("query_key_value",), ("Wqkv",), ("qkv_proj",), ("q", "v"),
)


def _import_peft() -> Any:
    try:
        import peft
    except ImportError:
        raise InputError("LoRA fine-tuning (Recipe.lora_r) needs the peft package: "
                         "pip install peft") from None
    return peft


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """peft calls transformers APIs that emit deprecation warnings; they are not the user's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _backbone(model: torch.nn.Module) -> torch.nn.Module:
    prefix = getattr(model, "base_model_prefix", "")
    sub = getattr(model, prefix, None) if prefix else None
    return sub if isinstance(sub, torch.nn.Module) else model


def head_modules(model: torch.nn.Module) -> list[str]:
    """Top-level modules with parameters outside the backbone: the classification head."""
    backbone = _backbone(model)
    return [name for name, mod in model.named_children()
            if mod is not backbone and next(mod.parameters(), None) is not None]


def default_targets(model: torch.nn.Module) -> tuple[str, ...]:
    """LoRA target module names for ``model``, chosen from its backbone's linear layer names."""
    names = {name.rsplit(".", 1)[-1] for name, mod in _backbone(model).named_modules()
             if isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D"}
    for cand in TARGET_SETS:
        if all(c in names for c in cand):
            return cand
    raise InputError(f"cannot choose LoRA target modules for {type(model).__name__}: "
                     f"set Recipe.lora_targets to some of {sorted(names)[:20]}")


def wrap(model: torch.nn.Module, *, r: int, alpha: int, dropout: float,
         targets: tuple[str, ...] | None, seed: int, causal_lm: bool = False) -> Any:
    """Inject seeded LoRA adapters into ``model`` (in place); returns the ``PeftModel``.

    Afterwards only the adapters and the (copied) classification head require gradients; with
    ``causal_lm`` (an LM trained to answer with label words) the LM head stays frozen.
    """
    peft = _import_peft()
    config = peft.LoraConfig(
        task_type="CAUSAL_LM" if causal_lm else "SEQ_CLS", r=r, lora_alpha=alpha,
        lora_dropout=dropout, target_modules=list(targets or default_targets(model)),
        modules_to_save=None if causal_lm else head_modules(model),
    )
    torch.manual_seed(seed)  # LoRA A matrices are initialised randomly
    try:
        with _quiet():
            return peft.get_peft_model(model, config)
    except ValueError as err:
        raise InputError(f"LoRA: {str(err).splitlines()[0]}") from None


def merge(peft_model: Any) -> torch.nn.Module:
    """Fold the adapters (and the trained head copy) into a plain transformers model."""
    with _quiet():
        model: torch.nn.Module = peft_model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(True)
    return model
