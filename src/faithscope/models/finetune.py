"""Seeded fine-tuning of a classification head (+ encoder, or LoRA adapters), cached by hash.

The cache key hashes (base model id + revision, training texts and labels, recipe, seed, and the
dev set when it is used for early stopping), so the demo, tests and studies reuse a checkpoint
instead of retraining. Checkpoints are written to a temporary folder and renamed into place, so
an interrupted run never leaves a half checkpoint.

The default :class:`Recipe` is the published schedule: 10 epochs, batch 16, lr 5e-5 with linear
warm-up over 6 % of the steps then linear decay, and early stopping on validation accuracy with
patience 5 (the best epoch's weights are restored). Validation uses ``dev`` when given, else a
seeded ``val_fraction`` of the training examples held out. With ``lora_r`` set, only LoRA adapters
(via ``peft``) and the classification head are trained; the adapters are merged before saving, so
the checkpoint loads as a plain transformers model. With ``train_layers=N`` only the last ``N``
transformer layers and what follows them (final norm, pooler, classification head) are trained;
the embeddings and the earlier layers stay frozen (:func:`frozen_parameters`), which is several
times faster on a CPU. ``group_by_length`` batches sentences of similar length together (less
padding).

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
>>> info["cached"], info["dev_accuracy"], info["epochs_run"]
(False, 1.0, 2)
>>> finetune(base, data, recipe=Recipe(epochs=2, batch_size=4, lr=1e-3), dev=data,
...          cache_dir=cache, device="cpu")[1]["cached"]
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..data.example import Example
from . import lora
from .adapter import InputError, ModelAdapter
from .loading import load_model, quiet_transformers

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

FINETUNE_CODE_VERSION = 2


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Fine-tuning hyper-parameters, stored verbatim in the checkpoint's metadata."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06  # fraction of steps with linear warm-up; then linear decay to 0
    max_length: int = 64
    seed: int = 0
    train_encoder: bool = True  # False: only the classification head is trained
    patience: int | None = 5  # early stopping (epochs without val. improvement); None: off
    val_fraction: float = 0.1  # held out of ``train`` for early stopping when no dev is given
    lora_r: int | None = None  # LoRA rank (needs peft); None: full fine-tuning
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = None  # None: chosen from the model's layer names
    # train only the last N transformer layers (+ final norm, pooler, head); None: per
    # train_encoder. Embeddings and earlier layers are frozen.
    train_layers: int | None = None
    # batches of similar length: shuffled, sorted by length in chunks of 50 batches, batch order
    # shuffled (like transformers' group_by_length); False: plain shuffled batches
    group_by_length: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lora_targets, (list, str)):
            targets = [self.lora_targets] if isinstance(self.lora_targets, str) else \
                self.lora_targets
            object.__setattr__(self, "lora_targets", tuple(targets))
        problems = [msg for bad, msg in [
            (not _is_int(self.epochs) or self.epochs < 1, "epochs must be an integer >= 1"),
            (not _is_int(self.batch_size) or self.batch_size < 1,
             "batch_size must be an integer >= 1"),
            (not _is_num(self.lr) or self.lr <= 0, "lr must be a finite number > 0"),
            (not _is_num(self.weight_decay) or self.weight_decay < 0,
             "weight_decay must be a finite number >= 0"),
            (not _is_num(self.warmup) or not 0 <= self.warmup <= 1, "warmup must be in [0, 1]"),
            (not _is_int(self.max_length) or self.max_length < 2,
             "max_length must be an integer >= 2"),
            (not _is_int(self.seed), "seed must be an integer"),
            (not isinstance(self.train_encoder, bool), "train_encoder must be a bool"),
            (self.patience is not None and (not _is_int(self.patience) or self.patience < 1),
             "patience must be None or an integer >= 1"),
            (not _is_num(self.val_fraction) or not 0 < self.val_fraction < 1,
             "val_fraction must be in (0, 1)"),
            (self.lora_r is not None and (not _is_int(self.lora_r) or self.lora_r < 1),
             "lora_r must be None or an integer >= 1"),
            (not _is_num(self.lora_alpha) or self.lora_alpha <= 0, "lora_alpha must be > 0"),
            (not _is_num(self.lora_dropout) or not 0 <= self.lora_dropout < 1,
             "lora_dropout must be in [0, 1)"),
            (self.lora_targets is not None and (not isinstance(self.lora_targets, tuple)
             or not self.lora_targets or not all(isinstance(t, str) and t
                                                 for t in self.lora_targets)),
             "lora_targets must be None or a non-empty tuple of module names"),
            (self.lora_r is not None and not self.train_encoder,
             "lora_r and train_encoder=False are exclusive (LoRA already freezes the encoder)"),
            (self.train_layers is not None
             and (not _is_int(self.train_layers) or self.train_layers < 0),
             "train_layers must be None or an integer >= 0"),
            (self.train_layers is not None and self.lora_r is not None,
             "train_layers and lora_r are exclusive"),
            (self.train_layers is not None and not self.train_encoder,
             "train_layers needs train_encoder=True (train_encoder=False freezes every layer)"),
            (not isinstance(self.group_by_length, bool), "group_by_length must be a bool"),
        ] if bad]
        if problems:
            raise InputError(f"invalid fine-tuning recipe: {'; '.join(problems)}")

    @property
    def early_stopping(self) -> bool:
        """Whether early stopping (and thus a validation set) is used."""
        return self.patience is not None and self.epochs > 1


# Recipe fields added after FINETUNE_CODE_VERSION 2: left out of the cache key at these values,
# so checkpoints cached before they existed keep their keys.
_NEW_FIELD_DEFAULTS: dict[str, Any] = {"train_layers": None, "group_by_length": False}


def _hashed_recipe(recipe: Recipe) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(recipe).items()
            if not (k in _NEW_FIELD_DEFAULTS and v == _NEW_FIELD_DEFAULTS[k])}


def cache_root() -> Path:
    env = os.environ.get("FAITHSCOPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "faithscope"


def _hash_examples(h: Any, data: Sequence[Example]) -> None:
    for ex in data:
        h.update(f"{ex.text}\0{ex.pair}\0{ex.label}\n".encode())


def cache_key(base: ModelAdapter, train: Sequence[Example], recipe: Recipe,
              labels: Sequence[str], *, dev: Sequence[Example] = ()) -> str:
    """Content hash of a fine-tuning run; ``dev`` counts only where it selects the model."""
    h = hashlib.sha256()
    meta = {"model": base.model_id, "revision": base.revision, "labels": list(labels),
            "recipe": _hashed_recipe(recipe), "code": FINETUNE_CODE_VERSION}
    h.update(json.dumps(meta, sort_keys=True).encode())
    _hash_examples(h, train)
    if dev:
        h.update(b"\0dev\0")
        _hash_examples(h, dev)
    return h.hexdigest()[:16]


def accuracy(adapter: ModelAdapter, data: Sequence[Example]) -> float:
    """Accuracy on the labelled examples of ``data`` (one batched pass through the adapter);
    NaN when none is labelled."""
    data = [ex for ex in data if ex.label is not None]
    if not data:
        return float("nan")
    encs = [adapter.encode(ex.text, ex.pair) for ex in data]
    pred = adapter.predict_proba(encs).argmax(-1)
    return float(np.mean(pred == np.array([ex.label for ex in data])))


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer layers of ``model``, bottom to top.

    Looks in the base model for ``encoder.layer`` (BERT, RoBERTa, MPNet, ELECTRA...), ``layers``
    (Llama, Mistral, Qwen...), ``transformer.layer`` (DistilBERT), ``h`` (GPT-2),
    ``encoder.layers`` or ``decoder.layers``; else the longest ``ModuleList`` of modules of one
    class. Raises :class:`InputError` when there is none.
    """
    base = getattr(model, "base_model", None) or model
    for path in ("encoder.layer", "layers", "transformer.layer", "h", "encoder.layers",
                 "decoder.layers", "model.layers"):
        mod: Any = base
        for part in path.split("."):
            mod = getattr(mod, part, None)
        if isinstance(mod, torch.nn.ModuleList) and len(mod):
            return mod
    lists = [m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m)
             and len({type(c) for c in m}) == 1]
    if not lists:
        raise InputError(f"train_layers: cannot find the transformer layers of "
                         f"{type(model).__name__} (no encoder.layer / layers / h list)")
    return max(lists, key=len)


