"""A tiny random BERT classifier built offline in milliseconds, for examples and smoke tests.

Its scores mean nothing (random weights); it exists so that docstrings, notebooks and CI can
exercise the full pipeline without downloading anything.

Example
-------
>>> from faithscope.models.tiny import tiny_classifier
>>> adapter = tiny_classifier(seed=0)
>>> adapter.num_labels, adapter.labels
(2, ('negative', 'positive'))
>>> enc = adapter.encode("a good film")
>>> adapter.logits([enc.ids[None, :]])[0].shape
(1, 2)
"""

from __future__ import annotations

import string

import torch

from .adapter import ModelAdapter

_WORDS = (  # noqa: SIM905  (a readable word list)
    "a an the and or but not no is was are be it this that of to in on for with as by at "
    "film movie story plot actor actors acting director script scene scenes music cast "
    "good great fine best better love loved wonderful gorgeous witty funny charming moving "
    "bad worst boring dull awful poor mess flat tedious weak stupid routine "
    "very too so more most less really quite just never ever all some one two "
    "man woman person dog plays playing someone something music guitar outside people "
    "positive negative neutral true false yes . , ! ? ' - ( ) : ;"
).split()


def tiny_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits)
    pieces = ["##" + c for c in chars] + ["##s", "##ed", "##ing", "##ly", "##er"]
    seen: dict[str, None] = {}
    for tok in specials + _WORDS + chars + pieces:
        seen.setdefault(tok, None)
    return list(seen)


def tiny_classifier(
    *, seed: int = 0, num_labels: int = 2, hidden: int = 32, layers: int = 2,
    max_batch_size: int = 64,
) -> ModelAdapter:
    """A random ``BertForSequenceClassification`` with a small WordPiece vocabulary."""
    from transformers import (  # type: ignore[attr-defined]
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
    )

    vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    labels = ("negative", "positive") if num_labels == 2 else tuple(
        f"LABEL_{i}" for i in range(num_labels))
    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
        num_labels=num_labels, id2label=dict(enumerate(labels)),
        label2id={v: k for k, v in enumerate(labels)}, initializer_range=0.3,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    return ModelAdapter(model, tokenizer, model_id=f"faithscope/tiny-bert-{seed}",
                        revision="random", max_batch_size=max_batch_size)
