"""Load a Hugging Face classifier (hub id or local path) into a :class:`ModelAdapter`.

A checkpoint that already has a sequence-classification head is loaded as is. A bare encoder
checkpoint (``BertModel``, ``MPNetModel``...) gets a new, seeded classification head with
``num_labels`` outputs, ready for :func:`faithscope.models.finetune`.

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> tiny = tiny_classifier()
>>> import tempfile
>>> path = tempfile.mkdtemp()
>>> tiny.model.save_pretrained(path); tiny.tokenizer.save_pretrained(path)  # doctest: +ELLIPSIS
(...)
>>> adapter = fs.load_model(path, device="cpu")     # or a hub id, e.g. "textattack/bert-base-uncased-SST-2"
>>> adapter.num_labels
2
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .adapter import InputError, ModelAdapter

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
          "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


class ModelLoadError(InputError):
    """The model could not be found or loaded."""


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _local_revision(path: Path) -> str | None:
    """A short content fingerprint of a local checkpoint (config + weight file sizes)."""
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    return "local-" + h.hexdigest()[:12]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars (we report new heads ourselves)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    num_labels: int | None = None,
    labels: tuple[str, ...] | list[str] | None = None,
    device: str | None = "auto",
    dtype: str = "float32",
    max_batch_size: int = 64,
    max_length: int | None = None,
    revision: str | None = None,
    seed: int = 0,
    attn_implementation: str | None = "eager",
    tokenizer: Any = None,
) -> ModelAdapter:
    """Load a sequence classifier (or an encoder plus a new head) and wrap it in an adapter.

    ``attn_implementation="eager"`` lets attention explainers read attention weights; pass
    ``"sdpa"`` for speed when only gradients or perturbations are needed (the adapter switches to
    eager temporarily when attentions are asked for, where the model supports it).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    name = str(name_or_path)
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    local = Path(name).expanduser()
    looks_local = local.exists() or name.startswith((".", "/", "~")) or os.sep in name.strip("/")
    if looks_local and not local.exists():
        raise ModelLoadError(f"model path {name!r} does not exist")
    try:
        config = AutoConfig.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load model {name!r}: {str(err).splitlines()[0]}") from None
    n = len(labels) if labels else num_labels
    has_head = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    kw: dict[str, Any] = {"revision": revision, "dtype": DTYPES[dtype]}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if n is not None and (not has_head or n != config.num_labels):
        kw["num_labels"] = n
    if labels:
        kw["id2label"] = dict(enumerate(labels))
        kw["label2id"] = {v: k for k, v in enumerate(labels)}
    torch.manual_seed(seed)  # a new head is initialised reproducibly
    with warnings.catch_warnings(), _quiet_transformers():
        warnings.simplefilter("ignore")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(name, **kw)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot load model {name!r}: {str(err).splitlines()[0]}") from None
    tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(name)
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(f"{name!r} has no fast tokenizer: character offsets are required")
    model.to(resolve_device(device))
    rev = revision or getattr(config, "_commit_hash", None) or _local_revision(local)
    return ModelAdapter(
        model,
        tok,
        model_id=name,
        revision=rev,
        max_batch_size=max_batch_size,
        max_length=max_length,
        labels=tuple(labels) if labels else (),
    )
