"""The ``pad`` masking operator is a pure replacement, or refused: RoBERTa-style embeddings
number positions by skipping pad ids (a unit replaced by pad would shift every later position),
and decoder classifiers read the rightmost non-pad token (a replaced last unit would move the
read-out)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.explainers.base import score_masks
from faithscope.targets import get_target

TEXT = "a good cast and a fine plot"


def test_pad_on_roberta_is_a_pure_replacement(roberta_adapter):
    ad = roberta_adapter
    assert ad.positions_from_padding == ad.tokenizer.pad_token_id
    (it,) = fs.prepare(ad, [TEXT])
    j = 1  # a unit inside the text: later tokens must keep their positions
    keep = np.ones(it.n_units, dtype=bool)
    keep[j] = False
    (got,) = score_masks(ad, [it], [keep[None]], get_target("logit"), operator="pad")
    # independent: a copy of the model with an unused token whose embedding is the pad
    # embedding; replacing the unit's tokens by it changes only their embeddings
    model = copy.deepcopy(ad.model)
    emb = model.get_input_embeddings().weight
    pad = ad.tokenizer.pad_token_id
    spare = emb.shape[0] - 1
    assert spare not in set(it.enc.ids.tolist()) and spare != pad
    with torch.no_grad():
        emb[spare] = emb[pad]
    ids = it.enc.ids.copy()
    ids[list(it.units[j].tokens)] = spare
    with torch.no_grad():
        want = model(input_ids=torch.tensor(ids[None])).logits[0, it.targets[0]].item()
    assert got[0, 0] == pytest.approx(want, abs=1e-5)
    # the model's own numbering on pad ids shifts the later positions: a different number
    ids[list(it.units[j].tokens)] = pad
    with torch.no_grad():
        shifted = ad.model(input_ids=torch.tensor(ids[None])).logits[0, it.targets[0]].item()
    assert abs(shifted - want) > 1e-4


def test_pad_on_a_decoder_classifier_is_refused(llama_adapter):
    ad = llama_adapter
    assert ad.pooling == "last" and ad.positions_from_padding is None
    with pytest.raises(fs.InputError, match="would move that read-out; use operator 'delete'"):
        fs.explain(ad, [TEXT], ("leave_one_out", {"mask": "pad"}))
    exps = fs.explain(ad, [TEXT], "leave_one_out")  # mask -> unk: not the pad id, allowed
    with pytest.raises(fs.InputError, match="read-out"):
        fs.evaluate(exps, ad, ["comprehensiveness"], operator="pad", random=False)
    assert set(fs.evaluate(exps, ad, ["comprehensiveness"], random=False)["operator"]) == \
        {"delete"}
    # why: replacing the last token by the pad id moves the read-out to an earlier token
    (it,) = fs.prepare(ad, [TEXT])
    ids = it.enc.ids.copy()
    last = ids.copy()
    last[-1] = ad.model.config.pad_token_id
    with torch.no_grad():
        a = ad.model(input_ids=torch.tensor(last[None])).logits[0]
        b = ad.model(input_ids=torch.tensor(ids[None, :-1])).logits[0]
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)  # it reads token -2
