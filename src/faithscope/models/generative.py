"""GenerativeAdapter: causal and sequence-to-sequence LMs behind the same batching point.

Two kernels, each taking a virtual batch of any size (rows sorted by length, padded per chunk,
chunks halved on CUDA out-of-memory like :class:`~faithscope.models.adapter.ModelAdapter`):

* :meth:`GenerativeAdapter.generate`: fixed decoding (greedy by default, or beam search; no
  sampling), so the same prompt always gives the same output. When the model stops by
  generating its end-of-sequence token (the tokenizer's, or any of the generation config's
  ``eos_token_id``), that token is kept as the last of :attr:`Generation.ids` (and
  :attr:`Generation.eos` is set) while the text leaves it out: scoring the output by teacher
  forcing (``log_prob``) then includes the model's decision to stop there, as in MExGen
  (Monteiro Paes, Wei et al. 2025) where the reference output is the generated sequence;
* :meth:`GenerativeAdapter.output_logprobs`: teacher forcing: the log-probability of every token
  of a fixed output given each (perturbed) prompt, one forward per row.

Prompts go through the tokenizer's chat template when it has one (``chat=None``, the default) or
when ``chat=True``; ``system`` adds a system message. :meth:`output_gradients` gives gradients of
the output's log-probability (whole output or per output token) w.r.t. the prompt's word
embeddings, for the gradient explainers.

Example
-------
>>> from faithscope.models.generative import load_generative
>>> lm = load_generative("tests/assets/stories260K", max_new_tokens=8)  # doctest: +SKIP
>>> (g,) = lm.generate(["Once upon a time"])  # doctest: +SKIP
>>> lm.output_logprobs(["Once upon a time"], [g.ids])[0].shape == g.ids.shape  # doctest: +SKIP
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._lazy import lazy_import
from ..errors import InputError
from .batching import WARN_SECONDS, AdapterStats, Chunked, resolve_batch_size

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")


@dataclass(frozen=True)
class Generation:
    """A prompt's generated output: text and token ids. Special tokens are removed from both,
    except that ``ids`` ends with the end-of-sequence token when the model generated one
    (``eos`` is then True): the stop is part of what the model produced and is scored."""

    prompt: str
    text: str
    ids: np.ndarray
    eos: bool = False


def is_generative(model: Any) -> bool:
    """Whether ``model`` is a generative adapter: it says so (``generates``, as
    :class:`GenerativeAdapter` and :class:`~faithscope.models.http.HTTPAdapter` do), or, when
    it does not say, it can ``generate`` and is no classifier (no ``num_labels``)."""
    says = getattr(model, "generates", None)
    if says is not None:
        return bool(says)
    return hasattr(model, "generate") and not hasattr(model, "num_labels")


@dataclass(eq=False)
class GenerativeAdapter(Chunked):
    generates: ClassVar[bool] = True  # explained and evaluated as a generative model
    model: Any
    tokenizer: Any
    model_id: str = "unknown"
    revision: str | None = None
    max_batch_size: int | None = None  # None: resolved from the device and the model's size
    max_new_tokens: int = 32
    num_beams: int = 1
    chat: bool | None = None  # None: use the chat template when the tokenizer has one
    system: str | None = None
    stats: AdapterStats = field(default_factory=AdapterStats)
    # a model call estimated (from its first chunk) to take longer warns first; None: never
    warn_seconds: float | None = WARN_SECONDS

    def __post_init__(self) -> None:
        self.auto_batch_size = self.max_batch_size is None
        if self.max_batch_size is None:  # prompt and output: rows planned at 256 tokens
            self.max_batch_size = resolve_batch_size(self.model, tokens=256)
        if self.max_batch_size < 1 or self.max_new_tokens < 1 or self.num_beams < 1:
            raise InputError("max_batch_size, max_new_tokens and num_beams must be >= 1")
        self.model.eval()
        self._batch = self.max_batch_size
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token_id = tok.eos_token_id if tok.eos_token_id is not None else 0
        if self.chat and not getattr(tok, "chat_template", None):
            raise InputError(f"{self.model_id}: the tokenizer has no chat template")

    # ------------------------------------------------------------------ facts
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def encoder_decoder(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def uses_chat(self) -> bool:
        has = bool(getattr(self.tokenizer, "chat_template", None))
        return has if self.chat is None else bool(self.chat)

    @property
    def stop_ids(self) -> frozenset[int]:
        """End-of-sequence ids: the tokenizer's and those of the generation config."""
        ids = {self.tokenizer.eos_token_id}
        cfg = getattr(self.model, "generation_config", None)
        extra = getattr(cfg, "eos_token_id", None)
        ids |= set(extra) if isinstance(extra, list | tuple) else {extra}
        return frozenset(int(i) for i in ids if i is not None)

    def prompt_ids(self, prompt: str) -> np.ndarray:
        """Token ids the model reads for ``prompt`` (chat template applied when in use)."""
        return self.prompt_encoding(prompt)[0]

    def prompt_encoding(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids for ``prompt`` and each token's character span in ``prompt`` ((-1, -1)
        for template and special tokens). With a chat template the prompt is rendered around
        a placeholder and the pieces are tokenized separately, so offsets stay exact."""
        tok = self.tokenizer
        if self.uses_chat and not self.encoder_decoder:
            marker = "\ue000"
            msgs = ([{"role": "system", "content": self.system}] if self.system else []) + [
                {"role": "user", "content": marker}]
            rendered = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            pre, _, post = str(rendered).partition(marker)
            parts, special = [(pre, False), (prompt, True), (post, False)], False
        else:
            parts, special = [(prompt, True)], True
        ids: list[int] = []
        offs: list[tuple[int, int]] = []
        specials = set(tok.all_special_ids)
        for text, own in parts:
            if not text:
                continue
            enc = tok(text, add_special_tokens=special, return_offsets_mapping=True)
            for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
                ids.append(int(t))
                offs.append((int(a), int(b)) if own and int(t) not in specials else (-1, -1))
        if not ids and not self.encoder_decoder:  # e.g. every unit of a prompt removed
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            if start is not None:  # a decoder needs one position to predict from
                ids, offs = [int(start)], [(-1, -1)]
        return np.asarray(ids, dtype=np.int64), np.asarray(offs, dtype=np.int64).reshape(-1, 2)

    def output_ids(self, text: str) -> np.ndarray:
        """Token ids of a given output text (no special tokens): for scoring a fixed output."""
        return np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"],
                          dtype=np.int64)

    # -------------------------------------------------------------- padding
    def _pad(self, rows: list[np.ndarray], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), int(self.tokenizer.pad_token_id), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if left else slice(0, len(r))
            ids[i, sl] = r
            mask[i, sl] = 1
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    # -------------------------------------------------------------- kernels
    def generate(self, prompts: Sequence[str], *, max_new_tokens: int | None = None
                 ) -> list[Generation]:
        """Outputs of every prompt with fixed decoding (greedy, or beam search), batched. An
        output that stops with an end-of-sequence token keeps it as its last id (not in the
        text); one cut by ``max_new_tokens`` has none."""
        ids = [self.prompt_ids(p) for p in prompts]
        out: list[Generation | None] = [None] * len(prompts)
        special = set(self.tokenizer.all_special_ids)
        stops = self.stop_ids
        n_new = max_new_tokens or self.max_new_tokens

        def run(idx: np.ndarray) -> None:
            x, mask = self._pad([ids[i] for i in idx], left=not self.encoder_decoder)
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=x, attention_mask=mask, max_new_tokens=n_new, do_sample=False,
                    num_beams=self.num_beams, pad_token_id=self.tokenizer.pad_token_id)
            # encoder-decoder outputs start with the decoder start token, not generated
            new = gen[:, 1:] if self.encoder_decoder else gen[:, x.shape[1]:]
            for r, i in enumerate(idx):
                toks = [int(t) for t in new[r].tolist()]
                stop = next((k for k, t in enumerate(toks) if t in stops), None)
                body = [t for t in (toks if stop is None else toks[:stop]) if t not in special]
                text = self.tokenizer.decode(body, skip_special_tokens=True)
                kept = body if stop is None else [*body, toks[stop]]
                out[i] = Generation(prompts[i], text, np.asarray(kept, dtype=np.int64),
                                    eos=stop is not None)
            self.stats.forward_rows += len(idx) * n_new

        self.run_chunks(self.plan_chunks(np.array([len(i) for i in ids])), run)
        return [g for g in out if g is not None]

    def teacher_inputs(self, ctx: list[np.ndarray], outs: list[np.ndarray]
                        ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Model inputs scoring ``outs`` after ``ctx``; returns inputs and each row's offset of
        the logits that predict its first output token."""
        if self.encoder_decoder:
            x, mask = self._pad(ctx, left=False)
            start = int(self.model.config.decoder_start_token_id or self.tokenizer.pad_token_id)
            dec = [np.concatenate([[start], o[:-1]]) if len(o) else np.array([start])
                   for o in outs]
            d, dmask = self._pad(dec, left=False)
            return ({"input_ids": x, "attention_mask": mask, "decoder_input_ids": d,
                     "decoder_attention_mask": dmask}, [0] * len(ctx))
        rows = [np.concatenate([c, o]) for c, o in zip(ctx, outs, strict=True)]
        x, mask = self._pad(rows, left=False)
        return {"input_ids": x, "attention_mask": mask}, [len(c) - 1 for c in ctx]

    def output_logprobs(self, prompts: Sequence[str], outputs: Sequence[np.ndarray], *,
                        foils: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        """Per-token log-probabilities (float64) of ``outputs[i]`` given ``prompts[i]``; with
        ``foils`` (token ids aligned with the output, see :meth:`logprobs_of_ids`) the
        per-step contrast ``log p(y_t) - log p(f_t)`` instead."""
        return self.logprobs_of_ids([self.prompt_ids(p) for p in prompts], outputs, foils=foils)

    def logprobs_of_ids(self, ctx: Sequence[np.ndarray], outputs: Sequence[np.ndarray], *,
                        foils: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        """:meth:`output_logprobs` for prompts given as token ids.

        ``foils[i]`` (None, or ids as long as ``outputs[i]``): step ``t`` gives
        ``log p(y_t | x, y_<t) - log p(f_t | x, y_<t)``, the foil token scored after the
        output's own prefix (Yin & Neubig 2022's contrastive quantity; equal to the logit
        difference, the normaliser cancelling)."""
        outs = [np.asarray(o, dtype=np.int64) for o in outputs]
        fl = _check_foils(outs, foils)

        def pick(logp: torch.Tensor, i: int) -> np.ndarray:
            o = torch.from_numpy(outs[i]).to(logp.device)
            lp = logp[torch.arange(len(o), device=logp.device), o]
            if fl[i] is not None:
                f = torch.from_numpy(fl[i]).to(logp.device)
                lp = lp - logp[torch.arange(len(f), device=logp.device), f]
            out: np.ndarray = lp.double().cpu().numpy()
            return out

        return self._teacher_map(ctx, outs, pick)

    def step_scores(self, prompts: Sequence[str], outputs: Sequence[np.ndarray]
                    ) -> list[dict[str, np.ndarray]]:
        """Per output token (teacher forcing on ``prompts[i]``), Inseq's step scores:
        ``probability`` ``p(y_t | x, y_<t)`` and ``entropy`` of the next-token distribution
        at that step, ``-sum_v p(v) ln p(v)`` in nats."""
        outs = [np.asarray(o, dtype=np.int64) for o in outputs]

        def steps(logp: torch.Tensor, i: int) -> dict[str, np.ndarray]:
            o = torch.from_numpy(outs[i]).to(logp.device)
            lp = logp[torch.arange(len(o), device=logp.device), o]
            ent = -(logp.exp() * logp).nan_to_num(0.0).sum(-1)
            return {"probability": lp.exp().double().cpu().numpy(),
                    "entropy": ent.double().cpu().numpy()}

        return self._teacher_map([self.prompt_ids(p) for p in prompts], outs, steps)

    def token_texts(self, ids: Sequence[int]) -> tuple[str, ...]:
        """Each token's own text (special tokens by name, e.g. ``</s>``): output columns."""
        tok = self.tokenizer
        special = set(tok.all_special_ids)
        return tuple(str(tok.convert_ids_to_tokens(int(t))) if int(t) in special else
                     tok.decode([int(t)]) for t in ids)

    def _teacher_map(self, ctx: Sequence[np.ndarray], outs: Sequence[np.ndarray],
                     fn: Any) -> list[Any]:
        """One forward per row (teacher forcing ``outs[i]`` after ``ctx[i]``, a virtual batch
        chunked by length); ``fn(logp, i)`` maps the output's log-softmax rows (output length
        x vocabulary: row ``t`` predicts token ``t``) to row ``i``'s result."""
        ctx = [np.asarray(c, dtype=np.int64) for c in ctx]
        res: list[Any] = [None] * len(ctx)

        def run(idx: np.ndarray) -> None:
            inputs, offs = self.teacher_inputs([ctx[i] for i in idx], [outs[i] for i in idx])
            with torch.inference_mode():
                logits = self.model(**inputs).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for r, i in enumerate(idx):
                res[i] = fn(logp[r, offs[r]: offs[r] + len(outs[i])], i)
            self.stats.forward_rows += len(idx)

        lengths = np.array([len(c) + len(o) for c, o in zip(ctx, outs, strict=True)])
        self.run_chunks(self.plan_chunks(lengths), run)
        return res

    def baseline_id(self, baseline: str) -> int | None:
        """Token id of an Integrated Gradients ``baseline``: ``pad``, ``unk``, ``mask`` (falling
        back to unk, then pad, like classifiers) or ``zero`` (None: a zero embedding)."""
        order = {"mask": ("mask", "unk", "pad"), "unk": ("unk", "pad"), "pad": ("pad",)}
        if baseline == "zero":
            return None
        if baseline not in order:
            raise InputError(f"unknown baseline {baseline!r}: use zero, pad, unk or mask")
        for name in order[baseline]:
            value = getattr(self.tokenizer, f"{name}_token_id", None)
            if value is not None:
                return int(value)
        raise InputError(f"the tokenizer of {self.model_id} has no {baseline} token")

    def baseline_embeddings(self, prompts: Sequence[str], baseline: str = "zero"
                            ) -> list[np.ndarray]:
        """Per prompt, the embeddings Integrated Gradients starts from: the ``baseline``
        (a zero vector or a token's embedding) on the prompt's own tokens, the template's and
        special tokens' own embeddings elsewhere."""
        bid = self.baseline_id(baseline)
        base = None if bid is None else self.embed(np.array([bid]))[0]
        out = []
        for p in prompts:
            ids, offs = self.prompt_encoding(p)
            b = self.embed(ids).astype(np.float64)
            own = offs[:, 0] >= 0
            b[own] = 0.0 if base is None else base
            out.append(b)
        return out

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """The word-embedding layer's output (float32, tokens x hidden) for ``ids``: the vectors
        the gradients are taken against (some layers scale their weight rows: Gemma's by
        sqrt(hidden))."""
        emb = self.model.get_input_embeddings()
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)
            out: np.ndarray = emb(t).float().cpu().numpy()
        return out

    def output_gradients(self, prompts: Sequence[str], outputs: Sequence[np.ndarray], *,
                         per_token: bool = False, alphas: Sequence[float] = (1.0,),
                         weights: Sequence[float] = (1.0,), baseline: str = "zero",
                         foils: Sequence[np.ndarray | None] | None = None
                         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Gradients of the output log-probability w.r.t. each prompt's word embeddings.

        Returns per prompt ``(targets x prompt length x hidden)`` gradients (one target for the
        whole output, or one per output token with ``per_token``) and the prompt embeddings.
        With ``alphas``/``weights`` the embeddings of the prompt's own tokens (not the template's)
        are moved to ``b + alpha (x - b)`` from the ``baseline`` ``b`` (see
        :meth:`baseline_embeddings`) and the weighted gradients summed: the Integrated
        Gradients quadrature. With ``foils`` the differentiated quantity is the per-step
        contrast of :meth:`logprobs_of_ids` (summed over steps without ``per_token``).
        """
        encs = [self.prompt_encoding(p) for p in prompts]
        ctx = [c for c, _ in encs]
        outs = [np.asarray(o, dtype=np.int64) for o in outputs]
        fl = _check_foils(outs, foils)
        n_t = [len(o) if per_token else 1 for o in outs]
        rows = [(i, t, s) for i in range(len(prompts)) for t in range(n_t[i])
                for s in range(len(alphas))]
        emb = self.model.get_input_embeddings()
        bid = self.baseline_id(baseline)
        grads = [torch.zeros((n_t[i], len(ctx[i]), emb.weight.shape[1]), dtype=torch.float64,
                             device=self.device) for i in range(len(ctx))]

        def build(table: np.ndarray) -> tuple[torch.Tensor, Any]:
            chosen = table.tolist()  # (prompt, token, step) rows, walked one by one below
            inputs, offs = self.teacher_inputs([ctx[i] for i, _, _ in chosen],
                                                [outs[i] for i, _, _ in chosen])
            with torch.no_grad():
                x = emb(inputs["input_ids"]).float()
                b = (torch.zeros_like(x[0, 0]) if bid is None else
                     emb(torch.tensor([bid], device=self.device))[0].float())
                alpha = torch.ones(x.shape[:2], device=self.device)
                own = torch.zeros(x.shape[:2], dtype=torch.bool, device=self.device)
                for r, (i, _, s) in enumerate(chosen):
                    own[r, : len(ctx[i])] = torch.from_numpy(encs[i][1][:, 0] >= 0)
                    alpha[r] = float(alphas[s])
                moved = b + alpha[..., None] * (x - b)
                z0 = torch.where(own[..., None], moved, x).to(emb.weight.dtype)
            kw = {k: v for k, v in inputs.items() if k != "input_ids"}

            def value_of(z: torch.Tensor) -> torch.Tensor:
                """Log-probability of the output (or of output token t) per row."""
                logp = torch.log_softmax(self.model(inputs_embeds=z, **kw).logits.float(), -1)
                vals = []
                for r, (i, t, _) in enumerate(chosen):
                    o = torch.from_numpy(outs[i]).to(self.device)
                    pos = torch.arange(len(o), device=self.device) + offs[r]
                    lp = logp[r, pos, o]
                    if fl[i] is not None:
                        lp = lp - logp[r, pos, torch.from_numpy(fl[i]).to(self.device)]
                    vals.append(lp[t] if per_token else lp.sum())
                return torch.stack(vals)
            return z0, value_of

        lengths = np.array([len(ctx[i]) + len(outs[i]) for i, _, _ in rows])
        self._path_gradients(rows, lengths, list(weights), grads, build)
        grads_np = [g.cpu().numpy() for g in grads]
        return grads_np, [self.embed(c) for c in ctx]


def _check_foils(outs: Sequence[np.ndarray], foils: Sequence[np.ndarray | None] | None
                 ) -> list[np.ndarray | None]:
    """``foils`` as int64 arrays aligned with ``outs`` (None where a row has no foil)."""
    if foils is None:
        return [None] * len(outs)
    if len(foils) != len(outs):
        raise InputError(f"{len(foils)} foils for {len(outs)} outputs")
    out: list[np.ndarray | None] = []
    for o, f in zip(outs, foils, strict=True):
        if f is not None:
            f = np.asarray(f, dtype=np.int64)
            if f.shape != o.shape:
                raise InputError(f"a foil has {len(f)} tokens and its output {len(o)}: a "
                                 "token-by-token contrast needs as many tokens")
        out.append(f)
    return out


def load_generative(path_or_id: str, *, device: str | None = None, dtype: str = "float32",
                    revision: str | None = None, device_map: str | None = None,
                    quantization: str | None = None, trust_remote_code: bool = False,
                    **kw: Any) -> GenerativeAdapter:
    """Load a causal or seq2seq LM (local path or hub id) into a :class:`GenerativeAdapter`.

    Names resolve as for classifiers (:func:`faithscope.models.loading.resolve_name`): a local
    folder when it exists or starts with ``/ . ~ pkg:``, else a Hub id (the local cache offline).
    7B-class models on one GPU: ``dtype="bfloat16"`` (or float16), ``device_map="auto"`` and
    optionally ``quantization="8bit"|"4bit"`` (:func:`faithscope.models.loading.placement_kwargs`).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from .loading import (
        hub_revision,
        load_failure,
        model_id_for,
        placement_kwargs,
        quiet_transformers,
        resolve_device,
        resolve_name,
    )

    placed = placement_kwargs(dtype, device_map, quantization)
    dev = resolve_device(device) if device and "device_map" not in placed else None
    name = str(path_or_id)
    where, is_local = resolve_name(name)
    try:
        cfg = AutoConfig.from_pretrained(where, revision=revision,
                                         trust_remote_code=trust_remote_code)
        cls: Any = AutoModelForSeq2SeqLM if getattr(cfg, "is_encoder_decoder", False) else \
            AutoModelForCausalLM
        with quiet_transformers():
            # eager attention: under SDPA, left-padded batches of a decoder move scores by
            # ~1e-5 against one row at a time (tests/test_conformance_generation.py)
            model = cls.from_pretrained(where, revision=revision, **placed,
                                        attn_implementation="eager",
                                        trust_remote_code=trust_remote_code)
        tok = AutoTokenizer.from_pretrained(where, revision=revision,
                                            trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001  (config, weight-file and hub errors alike)
        raise load_failure(name, err, local=is_local) from None
    if dev is not None:
        model.to(dev)
    rev = (hub_revision(where, revision) or revision) if not is_local else revision
    return GenerativeAdapter(model, tok, model_id=model_id_for(name, where), revision=rev, **kw)
