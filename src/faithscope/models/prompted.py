"""PromptClassifier: a causal LM used as a classifier by prompting, behind the ModelAdapter API.

The input text (and pair) is placed in a prompt ``template`` (``{text}``, ``{pair}``); the logit
of each label is the log-probability of its verbalizer(s) after the prompt (several verbalizers
per label are pooled by log-sum-exp), by teacher forcing. Because it *is* a
:class:`~faithscope.models.adapter.ModelAdapter` (units come from the text's own tokens, masks
remove or replace them before the template is applied), every perturbation explainer and every
removal metric runs on it unchanged, and so does the ``self_explanation`` explainer, which asks
the same model which words its answer rests on (:meth:`PromptClassifier.generate`).

Removing a unit *deletes* its tokens from the text before the template is filled: that is what
the default masking operator (``mask``) does here, since a decoder has no mask token and its
``<unk>`` token is one such models never see in training. ``<unk>`` is used only when asked for
explicitly (operator ``unk``); ``pad`` and ``delete`` work as for classifiers.
:meth:`PromptClassifier.mask_operator` names the operator a requested one resolves to, and the
MExGen explainers record it in ``info["operator"]``.

:func:`finetune_prompted` trains LoRA adapters (peft) so that the LM answers with the gold
label's verbalizer, giving the "after fine-tuning" model to compare with the prompted one.

Example
-------
>>> from faithscope.models.generative import load_generative
>>> lm = load_generative("tests/assets/stories260K")  # doctest: +SKIP
>>> clf = PromptClassifier.from_lm(lm, template="Story: {text}\\nThe story is",
...                                verbalizers={"happy": [" happy"], "sad": [" sad"]})
...                                # doctest: +SKIP
>>> clf.predict_proba([clf.encode("Tom was very glad.")]).shape  # doctest: +SKIP
(1, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from .adapter import Encoded, ModelAdapter
from .generative import Generation, GenerativeAdapter

DELETED = -2  # token id standing for "removed": dropped before the template is filled


@dataclass(eq=False)
class PromptClassifier(ModelAdapter):
    generates: ClassVar[bool] = False  # a classifier (its generate serves self-explanations)
    template: str = "{text}"
    verbalizers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    chat: bool | None = None
    max_new_tokens: int = 48

    def __post_init__(self) -> None:
        if not self.verbalizers:
            raise InputError("PromptClassifier needs verbalizers: {label: [words, ...]}")
        if "{text}" not in self.template:
            raise InputError("the prompt template needs a {text} placeholder")
        self.labels = tuple(self.verbalizers)
        super().__post_init__()
        self.lm = GenerativeAdapter(self.model, self.tokenizer, model_id=self.model_id,
                                    revision=self.revision, max_batch_size=self.max_batch_size,
                                    max_new_tokens=self.max_new_tokens, chat=self.chat)
        self._verb_ids = [[self.lm.output_ids(v) for v in self.verbalizers[lab]]
                          for lab in self.labels]
        if any(len(v) == 0 for vs in self._verb_ids for v in vs):
            raise InputError("a verbalizer tokenizes to nothing")
        self._sep = -1

    @classmethod
    def from_lm(cls, lm: GenerativeAdapter, **kw: Any) -> PromptClassifier:
        return cls(lm.model, lm.tokenizer, model_id=lm.model_id, revision=lm.revision,
                   max_batch_size=lm.max_batch_size, chat=lm.chat, **kw)

    @property
    def num_labels(self) -> int:
        return len(self.verbalizers) if self.verbalizers else 2

    @property
    def pooling(self) -> str:
        return "last"

    # ------------------------------------------------------------ masking
    def token_id(self, kind: str, *, replacing: bool = False) -> int:
        """Id a masking operator writes: ``mask`` deletes the unit (a sentinel id dropped
        before the template is filled), ``unk`` and ``pad`` are the tokenizer's tokens."""
        if kind == "mask":
            return DELETED
        return super().token_id(kind, replacing=replacing)

    def mask_operator(self, operator: str) -> str:
        """The operator a requested one actually applies: ``mask`` is deletion here."""
        return "delete" if operator == "mask" else operator

    # ------------------------------------------------------------ tokenize
    def encode(self, text: str, pair: str | None = None, *, strict: bool = False) -> Encoded:
        """The text's own tokens (no special tokens), offsets relative to text / pair."""
        for name, value in (("text", text), ("pair", pair)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name} is empty or whitespace-only")
        if pair is not None and "{pair}" not in self.template:
            raise InputError("this prompt template has no {pair} placeholder")
        tok = self.tokenizer
        ids: list[int] = []
        offs: list[tuple[int, int]] = []
        seq: list[int | None] = []
        for part, seg in enumerate([text] if pair is None else [text, pair]):
            if part:
                ids.append(self._sep)
                offs.append((0, 0))
                seq.append(None)
            enc = tok(seg, add_special_tokens=False, return_offsets_mapping=True)
            ids += list(enc["input_ids"])
            offs += [tuple(o) for o in enc["offset_mapping"]]
            seq += [part] * len(enc["input_ids"])
        return Encoded(text=text, pair=pair, ids=np.asarray(ids, dtype=np.int64), type_ids=None,
                       offsets=tuple((int(a), int(b)) for a, b in offs),
                       sequence_ids=tuple(seq), truncated=False)

    def _prompt_ids(self, row: np.ndarray) -> np.ndarray:
        """Template around the (perturbed) text tokens of one row."""
        ids = [int(t) for t in row if int(t) != DELETED]
        parts = [ids]
        if self._sep in ids:
            k = ids.index(self._sep)
            parts = [ids[:k], ids[k + 1 :]]
        texts = [self.tokenizer.decode(p, skip_special_tokens=False) for p in parts]
        filled = self.template.replace("{text}", texts[0]).replace(
            "{pair}", texts[1] if len(texts) > 1 else "")
        return self.lm.prompt_ids(filled)

    # --------------------------------------------------------------- scores
    def logits(self, blocks: Sequence[np.ndarray],
               type_blocks: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Label log-probabilities (rows x labels) for every row of every block."""
        rows = [r for b in blocks for r in np.asarray(b).reshape(len(b), -1)]
        prompts = [self._prompt_ids(r) for r in rows]
        pairs = [(i, k, v) for i in range(len(rows)) for k, vs in enumerate(self._verb_ids)
                 for v in vs]
        lp = self._score([prompts[i] for i, _, _ in pairs], [v for _, _, v in pairs])
        out = np.full((len(rows), self.num_labels), -np.inf)
        for (i, k, _), val in zip(pairs, lp, strict=True):
            out[i, k] = np.logaddexp(out[i, k], val)
        res, start = [], 0
        for b in blocks:
            n = len(b)
            res.append(out[start : start + n].astype(np.float32))
            start += n
        return res

    def _score(self, prompts: list[np.ndarray], outs: list[np.ndarray]) -> np.ndarray:
        return np.array([lp.sum() for lp in self.lm.logprobs_of_ids(prompts, outs)])

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int | None = None
                 ) -> list[Generation]:
        return self.lm.generate(prompts, max_new_tokens=max_new_tokens)

    def embedding_gradients(self, *args: Any, **kw: Any) -> Any:
        raise InputError("gradient explainers are not available on a prompted classifier; use "
                         "perturbation explainers or a classification head (LoRA fine-tuning)")


def finetune_prompted(clf: PromptClassifier, examples: Sequence[Any], *, epochs: int = 2,
                      lr: float = 1e-3, batch_size: int = 8, lora_r: int = 8,
                      lora_alpha: int = 16, lora_dropout: float = 0.0, seed: int = 0
                      ) -> tuple[PromptClassifier, dict[str, Any]]:
    """LoRA-fine-tune the LM of ``clf`` so that it answers the template with the gold label's
    (first) verbalizer: cross-entropy over the labels' verbalizer log-probabilities. Returns a
    new PromptClassifier (adapters merged; ``clf`` untouched) and the loss per epoch."""
    import copy

    import torch

    from .lora import merge, wrap

    data = [e for e in examples if e.label is not None]
    if not data or epochs < 1 or batch_size < 1:
        raise InputError("finetune_prompted needs labelled examples, epochs and batch_size >= 1")
    model = copy.deepcopy(clf.model)
    peft_model = wrap(model, r=lora_r, alpha=lora_alpha, dropout=lora_dropout, targets=None,
                      seed=seed, causal_lm=True)
    prompts = [clf._prompt_ids(clf.encode(e.text, e.pair).ids) for e in data]
    verbs = [v[0] for v in clf._verb_ids]
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    peft_model.train()
    history = []
    for _ in range(epochs):
        total = 0.0
        perm = rng.permutation(len(data))
        for start in range(0, len(data), batch_size):
            idx = perm[start : start + batch_size]
            rows = [(i, k) for i in idx for k in range(len(verbs))]
            inputs, offs = clf.lm.teacher_inputs([prompts[i] for i, _ in rows],
                                                  [verbs[k] for _, k in rows])
            logp = torch.log_softmax(peft_model(**inputs).logits.float(), -1)
            scores = torch.stack([
                logp[r, torch.arange(len(verbs[k]), device=logp.device) + offs[r],
                     torch.from_numpy(verbs[k]).to(logp.device)].sum()
                for r, (_, k) in enumerate(rows)]).view(len(idx), len(verbs))
            gold = torch.tensor([int(data[i].label) for i in idx], device=logp.device)
            loss = torch.nn.functional.cross_entropy(scores, gold)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(data))
    peft_model.eval()
    merged = merge(peft_model)
    tuned = PromptClassifier(merged, clf.tokenizer, model_id=f"{clf.model_id}+lora-prompted",
                             revision=clf.revision, max_batch_size=clf.max_batch_size,
                             template=clf.template, verbalizers=clf.verbalizers, chat=clf.chat,
                             max_new_tokens=clf.max_new_tokens)
    return tuned, {"loss_history": history, "n_train": len(data), "lora_r": lora_r}

