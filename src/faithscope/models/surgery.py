"""Model surgery for the sanity checks: a model's parameters in named groups (embeddings,
each transformer block, head) and a context that re-initialises some groups and restores them
bit for bit (Adebayo et al. 2018's cascading and independent randomization). Built on the
adapter's public surface (``model``, ``device``, ``model_id``).

Example
-------
>>> from faithscope.models.tiny import tiny_classifier
>>> from faithscope.models.surgery import parameter_groups, randomized
>>> clf = tiny_classifier()
>>> list(parameter_groups(clf))[:2]
['embeddings', 'layer 0']
>>> with randomized(clf, ["head"], seed=1):
...     pass
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._lazy import lazy_import
from ..errors import InputError

if TYPE_CHECKING:
    import torch

    from .adapter import ModelAdapter
else:
    torch = lazy_import("torch")


def parameter_groups(adapter: ModelAdapter) -> dict[str, list[str]]:
    """The model's modules in named groups, input to output: ``embeddings``, ``layer 0`` ...
    ``layer L-1`` (one transformer block each: self-attention and MLP as one unit) and
    ``head`` (everything else: pooler, final norm, classifier). Values are the qualified
    names of the modules that directly own parameters or buffers. Blocks are the
    ``ModuleList`` of ``config.num_hidden_layers`` modules (``encoder.layer`` in BERT,
    ``model.layers`` in Llama, ``transformer.h`` in GPT-2); the embeddings are the module
    holding the input embedding when its name says so (``bert.embeddings``), else the
    embedding tables beside it (``transformer.wte`` and ``wpe``)."""
    model = adapter.model
    blocks_name, blocks = _block_list(adapter)
    emb = model.get_input_embeddings()
    emb_name = next(n for n, m in model.named_modules() if m is emb)
    parent = emb_name.rpartition(".")[0]
    if "embedding" in parent.rpartition(".")[2]:
        roots = [parent]
    else:
        pmod = model.get_submodule(parent) if parent else model
        prefix = f"{parent}." if parent else ""
        roots = [prefix + n for n, m in pmod.named_children()
                 if isinstance(m, torch.nn.Embedding)]
    owners = [n for n, m in model.named_modules()
              if any(True for _ in m.parameters(recurse=False))
              or any(True for _ in m.buffers(recurse=False))]

    def under(root: str) -> list[str]:
        return [n for n in owners if n == root or n.startswith(f"{root}.")]

    groups: dict[str, list[str]] = {"embeddings": [n for r in roots for n in under(r)]}
    for i in range(len(blocks)):
        groups[f"layer {i}"] = under(f"{blocks_name}.{i}")
    taken = {n for ms in groups.values() for n in ms}
    head = [n for n in owners if n not in taken]
    if head:
        groups["head"] = head
    return groups

def _block_list(adapter: ModelAdapter) -> tuple[str, torch.nn.ModuleList]:
    cfg = getattr(adapter.model, "config", None)
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    lists = [(name, m) for name, m in adapter.model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    named = [c for c in lists if c[0].rpartition(".")[2] in ("layer", "layers", "h", "block",
                                                             "blocks")]
    for pool in (named, lists):
        fit = [c for c in pool if n is None or len(c[1]) == n]
        if fit:
            return fit[0]
    raise InputError(f"cannot find the transformer blocks of {adapter.model_id} "
                     f"({type(adapter.model).__name__}): no ModuleList of {n} layers")

@contextlib.contextmanager
def randomized(adapter: ModelAdapter, groups: Sequence[str], *, seed: int = 0
               ) -> Iterator[None]:
    """Within the block, the parameters of ``groups`` (names from :func:`parameter_groups`)
    are re-initialised with the model's own initialiser (``_init_weights`` of transformers
    models, else ``reset_parameters``), each group with its own generator seeded by
    (``seed``, group name), so a group gets the same weights whatever else is randomized.
    Every touched parameter and buffer is restored bit for bit on exit."""
    table = parameter_groups(adapter)
    unknown = [g for g in groups if g not in table]
    if unknown:
        raise InputError(f"unknown parameter group(s) {unknown}; known: {list(table)}")
    model = adapter.model
    modules = {g: [model.get_submodule(n) for n in table[g]] for g in groups}
    saved: list[tuple[torch.Tensor, torch.Tensor, Any]] = []
    seen: set[int] = set()
    for ms in modules.values():
        for mod in ms:
            for t in [*mod.parameters(recurse=False), *mod.buffers(recurse=False)]:
                if id(t) not in seen:
                    seen.add(id(t))
                    saved.append((t, t.detach().clone(), t.__dict__.get("_is_hf_initialized")))
    init = getattr(model, "_init_weights", None)
    devices = [adapter.device.index or 0] if adapter.device.type == "cuda" else []
    try:
        with torch.no_grad():
            for t, _, _ in saved:  # loaded weights are flagged as initialised: unflag them
                if isinstance(t, torch.nn.Parameter) or "_is_hf_initialized" in t.__dict__:
                    t._is_hf_initialized = False  # type: ignore[attr-defined]
            for g in groups:
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(zlib.crc32(f"{seed}\0{g}".encode()))
                    for mod in modules[g]:
                        if init is not None:
                            init(mod)
                        elif hasattr(mod, "reset_parameters"):
                            mod.reset_parameters()
        yield
    finally:
        with torch.no_grad():
            for t, value, flag in saved:
                t.copy_(value)
                if flag is None:
                    t.__dict__.pop("_is_hf_initialized", None)
                else:
                    t._is_hf_initialized = flag  # type: ignore[attr-defined]