def frozen_parameters(model: torch.nn.Module, n_layers: int) -> set[str]:
    """Names of the parameters that ``Recipe(train_layers=n_layers)`` freezes.

    Frozen: the embeddings (the base model's children that hold the input embeddings, are an
    ``nn.Embedding`` (e.g. GPT-2's positions) or are named ``*embed*``) and every transformer
    layer but the last ``n_layers``. Trained:
    those last layers and everything else (final norm, pooler, classification head).
    """
    layers = encoder_layers(model)
    if n_layers > len(layers):
        raise InputError(f"train_layers={n_layers}, but {type(model).__name__} has only "
                         f"{len(layers)} layers")
    frozen_modules: list[torch.nn.Module] = list(layers[: len(layers) - n_layers])
    base = getattr(model, "base_model", None) or model
    get_emb = getattr(model, "get_input_embeddings", None)
    emb = get_emb() if callable(get_emb) else None
    for name, child in base.named_children():
        if ("embed" in name.lower() or isinstance(child, torch.nn.Embedding)
                or (emb is not None and any(m is emb for m in child.modules()))):
            frozen_modules.append(child)
    ids = {id(p) for m in frozen_modules for p in m.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def validation_split(train: Sequence[Example], recipe: Recipe,
                     dev: Sequence[Example] = ()) -> tuple[list[Example], list[Example]]:
    """(examples to train on, validation examples) for ``recipe``.

    Without early stopping: all of ``train`` and no validation. With it: ``dev`` if given, else a
    seeded ``val_fraction`` (rounded, at least 1) of ``train``; training keeps the input order.
    """
    if not recipe.early_stopping:
        return list(train), []
    if dev:
        return list(train), list(dev)
    n = len(train)
    if n < 2:
        raise InputError("early stopping needs >= 2 training examples (or dev examples, or "
                         "Recipe(patience=None))")
    n_val = min(n - 1, max(1, int(recipe.val_fraction * n + 0.5)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(recipe.seed)).tolist()
    held = set(perm[:n_val])
    return ([ex for i, ex in enumerate(train) if i not in held],
            [train[i] for i in perm[:n_val]])


def finetune(
    base: str | os.PathLike[str],
    train: Sequence[Example],
    *,
    recipe: Recipe | None = None,
    labels: Sequence[str] = ("negative", "positive"),
    dev: Sequence[Example] = (),
    device: str | None = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    max_batch_size: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    model_id: str | None = None,
) -> tuple[ModelAdapter, dict[str, Any]]:
    """Fine-tune ``base`` on ``train`` (or load the cached result); returns (adapter, info).

    ``info`` holds the cache key and path, the recipe, training time, loss, the validation
    history (``val_history``, ``best_epoch``, ``epochs_run``, ``early_stopped``, ``n_val``), the
    number of trainable parameters and, when ``dev`` is given, dev accuracy (of the restored best
    epoch when early stopping is on).
    """
    recipe = recipe or Recipe()
    if not train or any(ex.label is None for ex in train):
        raise InputError("fine-tuning needs labelled training examples")
    if recipe.early_stopping and any(ex.label is None for ex in dev):
        raise InputError("dev examples used for early stopping must be labelled")
    fit, val = validation_split(train, recipe, dev)
    adapter = load_model(base, labels=tuple(labels), device=device, seed=recipe.seed,
                         max_batch_size=max_batch_size)
    if model_id is not None:  # e.g. a study's portable name of the base model
        adapter.model_id = model_id
    key = cache_key(adapter, train, recipe, labels, dev=dev if recipe.early_stopping else ())
    root = Path(cache_dir) if cache_dir else cache_root() / "finetuned"
    target = root / key
    meta_file = target / "faithscope_finetune.json"
    if meta_file.exists():
        cached = json.loads(meta_file.read_text())
        tuned = load_model(target, device=device, max_batch_size=max_batch_size)
        tuned.model_id, tuned.revision = cached["model_id"], key
        return tuned, {**cached, "cached": True, "path": str(target)}
    t0 = time.perf_counter()
    peft_model = None
    if recipe.lora_r is not None:
        peft_model = lora.wrap(adapter.model, r=recipe.lora_r, alpha=recipe.lora_alpha,
                               dropout=recipe.lora_dropout, targets=recipe.lora_targets,
                               seed=recipe.seed)
    run = _train(adapter, fit, val, recipe, progress)
    if peft_model is not None:
        adapter.model = lora.merge(peft_model)
    adapter.model.eval()
    losses = run.losses
    info: dict[str, Any] = {
        "model_id": f"{adapter.model_id}+ft:{key}", "base_model": adapter.model_id,
        "base_revision": adapter.revision, "recipe": dataclasses.asdict(recipe),
        "n_train": len(fit), "labels": list(labels), "train_seconds": time.perf_counter() - t0,
        "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
        "val_history": run.val_history, "best_epoch": run.best_epoch,
        "epochs_run": run.epochs_run, "early_stopped": run.epochs_run < recipe.epochs,
        "n_val": len(val), "trainable_params": run.trainable_params,
    }
    if dev:
        info["dev_accuracy"] = accuracy(adapter, dev)
        info["n_dev"] = len(dev)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
    try:
        with quiet_transformers():
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


def _batches(train: Sequence[Example], recipe: Recipe, gen: torch.Generator
             ) -> list[list[int]]:
    """One epoch's batches (indices into ``train``), drawn with ``gen``."""
    order = torch.randperm(len(train), generator=gen).tolist()
    bs = recipe.batch_size
    if not recipe.group_by_length:
        return [order[i : i + bs] for i in range(0, len(order), bs)]
    size = [len(ex.text) + len(ex.pair or "") for ex in train]  # characters: no tokenising
    chunk = bs * 50
    order = [j for c in range(0, len(order), chunk)
             for j in sorted(order[c : c + chunk], key=lambda j: -size[j])]
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    return [batches[k] for k in torch.randperm(len(batches), generator=gen).tolist()]


@dataclass
class _Run:
    losses: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    trainable_params: int = 0


def _train(adapter: ModelAdapter, train: Sequence[Example], val: Sequence[Example],
           recipe: Recipe, progress: Callable[[int, int, float], None] | None) -> _Run:
    model, tok = adapter.model, adapter.tokenizer
    device = adapter.device
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    warm = max(1, int(recipe.warmup * total))
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    trained: dict[str, torch.nn.Parameter] = {}  # what the optimiser updates, by name
    base = getattr(model, "base_model", None)
    frozen = set() if recipe.train_encoder or base is None else {id(p) for p in base.parameters()}
    if recipe.train_layers is not None:
        names = frozen_parameters(model, recipe.train_layers)
        frozen = {id(p) for n, p in model.named_parameters() if n in names}
    for n, p in model.named_parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
        if not p.requires_grad:  # frozen here, or by LoRA
            continue
        trained[n] = p
        (no_decay if p.ndim < 2 or "norm" in n.lower() else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    labels = torch.tensor([ex.label for ex in train])
    run = _Run(trainable_params=sum(p.numel() for p in trained.values()))
    best_acc, best_state, since_best = -math.inf, None, 0
    model.train()
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        for idx in _batches(train, recipe, gen):
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
            run.losses.append(out.loss.item())
            step += 1
            if progress is not None:
                progress(step, total, run.losses[-1])
        run.epochs_run = epoch
        if not val:
            continue
        model.eval()
        acc = accuracy(adapter, val)
        model.train()
        run.val_history.append(acc)
        if acc > best_acc:
            best_acc, run.best_epoch, since_best = acc, epoch, 0
            best_state = {n: p.detach().to("cpu", copy=True) for n, p in trained.items()}
        else:
            since_best += 1
            if recipe.patience is not None and since_best >= recipe.patience:
                break
    model.eval()
    if not val:
        run.best_epoch = run.epochs_run
    elif best_state is not None and run.best_epoch != run.epochs_run:
        with torch.no_grad():
            for n, p in trained.items():
                p.copy_(best_state[n])
    return run
