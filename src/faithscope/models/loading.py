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
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import lazy_import
from ..paths import expand, is_local_name, portable
from .adapter import InputError, ModelAdapter

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}  # name -> torch dtype attribute


_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{7,})/")


class ModelLoadError(InputError):
    """The model could not be found or loaded."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve_name(name_or_path: str | os.PathLike[str]) -> tuple[str, bool]:
    """(what to hand to transformers, whether it is local) for a model name.

    Local when it exists or starts with ``/ . ~`` or ``pkg:`` (see :mod:`faithscope.paths`); a
    local name that does not exist raises :class:`ModelLoadError`; anything else is a Hub id.
    """
    name = str(name_or_path)
    text = expand(name) if (name.startswith("pkg:") or "${" in name) else name
    if is_local_name(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model path {name!r} does not exist")
        return str(path), True
    return text, False


def load_failure(name: str, err: BaseException, *, local: bool) -> ModelLoadError:
    """A one-line error saying what was tried: a local folder, or the Hub (and its cache)."""
    if "custom code" in str(err) or "trust_remote_code" in str(err):
        return ModelLoadError(f"model {name!r} ships its own model code, which is not run "
                              "unless you trust it: pass --trust-remote-code "
                              "(trust_remote_code=True)")
    if local:
        return ModelLoadError(f"cannot load model {name!r} (local folder): {_first_line(err)}")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    why = ("HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache" if offline
           else "offline, or no such model?")
    return ModelLoadError(f"model {name!r} is not a local path and could not be loaded from the "
                          f"Hugging Face Hub ({why}): {_first_line(err)}")


def hub_revision(where: str, revision: str | None) -> str | None:
    """The commit hash of a Hub model as resolved (from its cached ``config.json``), else None."""
    try:
        from transformers.utils import cached_file

        found = cached_file(where, "config.json", revision=revision)
    except Exception:  # noqa: BLE001  (no cache entry: the revision is simply unknown)
        return None
    m = _SNAPSHOT.search(Path(str(found)).as_posix()) if found else None
    return m.group(1) if m else None


QUANTIZATIONS = ("8bit", "4bit")


def placement_kwargs(dtype: str, device_map: str | None, quantization: str | None
                     ) -> dict[str, Any]:
    """``from_pretrained`` keywords for large models: the weights' dtype, ``device_map``
    (``"auto"``: spread over the GPUs, then CPU, by accelerate) and 8-bit / 4-bit weights
    (bitsandbytes, ``pip install faithscope[quant]``; 4-bit computes in the given ``dtype``, or
    bfloat16 when that is float32). A model placed this way is not moved afterwards."""
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    kw: dict[str, Any] = {"dtype": getattr(torch, DTYPES[dtype])}
    if quantization is not None:
        if quantization not in QUANTIZATIONS:
            raise InputError(f"quantization must be one of {QUANTIZATIONS}, got "
                             f"{quantization!r}")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise InputError(f"{quantization} weights need bitsandbytes and a CUDA GPU: "
                             "pip install 'faithscope[quant]'") from None
        compute = kw["dtype"] if kw["dtype"] != torch.float32 else torch.bfloat16
        kw["quantization_config"] = (BitsAndBytesConfig(load_in_8bit=True)
                                     if quantization == "8bit" else
                                     BitsAndBytesConfig(load_in_4bit=True,
                                                        bnb_4bit_compute_dtype=compute,
                                                        bnb_4bit_quant_type="nf4"))
        device_map = device_map or "auto"
    if device_map is not None:
        try:
            import accelerate  # noqa: F401
        except ImportError:
            raise InputError("device_map needs accelerate: pip install accelerate") from None
        kw["device_map"] = device_map
    return kw


def model_available(name_or_path: str | os.PathLike[str], *, timeout: float = 5.0) -> bool:
    """Whether a model can be loaded here without error: a local folder that exists, a Hub id
    whose ``config.json`` is in the local Hugging Face cache, or (unless ``HF_HUB_OFFLINE``) a
    Hub id the Hub answers for within ``timeout`` seconds."""
    try:
        where, local = resolve_name(name_or_path)
    except ModelLoadError:
        return False
    if local:
        return Path(where, "config.json").exists()
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(where, "config.json"), str):
            return True  # in the local cache: no network needed
    except Exception:  # noqa: BLE001  (an id the cache cannot even parse)
        return False
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(where, timeout=timeout)
    except Exception:  # noqa: BLE001  (no network, unknown id, gated: not available here)
        return False
    return True


def model_id_for(name: str, location: str) -> str:
    """The id recorded in results: ``pkg:`` / hub ids as given, package folders as ``pkg:``."""
    if name.startswith("pkg:"):
        return name
    return portable(location, keep_absolute=True) if Path(location).is_absolute() else name


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None): CUDA when available, else CPU; a named device that this machine does
    not have raises :class:`InputError` (one line, before any model is loaded)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"unknown device {device!r}: {_first_line(err)}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but no CUDA GPU is available "
                             "(use --device cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} asked for, but MPS is not available")
    return dev


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
def quiet_transformers() -> Iterator[None]:
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
    max_batch_size: int | None = None,
    max_length: int | None = None,
    revision: str | None = None,
    seed: int = 0,
    attn_implementation: str | None = None,
    tokenizer: Any = None,
    require_head: bool = False,
    device_map: str | None = None,
    quantization: str | None = None,
    trust_remote_code: bool = False,
) -> ModelAdapter:
    """Load a sequence classifier (or an encoder plus a new head) and wrap it in an adapter.

    ``attn_implementation``: None (default) takes transformers' choice, fused SDPA attention
    where the architecture supports it and eager attention otherwise (eager costs about 4 % per
    forward pass of MiniLM-L6 on a CPU); the attention explainers, LRP and the attacks that
    need second derivatives switch to eager attention while they run
    (:meth:`~faithscope.models.adapter.ModelAdapter.eager_attention`). Pass ``"eager"`` to keep
    it throughout.
    ``require_head``: refuse (ModelLoadError) a checkpoint without a trained sequence
    classification head instead of adding a new, randomly initialised one. ``device_map`` /
    ``quantization`` place large models (:func:`placement_kwargs`); ``device`` is then ignored.
    A model whose repository ships its own code is refused unless ``trust_remote_code``.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    name = str(name_or_path)
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    device_ = resolve_device(device)
    where, is_local = resolve_name(name)
    local = Path(where)
    try:
        config = AutoConfig.from_pretrained(where, revision=revision,
                                            trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001  (OSError, ValueError, JSON and hub errors alike)
        raise load_failure(name, err, local=is_local) from None
    n = len(labels) if labels else num_labels
    has_head = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    if require_head and not has_head:
        archs = ", ".join(config.architectures or []) or "none named"
        raise ModelLoadError(f"{name!r} has no classification head (architectures: {archs}); "
                             "fine-tune it on labelled data first, or point at a fine-tuned "
                             "checkpoint")
    kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code,
                          **placement_kwargs(dtype, device_map, quantization)}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if n is not None and (not has_head or n != config.num_labels):
        kw["num_labels"] = n
    if labels:
        kw["id2label"] = dict(enumerate(labels))
        kw["label2id"] = {v: k for k, v in enumerate(labels)}
    torch.manual_seed(seed)  # a new head is initialised reproducibly
    with warnings.catch_warnings(), quiet_transformers():
        warnings.simplefilter("ignore")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(where, **kw)
            tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(
                where, trust_remote_code=trust_remote_code)
        except Exception as err:  # noqa: BLE001  (a truncated weight file raises its own type)
            raise load_failure(name, err, local=is_local) from None
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(f"{name!r} has no fast tokenizer: character offsets are required")
    if "device_map" not in kw:
        model.to(device_)
    rev = (getattr(config, "_commit_hash", None) or _local_revision(local) if is_local
           else hub_revision(where, revision) or revision)
    return ModelAdapter(
        model,
        tok,
        model_id=model_id_for(name, where),
        revision=rev,
        max_batch_size=max_batch_size,
        max_length=max_length,
        labels=tuple(labels) if labels else (),
    )
