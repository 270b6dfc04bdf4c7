"""Seeded fine-tuning of a classification head (+ encoder), cached by content hash.

The cache key hashes (base model id + revision, training texts and labels, recipe, seed), so the
demo, tests and studies reuse a checkpoint instead of retraining. Checkpoints are written to a
temporary folder and renamed into place, so an interrupted run never leaves a half checkpoint.

Example
-------
>>> import tempfile
>>> from faithscope.data import Example
>>> from faithscope.models.finetune import Recipe, finetune
>>> from faithscope.models.tiny import tiny_classifier
>>> tiny = tiny_classifier()
>>> base = tempfile.mkdtemp()
>>> tiny.model.save_pretrained(base); tiny.tokenizer.save_pretrained(base)  # doctest: +ELLIPSIS
(...)
>>> data = [Example(str(i), t, label=y) for i, (t, y) in enumerate([("good film", 1),
...         ("bad film", 0)] * 8)]
>>> cache = tempfile.mkdtemp()
>>> adapter, info = finetune(base, data, recipe=Recipe(epochs=2, batch_size=4, lr=1e-3),
...                          dev=data, cache_dir=cache, device="cpu")
>>> info["cached"], info["dev_accuracy"]
(False, 1.0)
>>> finetune(base, data, recipe=Recipe(epochs=2, batch_size=4, lr=1e-3), cache_dir=cache,
...          device="cpu")[1]["cached"]
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.example import Example
from .adapter import InputError, ModelAdapter
from .loading import _quiet_transformers, load_model

FINETUNE_CODE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Fine-tuning hyper-parameters, stored verbatim in the checkpoint's metadata."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    max_length: int = 64
    seed: int = 0
    train_encoder: bool = True  # False: only the classification head is trained

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_length < 2:
            raise InputError(f"invalid fine-tuning recipe: {self}")


def cache_root() -> Path:
    env = os.environ.get("FAITHSCOPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "faithscope"


def cache_key(base: ModelAdapter, train: Sequence[Example], recipe: Recipe,
              labels: Sequence[str]) -> str:
    h = hashlib.sha256()
    meta = {"model": base.model_id, "revision": base.revision, "labels": list(labels),
            "recipe": dataclasses.asdict(recipe), "code": FINETUNE_CODE_VERSION}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for ex in train:
        h.update(f"{ex.text}\0{ex.pair}\0{ex.label}\n".encode())
    return h.hexdigest()[:16]


def accuracy(adapter: ModelAdapter, data: Sequence[Example]) -> float:
    """Accuracy on labelled examples (one batched pass through the adapter)."""
    if not data:
        return float("nan")
    encs = [adapter.encode(ex.text, ex.pair) for ex in data]
    pred = adapter.predict_proba(encs).argmax(-1)
    return float(np.mean(pred == np.array([ex.label for ex in data])))


def finetune(
    base: str | os.PathLike[str],
    train: Sequence[Example],
    *,
    recipe: Recipe | None = None,
    labels: Sequence[str] = ("negative", "positive"),
    dev: Sequence[Example] = (),
    device: str | None = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    max_batch_size: int = 64,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[ModelAdapter, dict[str, Any]]:
    """Fine-tune ``base`` on ``train`` (or load the cached result); returns (adapter, info).

    ``info`` holds the cache key and path, the recipe, training time, loss and, when ``dev`` is
    given, dev accuracy.
    """
    recipe = recipe or Recipe()
    if not train or any(ex.label is None for ex in train):
        raise InputError("fine-tuning needs labelled training examples")
    adapter = load_model(base, labels=tuple(labels), device=device, seed=recipe.seed,
                         max_batch_size=max_batch_size)
    key = cache_key(adapter, train, recipe, labels)
    root = Path(cache_dir) if cache_dir else cache_root() / "finetuned"
    target = root / key
    meta_file = target / "faithscope_finetune.json"
    if meta_file.exists():
        cached = json.loads(meta_file.read_text())
        tuned = load_model(target, device=device, max_batch_size=max_batch_size)
        tuned.model_id, tuned.revision = cached["model_id"], key
        return tuned, {**cached, "cached": True, "path": str(target)}
    t0 = time.perf_counter()
    losses = _train(adapter, train, recipe, progress)
    info: dict[str, Any] = {
        "model_id": f"{adapter.model_id}+ft:{key}", "base_model": adapter.model_id,
        "base_revision": adapter.revision, "recipe": dataclasses.asdict(recipe),
        "n_train": len(train), "labels": list(labels), "train_seconds": time.perf_counter() - t0,
        "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
    }
    adapter.model.eval()
    if dev:
        info["dev_accuracy"] = accuracy(adapter, dev)
        info["n_dev"] = len(dev)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
    try:
        with _quiet_transformers():
            adapter.model.save_pretrained(tmp)
            adapter.tokenizer.save_pretrained(tmp)
        (tmp / "faithscope_finetune.json").write_text(json.dumps(info, indent=2))
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not meta_file.exists():
            raise
    adapter.model_id, adapter.revision = info["model_id"], key
    return adapter, {**info, "cached": False, "path": str(target)}


def _train(adapter: ModelAdapter, train: Sequence[Example], recipe: Recipe,
           progress: Callable[[int, int, float], None] | None) -> list[float]:
    model, tok = adapter.model, adapter.tokenizer
    device = adapter.device
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    warm = max(1, int(recipe.warmup * total))
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    base = getattr(model, "base_model", None)
    frozen = set() if recipe.train_encoder or base is None else {id(p) for p in base.parameters()}
    for n, p in model.named_parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
            continue
        (no_decay if p.ndim < 2 or "norm" in n.lower() else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    labels = torch.tensor([ex.label for ex in train])
    losses: list[float] = []
    model.train()
    step = 0
    for _ in range(recipe.epochs):
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), recipe.batch_size):
            idx = order[i : i + recipe.batch_size].tolist()
            texts = [train[j].text for j in idx]
            pairs = [train[j].pair for j in idx]
            enc = tok(texts, pairs if pairs[0] is not None else None, padding=True,
                      truncation=True, max_length=recipe.max_length, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model(**enc, labels=labels[idx].to(device))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(decay + no_decay, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(out.loss.item())
            step += 1
            if progress is not None:
                progress(step, total, losses[-1])
    model.eval()
    return losses
