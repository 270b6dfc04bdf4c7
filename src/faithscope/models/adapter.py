"""ModelAdapter: the only code that touches a model, its tokenizer and its device.

It is also the single batching point. Explainers and metrics hand it *virtual batches* of any
size (all LIME samples of many examples, all IG steps of many examples); the adapter sorts the
rows by length, pads each chunk dynamically, runs chunks of at most ``max_batch_size`` rows, and
on a CUDA out-of-memory error halves the chunk and retries it without losing finished chunks.

Example
-------
>>> from faithscope.models.tiny import tiny_classifier
>>> adapter = tiny_classifier(max_batch_size=2)      # chunks of at most 2 rows
>>> enc = adapter.encode("a gorgeous film")
>>> [x.shape for x in adapter.logits([enc.ids[None, :].repeat(5, 0), enc.ids[None, :3]])]
[(5, 2), (1, 2)]
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from ..errors import InputError
from ..targets import TargetFn
from .batching import WARN_SECONDS, AdapterStats, Chunked, RowBlocks, resolve_batch_size

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

IdBlock = np.ndarray  # int64 (rows x length): rows that share one length


@dataclass(frozen=True)
class Encoded:
    """One tokenized input: ids, segment ids, offsets, and which positions are special."""

    text: str
    pair: str | None
    ids: np.ndarray
    type_ids: np.ndarray | None
    offsets: tuple[tuple[int, int], ...]
    sequence_ids: tuple[int | None, ...]
    truncated: bool

    @property
    def special(self) -> np.ndarray:
        return np.array([s is None for s in self.sequence_ids], dtype=bool)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(eq=False)
class ModelAdapter(Chunked):
    model: Any
    tokenizer: Any
    model_id: str = "unknown"
    revision: str | None = None
    # None: from the device and the model's size (:func:`~.batching.default_batch_size`); the
    # resolved value replaces it, and ``auto_batch_size`` records that it was resolved
    max_batch_size: int | None = None
    max_length: int | None = None
    labels: tuple[str, ...] = ()
    stats: AdapterStats = field(default_factory=AdapterStats)
    # a model call estimated (from its first chunk) to take longer warns first; None: never
    warn_seconds: float | None = WARN_SECONDS

    def __post_init__(self) -> None:
        self.auto_batch_size = self.max_batch_size is None
        if self.max_batch_size is None:
            self.max_batch_size = resolve_batch_size(self.model)
        if self.max_batch_size < 1:
            raise InputError("max_batch_size must be >= 1")
        self.model.eval()
        self._batch = self.max_batch_size
        tok = self.tokenizer
        if tok.pad_token_id is None:
            fallback = tok.eos_token_id if tok.eos_token_id is not None else tok.unk_token_id
            tok.pad_token_id = fallback if fallback is not None else 0
        cfg = getattr(self.model, "config", None)
        if cfg is not None and getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = tok.pad_token_id
        if self.max_length is None:
            self.max_length = _infer_max_length(self.model, tok)
        if not self.labels:
            id2label = getattr(cfg, "id2label", None) or {}
            n = self.num_labels
            self.labels = tuple(str(id2label.get(i, f"LABEL_{i}")) for i in range(n))

    # ------------------------------------------------------------------ facts
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_labels(self) -> int:
        cfg = getattr(self.model, "config", None)
        n = getattr(cfg, "num_labels", None)
        return int(n) if n else int(getattr(self.model, "num_labels", 2))

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(int(i) for i in self.tokenizer.all_special_ids)

    def token_id(self, kind: str, *, replacing: bool = False) -> int:
        """Id used by a masking operator: ``mask`` (falls back to unk), ``unk`` or ``pad``.
        ``replacing``: the id will replace units of the input (checked to be a pure
        replacement, :meth:`_check_pure_replacement`)."""
        tok = self.tokenizer
        order = {"mask": ("mask", "unk", "pad"), "unk": ("unk", "pad"), "pad": ("pad",)}[kind]
        for name in order:
            value = getattr(tok, f"{name}_token_id", None)
            if value is not None:
                if replacing:
                    self._check_pure_replacement(kind, int(value))
                return int(value)
        raise InputError(f"tokenizer of {self.model_id} has no {kind} token")

    def _check_pure_replacement(self, kind: str, token: int) -> None:
        """A decoder classifier reads the rightmost token that is not its pad id: a unit
        replaced by the pad id would move the read-out, so that replacement is refused."""
        cfg: Any = getattr(self.model, "config", None)
        if hasattr(cfg, "get_text_config"):
            cfg = cfg.get_text_config()
        pad = getattr(cfg, "pad_token_id", None)
        if self.pooling == "last" and pad is not None and token == int(pad):
            raise InputError(
                f"{self.model_id} reads its last non-pad token: replacing units with the pad "
                f"token (operator {kind!r}, id {token}) would move that read-out; use "
                "operator 'delete' or a token other than the pad token")

    @property
    def pooling(self) -> str:
        """Which position the classifier reads: ``first`` (BERT-style [CLS]) or ``last``
        (decoder classifiers such as GPT-2 or Llama read the last real token)."""
        from transformers.modeling_layers import GenericForSequenceClassification

        if isinstance(self.model, GenericForSequenceClassification):
            return "last"
        if hasattr(self.model, "score") and not hasattr(self.model, "classifier"):
            return "last"
        return "first"

    def embedding_matrix(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight.detach()

    # --------------------------------------------------------------- tokenize
    def encode(self, text: str, pair: str | None = None, *, strict: bool = False) -> Encoded:
        for name, value in (("text", text), ("pair", pair)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name} is empty or whitespace-only")
        tok = self.tokenizer
        kw: dict[str, Any] = {"return_offsets_mapping": True, "add_special_tokens": True}
        full = tok(text, pair, truncation=False, **kw)
        truncated = len(full["input_ids"]) > (self.max_length or 10**9)
        if truncated:
            msg = (
                f"input has {len(full['input_ids'])} tokens, more than the model's "
                f"{self.max_length}"
            )
            if strict:
                raise InputError(msg)
            warnings.warn(msg + "; truncated", stacklevel=2)
            full = tok(text, pair, truncation=True, max_length=self.max_length, **kw)
        ids = np.asarray(full["input_ids"], dtype=np.int64)
        types = full.get("token_type_ids")
        return Encoded(
            text=text,
            pair=pair,
            ids=ids,
            type_ids=None if types is None else np.asarray(types, dtype=np.int64),
            offsets=tuple((int(a), int(b)) for a, b in full["offset_mapping"]),
            sequence_ids=tuple(full.sequence_ids()),
            truncated=truncated,
        )

    def encode_many(self, inputs: Sequence[tuple[str, str | None]], *, strict: bool = False
                    ) -> list[Encoded]:
        """:meth:`encode` of many (text, pair) inputs at once: one call of the fast tokenizer's
        batch encoder (its Rust backend, without the per-input Python conversion of the
        ``__call__`` API), with the same ids, type ids, offsets and sequence ids. Inputs that
        need checks or truncation (empty, longer than ``max_length``), tokenizers without a
        backend and subclasses with their own :meth:`encode` go through it one by one."""
        backend = getattr(self.tokenizer, "_tokenizer", None)
        if type(self).encode is not ModelAdapter.encode:  # a subclass encodes its own way
            backend = None
        ok = [isinstance(t, str) and t.strip() and (p is None or isinstance(p, str) and p.strip())
              for t, p in inputs]
        if backend is None or not hasattr(backend, "encode_batch") or not any(ok):
            return [self.encode(t, p, strict=strict) for t, p in inputs]
        batch = [(t, p) if p is not None else t for (t, p), g in zip(inputs, ok, strict=True)
                 if g]
        trunc, pad = backend.truncation, backend.padding
        try:
            backend.no_truncation()
            backend.no_padding()
            encoded = iter(backend.encode_batch(batch, add_special_tokens=True))
        finally:
            if trunc:
                backend.enable_truncation(**trunc)
            if pad:
                backend.enable_padding(**pad)
        types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())
        limit = self.max_length or 10**9
        out = []
        for (text, pair), good in zip(inputs, ok, strict=True):
            e = next(encoded) if good else None
            if e is None or len(e.ids) > limit:
                out.append(self.encode(text, pair, strict=strict))
                continue
            out.append(Encoded(
                text=text, pair=pair, ids=np.asarray(e.ids, dtype=np.int64),
                type_ids=np.asarray(e.type_ids, dtype=np.int64) if types else None,
                offsets=tuple(e.offsets),
                sequence_ids=tuple(e.sequence_ids), truncated=False))
        return out

    # --------------------------------------------------------------- batching
    def model_inputs(
        self, ids: list[np.ndarray], types: list[np.ndarray] | None
    ) -> dict[str, torch.Tensor]:
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        width = int(lengths.max())
        real = np.arange(width)[None, :] < lengths[:, None]  # row-major: the rows' tokens
        arr = np.full((len(ids), width), int(self.tokenizer.pad_token_id), dtype=np.int64)
        arr[real] = np.concatenate(ids)
        device = self.device
        out = {
            "input_ids": torch.from_numpy(arr).to(device),
            "attention_mask": torch.from_numpy(real.astype(np.int64)).to(device),
        }
        if types is not None:
            tt = np.zeros((len(ids), width), dtype=np.int64)
            tt[real] = np.concatenate(types)
            out["token_type_ids"] = torch.from_numpy(tt).to(device)
        return out

    def forward(self, inputs: dict[str, torch.Tensor], **kw: Any) -> Any:
        pad_idx = self.positions_from_padding
        if pad_idx is not None and "position_ids" not in inputs and "attention_mask" in inputs:
            # RoBERTa-style embeddings number positions by skipping pad ids: a unit replaced by
            # the pad token would shift every later position. Positions follow the attention
            # mask instead (the same numbers when no pad id stands inside the text), so the
            # ``pad`` operator is a pure replacement.
            m = inputs["attention_mask"].long()
            inputs = {**inputs, "position_ids": torch.cumsum(m, 1) * m + pad_idx}
        out = self.model(**inputs, **kw)
        return out

    @property
    def positions_from_padding(self) -> int | None:
        """The padding index when the model's embeddings derive position ids from the pad
        ids (RoBERTa family), else None."""
        import sys

        base = getattr(self.model, "base_model", self.model)
        emb = getattr(base, "embeddings", None)
        idx = getattr(emb, "padding_idx", None)
        if idx is None:
            return None
        # a method of the embeddings (RoBERTa) or a function of their module (MPNet)
        module = sys.modules.get(type(emb).__module__)
        if not (hasattr(emb, "create_position_ids_from_input_ids")
                or hasattr(module, "create_position_ids_from_input_ids")):
            return None
        return int(idx)

    @staticmethod
    def logits_of(out: Any) -> torch.Tensor:
        return out.logits if hasattr(out, "logits") else out

    # ------------------------------------------------------------------ calls
    def logits(
        self, blocks: Sequence[IdBlock], type_blocks: Sequence[IdBlock] | None = None
    ) -> list[np.ndarray]:
        """Logits (float32, rows x classes) for every row of every block, in block order.

        Rows may have any length; padding positions are masked out. Rows run sorted by length
        (stable), so each chunk is a range of that order, assembled from slices of the blocks
        (:class:`~faithscope.models.batching.RowBlocks`); nothing is stacked beforehand.
        """
        rb = RowBlocks(blocks, pad=int(self.tokenizer.pad_token_id))
        tb = None if type_blocks is None else RowBlocks(type_blocks, pad=0)
        lengths = rb.lengths
        ran = np.zeros((len(rb), self.num_labels), dtype=np.float32)
        positions = np.arange(int(lengths.max()) if len(lengths) else 0)
        device = self.device
        move = device.type != "cpu"  # on the CPU the tensors are the model's inputs as they are

        def run(idx: np.ndarray) -> None:  # idx: consecutive run positions
            a, b = int(idx[0]), int(idx[-1]) + 1
            width = int(lengths[a:b].max())
            mask = (torch.ones((b - a, width), dtype=torch.int64) if lengths[a] == width
                    else torch.from_numpy((positions[:width] < lengths[a:b, None]).astype(np.int64)))
            inputs = {"input_ids": torch.from_numpy(rb.rows(a, b, width)), "attention_mask": mask}
            if tb is not None:
                inputs["token_type_ids"] = torch.from_numpy(tb.rows(a, b, width))
            if move:
                inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
            logits = self.logits_of(self.forward(inputs))
            ran[a:b] = logits.float().cpu().numpy()
            self.stats.forward_rows += b - a

        with torch.inference_mode():
            self.run_chunks(np.arange(len(rb)), run, lengths=lengths)
        out = rb.restore(ran)
        return [out[a:b] for a, b in zip(rb.bounds[:-1], rb.bounds[1:], strict=True)]

    def predict_proba(self, encs: Sequence[Encoded]) -> np.ndarray:
        logits = self.logits([e.ids[None, :] for e in encs], _types(encs))
        return softmax(np.concatenate(logits)).astype(np.float32) if logits else np.zeros((0, self.num_labels))

    def embedding_gradients(
        self,
        encs: Sequence[Encoded],
        targets: Sequence[Sequence[int]],
        target_fn: TargetFn,
        *,
        alphas: Sequence[float] = (1.0,),
        weights: Sequence[float] = (1.0,),
        baseline: str | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Weighted sums of gradients of ``target_fn`` w.r.t. the input word embeddings.

        For every encoding ``e``, target ``t`` and step ``s`` the word embeddings are set to
        ``b + alphas[s] * (x - b)`` (``x`` the input's, ``b`` the baseline's: the embedding of the
        ``baseline`` token (``mask``/``pad``/``unk``) on non-special positions, or zero when
        ``baseline="zero"``; ``None`` means ``b = x``). Returns per encoding: the summed
        gradients ``sum_s weights[s] * grad`` (targets x length x hidden), the input embeddings
        ``x`` and the baseline embeddings ``b`` (length x hidden), and the target values
        (targets x steps). All rows of all encodings form one virtual batch.
        """
        alphas_t = np.asarray(alphas, dtype=np.float64)
        weights_t = np.asarray(weights, dtype=np.float64)
        emb_layer = self.model.get_input_embeddings()
        weight = emb_layer.weight
        n_steps = len(alphas_t)
        n_targets = np.array([len(t) for t in targets], dtype=np.int64)
        # rows (example, target, step), example-major: one per target and step of each example
        offsets = np.cumsum(n_targets) - n_targets  # flat index of each example's target 0
        ex = np.repeat(np.arange(len(encs), dtype=np.int64), n_targets * n_steps)
        tk = np.arange(int(n_targets.sum()), dtype=np.int64) - np.repeat(offsets, n_targets)
        rows = np.stack([ex, np.repeat(tk, n_steps),
                         np.tile(np.arange(n_steps, dtype=np.int64), int(n_targets.sum()))], 1)
        enc_len = np.array([len(e) for e in encs], dtype=np.int64)
        lengths = enc_len[ex]
        flat_targets = np.array([t for ts in targets for t in ts], dtype=np.int64)
        hidden = weight.shape[1]
        device = self.device
        grads = [torch.zeros((len(targets[e]), len(encs[e]), hidden), dtype=torch.float32,
                             device=device) for e in range(len(encs))]
        values = [np.zeros((len(targets[e]), n_steps), dtype=np.float32)
                  for e in range(len(encs))]
        base_ids = [self._baseline_ids(enc, baseline) for enc in encs]

        def build(chosen: np.ndarray) -> tuple[torch.Tensor, Any]:
            inputs, z = self._interpolate(encs, base_ids, baseline, chosen[:, 0],
                                          alphas_t[chosen[:, 2]])
            tidx = torch.from_numpy(flat_targets[offsets[chosen[:, 0]] + chosen[:, 1]]
                                    ).to(device)

            def value_of(z_: torch.Tensor) -> torch.Tensor:
                with self._embedding_override(z_):
                    return target_fn(self.logits_of(self.forward(inputs)), tidx)
            return z, value_of

        self._path_gradients(rows, lengths, weights_t.tolist(), grads, build, values)
        xs, bs = self._embeddings(encs, base_ids, baseline)
        return [g.cpu().numpy() for g in grads], xs, bs, values

    def _interpolate(
        self,
        encs: Sequence[Encoded],
        base_ids: list[np.ndarray],
        baseline: str | None,
        ex: np.ndarray,
        alpha: np.ndarray,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Model inputs and word embeddings ``b + alpha (x - b)`` for rows of encodings ``ex``
        at ``alpha``. Rows of one encoding share its ids: each distinct encoding is padded and
        looked up once, then its rows are gathered."""
        emb_layer = self.model.get_input_embeddings()
        uniq, inv = np.unique(np.asarray(ex, dtype=np.int64), return_inverse=True)
        inv_t = torch.from_numpy(inv.reshape(-1)).to(self.device)
        chosen = [encs[e] for e in uniq]
        inputs = {k: v[inv_t] for k, v in
                  self.model_inputs([e.ids for e in chosen], type_rows(chosen)).items()}
        with torch.no_grad():
            x = emb_layer(inputs["input_ids"]).float()
            if baseline == "zero":
                special = torch.from_numpy(_pad_special(encs, uniq.tolist(), x.shape[1]))
                b = torch.where(special.to(self.device)[inv_t][..., None], x,
                                torch.zeros_like(x))
            elif baseline is None:
                b = x
            else:
                bids = self.model_inputs([base_ids[e] for e in uniq], None)["input_ids"]
                b = emb_layer(bids[inv_t]).float()
            a = torch.from_numpy(np.asarray(alpha, dtype=np.float32)).to(self.device).view(-1, 1, 1)
            z = (b + a * (x - b)).to(emb_layer.weight.dtype)
        return inputs, z

    @contextlib.contextmanager
    def _embedding_override(self, z: torch.Tensor) -> Iterator[None]:
        """Within the block, the word-embedding layer outputs ``z`` instead of its lookup."""
        handle = self.model.get_input_embeddings().register_forward_hook(lambda *_: z)
        try:
            yield
        finally:
            handle.remove()

    def interpolated_logits(
        self, encs: Sequence[Encoded], *, alphas: Sequence[float], baseline: str | None
    ) -> list[np.ndarray]:
        """Logits (alphas x classes) per encoding at embeddings ``b + alpha (x - b)``."""
        alphas_a = np.asarray(alphas, dtype=np.float64)
        ex = np.repeat(np.arange(len(encs), dtype=np.int64), len(alphas_a))
        al = np.tile(alphas_a, len(encs))
        lengths = np.array([len(e) for e in encs], dtype=np.int64)[ex]
        base_ids = [self._baseline_ids(enc, baseline) for enc in encs]
        out = np.zeros((len(ex), self.num_labels), dtype=np.float32)

        def run(idx: np.ndarray) -> None:
            inputs, z = self._interpolate(encs, base_ids, baseline, ex[idx], al[idx])
            with torch.inference_mode(), self._embedding_override(z):
                out[idx] = self.logits_of(self.forward(inputs)).float().cpu().numpy()
            self.stats.forward_rows += len(idx)

        self.run_chunks(self.plan_chunks(lengths), run)
        return list(out.reshape(len(encs), len(alphas), -1))

    def _baseline_ids(self, enc: Encoded, baseline: str | None) -> np.ndarray:
        if baseline in (None, "zero"):
            return enc.ids
        if baseline not in ("mask", "pad", "unk"):
            raise InputError(f"unknown baseline {baseline!r}: use mask, pad, unk or zero")
        out = enc.ids.copy()
        out[~enc.special] = self.token_id(baseline)
        return out

    def _embeddings(
        self, encs: Sequence[Encoded], base_ids: list[np.ndarray], baseline: str | None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        # the embedding layer's output, not its weight rows: some layers scale them (Gemma's
        # embeddings are multiplied by sqrt(hidden)), and gradients are taken w.r.t. the output
        emb = self.model.get_input_embeddings()
        device = self.device
        cuts = np.cumsum([len(e) for e in encs])[:-1]

        def look(ids: list[np.ndarray]) -> list[np.ndarray]:  # one lookup for all encodings
            with torch.no_grad():
                t = torch.as_tensor(np.concatenate(ids).astype(np.int64), device=device)
                out: np.ndarray = emb(t).float().cpu().numpy()
            return np.split(out, cuts)

        xs = look([e.ids for e in encs]) if encs else []
        if baseline == "zero":
            bs = [np.where(e.special[:, None], x, 0.0).astype(np.float32)
                  for e, x in zip(encs, xs, strict=True)]
        else:
            bs = look(base_ids) if encs else []
        return xs, bs

    def attentions(self, encs: Sequence[Encoded]) -> list[np.ndarray]:
        """Attention weights per encoding: float32 (layers x heads x length x length)."""
        lengths = np.array([len(e) for e in encs], dtype=np.int64)
        out: list[np.ndarray] = [np.zeros(0)] * len(encs)

        def run(idx: np.ndarray) -> None:
            inputs = self.model_inputs([encs[i].ids for i in idx], type_rows([encs[i] for i in idx]))
            with torch.inference_mode():
                res = self.forward(inputs, output_attentions=True)
            att = torch.stack([a.float() for a in res.attentions], dim=1).cpu().numpy()
            for r, i in enumerate(idx):
                n = len(encs[i])
                out[i] = att[r, :, :, :n, :n]
            self.stats.forward_rows += len(idx)

        with self.eager_attention():
            self.run_chunks(self.plan_chunks(lengths), run)
        return out

    @contextlib.contextmanager
    def eager_attention(self) -> Iterator[None]:
        """Temporarily switch to eager attention, which is needed to return attention weights."""
        cfg = getattr(self.model, "config", None)
        current = getattr(cfg, "_attn_implementation", None)
        setter = getattr(self.model, "set_attn_implementation", None)
        if current in (None, "eager") or setter is None:
            yield
            return
        setter("eager")
        try:
            yield
        finally:
            setter(current)


    def lrp_relevance(self, encs: Sequence[Encoded], targets: Sequence[Sequence[int]],
                      target_fn: TargetFn, *, rule: str = "cp"
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """LRP token relevances and target values per encoding (see :mod:`.lrp`)."""
        from .lrp import lrp_relevance

        return lrp_relevance(self, encs, targets, target_fn, rule=rule)

    # ------------------------------------------------ differentiable embedding access
    def embedding_inputs(
        self, encs: Sequence[Encoded], baseline: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded word embeddings ``x`` of the encodings and their baseline ``b`` (as in
        :meth:`embedding_gradients`), float32 tensors (rows x width x hidden) on the device,
        detached. Positions past an encoding's length hold the pad token's embedding."""
        base_ids = [self._baseline_ids(enc, baseline) for enc in encs]
        every = np.arange(len(encs), dtype=np.int64)
        _, x = self._interpolate(encs, base_ids, baseline, every, np.ones(len(encs)))
        _, b = self._interpolate(encs, base_ids, baseline, every, np.zeros(len(encs)))
        return x.float(), b.float()

    def embedding_logits(self, encs: Sequence[Encoded], z: torch.Tensor) -> torch.Tensor:
        """Logits (rows x classes) of the encodings with their word embeddings replaced by ``z``
        (rows x width x hidden, right-padded as :meth:`embedding_inputs`), with the autograd
        graph kept: gradients of functions of gradients (double backpropagation) flow to ``z``.
        Rows run through the one chunker (chunks of the adapter's batch size, halved on CUDA
        out-of-memory), the chunks' logits stacked back in row order. Call it inside
        :meth:`eager_attention` when second derivatives are needed (fused attention kernels
        may lack them)."""
        dtype = self.model.get_input_embeddings().weight.dtype
        parts: dict[int, torch.Tensor] = {}
        rows = type_rows(encs)

        def run(idx: np.ndarray) -> None:
            chosen = [int(i) for i in idx]
            inputs = self.model_inputs([encs[i].ids for i in chosen],
                                       None if rows is None else [rows[i] for i in chosen])
            width = inputs["input_ids"].shape[1]
            zc = z[torch.as_tensor(chosen, device=z.device), :width].to(dtype)
            with torch.enable_grad(), self._embedding_override(zc):
                out = self.logits_of(self.forward(inputs)).float()
            for r, i in enumerate(chosen):
                parts[i] = out[r]
            self.stats.backward_rows += len(chosen)

        self.run_chunks(np.arange(len(encs)), run)
        return torch.stack([parts[i] for i in range(len(encs))])

    @contextlib.contextmanager
    def perturbed_embeddings(self, rows: dict[int, np.ndarray]) -> Iterator[None]:
        """Within the block, the word-embedding vector of token id ``i`` is shifted by
        ``rows[i]`` (every occurrence, every forward); the weights are restored exactly."""
        weight = self.model.get_input_embeddings().weight
        if not rows:
            yield
            return
        ids = torch.tensor(sorted(rows), dtype=torch.long, device=weight.device)
        shift = torch.from_numpy(np.stack([np.asarray(rows[i], dtype=np.float32)
                                           for i in sorted(rows)])).to(weight.device)
        with torch.no_grad():
            saved = weight[ids].clone()
            weight[ids] = (saved.float() + shift).to(weight.dtype)
        try:
            yield
        finally:
            with torch.no_grad():
                weight[ids] = saved


def _types(encs: Sequence[Encoded]) -> list[np.ndarray] | None:
    if not encs or encs[0].type_ids is None:
        return None
    return [e.type_ids[None, :] for e in encs]  # type: ignore[index]


def type_rows(encs: Sequence[Encoded]) -> list[np.ndarray] | None:
    """Segment ids of each encoding, or None when the tokenizer has none."""
    rows = [e.type_ids for e in encs]
    return None if any(r is None for r in rows) else rows  # type: ignore[return-value]


def _pad_special(encs: Sequence[Encoded], chosen: list[int], width: int) -> np.ndarray:
    out = np.zeros((len(chosen), width), dtype=bool)
    for r, e in enumerate(chosen):
        sp = encs[e].special
        out[r, : len(sp)] = sp
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (float64), the one used for class probabilities."""
    z = np.asarray(x, dtype=np.float64)
    ez = np.exp(z - z.max(axis=-1, keepdims=True))
    out: np.ndarray = ez / ez.sum(axis=-1, keepdims=True)
    return out


def _infer_max_length(model: Any, tokenizer: Any) -> int:
    cfg = getattr(model, "config", None)
    limits = []
    pos = getattr(cfg, "max_position_embeddings", None)
    if pos:
        offset = 2 if getattr(cfg, "model_type", "") in {"roberta", "xlm-roberta", "camembert",
                                                          "mpnet", "longformer"} else 0
        limits.append(int(pos) - offset)
    tml = getattr(tokenizer, "model_max_length", None)
    if tml and tml < 1_000_000:
        limits.append(int(tml))
    return min(limits) if limits else 512
