"""Fine-tuning: recipe validation, early stopping, validation split, LoRA, determinism.

Everything runs on tiny random models saved to a temporary folder (BERT from
:func:`faithscope.models.tiny.tiny_classifier`, a 2-layer Llama with the stories260K tokenizer).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

import faithscope as fs
import faithscope.models.finetune as ft
from faithscope.data import Example
from faithscope.models import lora
from faithscope.models.finetune import (
    Recipe,
    cache_key,
    encoder_layers,
    finetune,
    frozen_parameters,
    validation_split,
)
from faithscope.models.tiny import tiny_classifier
from helpers import ASSETS, save_tiny

torch.set_num_threads(1)

TOY = [("good film", 1), ("bad film", 0), ("a great movie", 1), ("a dull movie", 0),
       ("witty and charming", 1), ("boring and flat", 0), ("loved it", 1), ("awful mess", 0)]


def toy(n_repeat: int = 2) -> list[Example]:
    return [Example(str(i), t, label=y) for i, (t, y) in enumerate(TOY * n_repeat)]


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), seed=0)


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    """A tiny Llama classifier whose config and tokenizer have *no* pad token."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(ASSETS / "stories260K")
    assert tok.pad_token_id is None
    torch.manual_seed(2)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                      num_labels=2, max_position_embeddings=256, pad_token_id=None,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      initializer_range=0.3)
    model = LlamaForSequenceClassification(cfg)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def params(adapter) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------------- recipe
def test_recipe_defaults_are_the_published_schedule():
    r = Recipe()
    assert (r.epochs, r.batch_size, r.lr, r.warmup) == (10, 16, 5e-5, 0.06)
    assert (r.patience, r.val_fraction, r.lora_r, r.lora_alpha, r.lora_dropout,
            r.lora_targets) == (5, 0.1, None, 16, 0.05, None)
    assert r.early_stopping
    assert not Recipe(epochs=1).early_stopping
    assert not Recipe(patience=None).early_stopping
    assert Recipe(lora_r=4, lora_targets=["q_proj"]).lora_targets == ("q_proj",)  # normalised


@pytest.mark.parametrize("kw, msg", [
    ({"epochs": 0}, "epochs"), ({"epochs": 2.5}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"weight_decay": -1}, "weight_decay"),
    ({"warmup": 1.5}, "warmup"), ({"max_length": 1}, "max_length"), ({"seed": 1.0}, "seed"),
    ({"patience": 0}, "patience"), ({"patience": True}, "patience"),
    ({"val_fraction": 0}, "val_fraction"), ({"val_fraction": 1.0}, "val_fraction"),
    ({"lora_r": 0}, "lora_r"), ({"lora_alpha": 0}, "lora_alpha"),
    ({"lora_dropout": 1.0}, "lora_dropout"), ({"lora_targets": ()}, "lora_targets"),
    ({"lora_targets": ("q", "")}, "lora_targets"),
    ({"lora_r": 4, "train_encoder": False}, "exclusive"),
    ({"train_layers": -1}, "train_layers"), ({"train_layers": 1.0}, "train_layers"),
    ({"train_layers": True}, "train_layers"), ({"train_layers": 1, "lora_r": 4}, "exclusive"),
    ({"train_layers": 1, "train_encoder": False}, "train_encoder=True"),
    ({"group_by_length": 1}, "group_by_length"),
])
def test_invalid_recipes_raise_input_error(kw, msg):
    with pytest.raises(fs.InputError, match=msg):
        Recipe(**kw)


def test_unlabelled_dev_for_early_stopping_is_rejected(bert_path, tmp_path):
    dev = [Example("d", "good film")]
    with pytest.raises(fs.InputError, match="dev"):
        finetune(bert_path, toy(), dev=dev, recipe=Recipe(epochs=2), cache_dir=tmp_path,
                 device="cpu")


# ------------------------------------------------------------------------ validation split
def test_held_out_split_is_seeded_disjoint_and_sized():
    data = toy(5)  # 40 examples
    fit, val = validation_split(data, Recipe(epochs=2, val_fraction=0.25, seed=3))
    assert (len(fit), len(val)) == (30, 10)
    assert sorted(e.id for e in fit + val) == sorted(e.id for e in data)
    assert [e.id for e in fit] == [e.id for e in data if e not in val]  # input order kept
    again = validation_split(data, Recipe(epochs=2, val_fraction=0.25, seed=3))[1]
    other = validation_split(data, Recipe(epochs=2, val_fraction=0.25, seed=4))[1]
    assert [e.id for e in again] == [e.id for e in val] != [e.id for e in other]
    assert len(validation_split(data, Recipe(epochs=2, val_fraction=0.001))[1]) == 1  # >= 1
    assert len(validation_split(data[:2], Recipe(epochs=2, val_fraction=0.9))[0]) == 1
    with pytest.raises(fs.InputError, match="2 training examples"):
        validation_split(data[:1], Recipe(epochs=2))


def test_dev_is_the_validation_set_when_given():
    data, dev = toy(1), toy(1)[:3]
    assert validation_split(data, Recipe(epochs=2), dev) == (data, dev)


@pytest.mark.parametrize("recipe", [Recipe(epochs=1), Recipe(epochs=3, patience=None)])
def test_inactive_early_stopping_trains_on_everything(recipe):
    data, dev = toy(), toy(1)
    assert validation_split(data, recipe) == (data, [])
    assert validation_split(data, recipe, dev) == (data, [])


def _old_train(adapter, train, recipe):
    """The training loop of FINETUNE_CODE_VERSION 1, verbatim (minus progress reports)."""
    model, tok = adapter.model, adapter.tokenizer
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    total = math.ceil(len(train) / recipe.batch_size) * recipe.epochs
    warm = max(1, int(recipe.warmup * total))
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in n.lower() else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    labels = torch.tensor([ex.label for ex in train])
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), recipe.batch_size):
            idx = order[i : i + recipe.batch_size].tolist()
            enc = tok([train[j].text for j in idx], None, padding=True, truncation=True,
                      max_length=recipe.max_length, return_tensors="pt")
            out = model(**enc, labels=labels[idx])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(decay + no_decay, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    model.eval()


def test_inactive_early_stopping_matches_the_old_training_loop(bert_path, tmp_path):
    """The demo's recipe (one epoch, no dev) trains exactly as before: same data, same weights."""
    data = toy(3)
    recipe = Recipe(epochs=1, batch_size=5, lr=1e-3)
    steps = []
    tuned, info = finetune(bert_path, data, recipe=recipe, cache_dir=tmp_path, device="cpu",
                           progress=lambda s, t, loss: steps.append((s, t)))
    assert steps[-1] == (5, 5) and len(steps) == 5  # ceil(24 / 5) steps over all 24 examples
    assert (info["n_train"], info["n_val"], info["val_history"]) == (24, 0, [])
    assert (info["epochs_run"], info["best_epoch"], info["early_stopped"]) == (1, 1, False)
    ref = fs.load_model(bert_path, labels=("negative", "positive"), device="cpu", seed=0)
    _old_train(ref, data, recipe)
    assert_same_weights(params(tuned), params(ref))
    # with early stopping inactive the dev set does not change the cache entry
    again = finetune(bert_path, data, recipe=recipe, dev=data[:4], cache_dir=tmp_path,
                     device="cpu")[1]
    assert again["cached"] and again["path"] == info["path"]


def test_dev_set_is_part_of_the_cache_key_only_with_early_stopping(bert_path):
    base = fs.load_model(bert_path, device="cpu")
    data, dev = toy(1), toy(1)[:2]
    key = lambda r, d=(): cache_key(base, data, r, ("negative", "positive"), dev=d)  # noqa: E731
    assert key(Recipe(epochs=2)) != key(Recipe(epochs=2), dev)
    assert key(Recipe(epochs=2)) != key(Recipe(epochs=3))


def test_new_recipe_fields_at_their_defaults_keep_old_cache_keys(bert_path):
    """``train_layers``/``group_by_length`` came after FINETUNE_CODE_VERSION 2: at their defaults
    the key is the one computed before they existed; set, they change it."""
    import dataclasses
    import hashlib
    import json

    base = fs.load_model(bert_path, device="cpu")
    data, labels = toy(1), ("negative", "positive")
    recipe = Recipe(epochs=2)
    old = {k: v for k, v in dataclasses.asdict(recipe).items()
           if k not in ("train_layers", "group_by_length")}
    h = hashlib.sha256()
    h.update(json.dumps({"model": base.model_id, "revision": base.revision,
                         "labels": list(labels), "recipe": old,
                         "code": ft.FINETUNE_CODE_VERSION}, sort_keys=True).encode())
    ft._hash_examples(h, data)
    assert cache_key(base, data, recipe, labels) == h.hexdigest()[:16]
    keys = {cache_key(base, data, r, labels) for r in (
        recipe, dataclass_replace(recipe, train_layers=1),
        dataclass_replace(recipe, train_layers=0), dataclass_replace(recipe, group_by_length=True))}
    assert len(keys) == 4


# --------------------------------------------------------------------- partial fine-tuning
def test_encoder_layers_are_found_by_architecture(bert_path, llama_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    bert = fs.load_model(bert_path, device="cpu").model
    llama = fs.load_model(llama_path, device="cpu").model
    gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=64, n_embd=16, n_layer=3,
                                                    n_head=2, num_labels=2))
    assert encoder_layers(bert) is bert.bert.encoder.layer and len(encoder_layers(bert)) == 2
    assert encoder_layers(llama) is llama.model.layers
    assert encoder_layers(gpt2) is gpt2.transformer.h and len(encoder_layers(gpt2)) == 3
    with pytest.raises(fs.InputError, match="transformer layers"):
        encoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    frozen = frozen_parameters(llama, 1)
    assert "model.embed_tokens.weight" in frozen
    assert any(n.startswith("model.layers.0.") for n in frozen)
    assert not any(n.startswith(("model.layers.1.", "model.norm", "score")) for n in frozen)
    assert {n for n in frozen_parameters(gpt2, 3)} == {"transformer.wte.weight",
                                                         "transformer.wpe.weight"}
    with pytest.raises(fs.InputError, match="only 2 layers"):
        frozen_parameters(bert, 3)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_train_layers_freezes_embeddings_and_lower_layers(arch, bert_path, llama_path, tmp_path):
    """Recipe(train_layers=1) on 2-layer models: the embeddings and layer 0 come out bit-identical,
    the last layer, final norm/pooler and head are trained; the checkpoint is cached."""
    path = {"bert": bert_path, "llama": llama_path}[arch]
    top = {"bert": ("bert.encoder.layer.1.", "bert.pooler.", "classifier."),
           "llama": ("model.layers.1.", "model.norm.", "score.")}[arch]
    bottom = {"bert": ("bert.embeddings.", "bert.encoder.layer.0."),
              "llama": ("model.embed_tokens.", "model.layers.0.")}[arch]
    base = params(fs.load_model(path, labels=("negative", "positive"), device="cpu", seed=0))
    recipe = Recipe(epochs=2, batch_size=4, lr=1e-2, patience=None, train_layers=1,
                    group_by_length=True)
    tuned, info = finetune(path, toy(), recipe=recipe, cache_dir=tmp_path, device="cpu")
    after = params(tuned)
    names = [n for n, _ in tuned.model.named_parameters()]
    assert any(n.startswith(bottom) for n in names) and any(n.startswith(top) for n in names)
    for n in names:
        if n.startswith(bottom):
            assert torch.equal(after[n], base[n]), f"frozen {n} changed"
        elif n.startswith(top):
            assert not torch.equal(after[n], base[n]), f"trained {n} did not change"
    trained = sum(p.numel() for n, p in tuned.model.named_parameters() if n.startswith(top))
    assert info["trainable_params"] == trained
    assert info["recipe"]["train_layers"] == 1 and info["recipe"]["group_by_length"] is True
    stored = fs.load_model(info["path"], device="cpu")
    assert_same_weights(params(stored), after)
    again = finetune(path, toy(), recipe=recipe, cache_dir=tmp_path, device="cpu")
    assert again[1]["cached"] and again[1]["path"] == info["path"]


def test_train_layers_zero_trains_only_pooler_and_head(bert_path, tmp_path):
    base = params(fs.load_model(bert_path, labels=("negative", "positive"), device="cpu", seed=0))
    tuned, info = finetune(bert_path, toy(), cache_dir=tmp_path, device="cpu",
                           recipe=Recipe(epochs=1, batch_size=4, lr=1e-2, train_layers=0))
    after = params(tuned)
    changed = {n for n, _ in tuned.model.named_parameters() if not torch.equal(after[n], base[n])}
    assert changed and all(n.startswith(("bert.pooler.", "classifier.")) for n in changed)
    assert info["trainable_params"] == sum(
        p.numel() for n, p in tuned.model.named_parameters()
        if n.startswith(("bert.pooler.", "classifier.")))


def test_group_by_length_batches_every_example_once_by_similar_length():
    data = [Example(str(i), "x" * (1 + (i * 37) % 101), label=i % 2) for i in range(250)]
    recipe = Recipe(batch_size=4, group_by_length=True)
    batches = ft._batches(data, recipe, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(250))
    assert sorted(len(b) for b in batches) == [2] + [4] * 62  # chunks of 200: 50 + 12.5
    spread = np.mean([max(len(data[i].text) for i in b) - min(len(data[i].text) for i in b)
                      for b in batches])
    plain = ft._batches(data, dataclass_replace(recipe, group_by_length=False),
                        torch.Generator().manual_seed(0))
    spread_plain = np.mean([max(len(data[i].text) for i in b) - min(len(data[i].text) for i in b)
                            for b in plain])
    assert spread < spread_plain / 5  # far less padding
    again = ft._batches(data, recipe, torch.Generator().manual_seed(0))
    assert again == batches  # seeded
    # without it: the order of the original loop (randperm, then consecutive slices)
    order = torch.randperm(250, generator=torch.Generator().manual_seed(0)).tolist()
    assert plain == [order[i : i + 4] for i in range(0, 250, 4)]


# ------------------------------------------------------------------------- early stopping
def test_early_stopping_stops_when_validation_cannot_improve(bert_path, tmp_path):
    # the same text with both labels: validation accuracy is exactly 0.5 whatever is learnt
    dev = [Example("a", "good film", label=1), Example("b", "good film", label=0)]
    tuned, info = finetune(bert_path, toy(), dev=dev, cache_dir=tmp_path, device="cpu",
                           recipe=Recipe(epochs=10, batch_size=8, lr=1e-3, patience=2))
    assert info["val_history"] == [0.5, 0.5, 0.5]
    assert (info["epochs_run"], info["best_epoch"], info["early_stopped"]) == (3, 1, True)
    assert (info["n_val"], info["n_train"]) == (2, 16)
    assert info["dev_accuracy"] == max(info["val_history"]) == ft.accuracy(tuned, dev)
    stored = fs.load_model(info["path"], device="cpu")
    assert ft.accuracy(stored, dev) == 0.5


def test_early_stopping_restores_the_best_epoch(bert_path, tmp_path, monkeypatch):
    """Scripted validation accuracies: best at epoch 2, patience 3 -> stop after epoch 5."""
    script = [0.5, 0.75, 0.5, 0.75, 0.25]
    snapshots: list[dict[str, torch.Tensor]] = []
    real = ft.accuracy

    def scripted(adapter, data):
        if len(snapshots) < len(script):
            assert not adapter.model.training  # evaluated without dropout
            snapshots.append(params(adapter))
            return script[len(snapshots) - 1]
        return real(adapter, data)

    monkeypatch.setattr(ft, "accuracy", scripted)
    tuned, info = finetune(bert_path, toy(), cache_dir=tmp_path, device="cpu",
                           recipe=Recipe(epochs=8, batch_size=4, lr=1e-3, patience=3))
    assert info["val_history"] == script
    assert (info["epochs_run"], info["best_epoch"], info["early_stopped"]) == (5, 2, True)
    assert (info["n_val"], info["n_train"]) == (2, 14)  # 10 % of 16, rounded
    final = params(tuned)
    assert_same_weights(final, snapshots[1])
    assert not torch.equal(final["classifier.weight"], snapshots[-1]["classifier.weight"])
    assert_same_weights(params(fs.load_model(info["path"], device="cpu")), final)


def test_best_epoch_kept_when_validation_keeps_improving(bert_path, tmp_path, monkeypatch):
    script = iter([0.25, 0.5, 0.75])
    monkeypatch.setattr(ft, "accuracy", lambda adapter, data: next(script))
    info = finetune(bert_path, toy(), cache_dir=tmp_path, device="cpu",
                    recipe=Recipe(epochs=3, batch_size=8, lr=1e-3, patience=1))[1]
    assert (info["epochs_run"], info["best_epoch"], info["early_stopped"]) == (3, 3, False)


# ---------------------------------------------------------------------------- determinism
def test_same_recipe_gives_bit_identical_weights(bert_path, tmp_path):
    recipe = Recipe(epochs=2, batch_size=4, lr=1e-3, seed=7)  # early stopping + dropout
    a, info_a = finetune(bert_path, toy(), recipe=recipe, cache_dir=tmp_path / "a",
                         device="cpu")
    b, info_b = finetune(bert_path, toy(), recipe=recipe, cache_dir=tmp_path / "b",
                         device="cpu")
    assert not info_a["cached"] and not info_b["cached"]
    assert_same_weights(params(a), params(b))
    assert info_a["val_history"] == info_b["val_history"]
    c = finetune(bert_path, toy(), recipe=dataclass_replace(recipe, seed=8),
                 cache_dir=tmp_path / "c", device="cpu")[0]
    assert not torch.equal(params(a)["classifier.weight"], params(c)["classifier.weight"])


def dataclass_replace(recipe: Recipe, **kw) -> Recipe:
    import dataclasses

    return dataclasses.replace(recipe, **kw)


# ---------------------------------------------------------------------------------- LoRA
def test_default_lora_targets_follow_the_architecture():
    from transformers import (
        GPT2Config,
        GPT2ForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    llama = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2))
    gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=64, n_embd=16, n_layer=1,
                                                    n_head=2, num_labels=2))
    assert lora.default_targets(llama) == ("q_proj", "v_proj")
    assert lora.head_modules(llama) == ["score"]
    assert lora.default_targets(gpt2) == ("c_attn",)
    assert lora.default_targets(tiny_classifier().model) == ("query", "value")
    with pytest.raises(fs.InputError, match="lora_targets"):
        lora.default_targets(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_lora_without_peft_asks_to_install_it(bert_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(fs.InputError, match="pip install peft"):
        finetune(bert_path, toy(), recipe=Recipe(epochs=1, lora_r=2), cache_dir=tmp_path,
                 device="cpu")


def test_unknown_lora_target_is_an_input_error(bert_path, tmp_path):
    with pytest.raises(fs.InputError, match="LoRA"):
        finetune(bert_path, toy(), cache_dir=tmp_path, device="cpu",
                 recipe=Recipe(epochs=1, lora_r=2, lora_targets=("no_such_layer",)))


def test_lora_on_a_tiny_llama_classifier(llama_path, tmp_path):
    data = toy(2)
    losses: list[float] = []
    recipe = Recipe(epochs=6, batch_size=4, lr=1e-2, lora_r=4, patience=None, warmup=0.0)
    tuned, info = finetune(llama_path, data, recipe=recipe, dev=data, cache_dir=tmp_path,
                           device="cpu", progress=lambda s, t, loss: losses.append(loss))
    # the decoder had no pad token: eos is used, in the tokenizer and the model config
    assert tuned.tokenizer.pad_token_id == tuned.tokenizer.eos_token_id is not None
    assert tuned.model.config.pad_token_id == tuned.tokenizer.eos_token_id
    # it learns the (trivially separable) toy set
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert info["dev_accuracy"] == 1.0
    # only adapters + head were trained
    full = sum(p.numel() for p in tuned.model.parameters())
    lora_params = 2 * 2 * (4 * 32 + 32 * 4)  # 2 layers x (q, v) x (A + B)
    assert info["trainable_params"] == lora_params + 2 * 32  # + the score head (no bias)
    assert info["trainable_params"] < full / 20
    # merged: a plain transformers model, in memory and on disk, with identical logits
    from transformers import LlamaForSequenceClassification

    stored = fs.load_model(info["path"], device="cpu")
    for m in (tuned.model, stored.model):
        assert type(m) is LlamaForSequenceClassification
        assert not any("lora" in n or "modules_to_save" in n for n, _ in m.named_parameters())
    encs = [tuned.encode(t) for t in ["good film", "a dull movie indeed", "loved it"]]
    np.testing.assert_array_equal(tuned.predict_proba(encs), stored.predict_proba(encs))
    assert stored.tokenizer.pad_token_id == stored.tokenizer.eos_token_id
    # the base weights did change (adapters merged in), the embeddings did not
    base = fs.load_model(llama_path, device="cpu")
    b, t = params(base), params(tuned)
    assert not torch.equal(b["model.layers.0.self_attn.q_proj.weight"],
                           t["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(b["model.layers.0.self_attn.k_proj.weight"],
                       t["model.layers.0.self_attn.k_proj.weight"])
    assert torch.equal(b["model.embed_tokens.weight"], t["model.embed_tokens.weight"])


def test_lora_early_stopping_restores_the_best_adapters(llama_path, tmp_path, monkeypatch):
    """Scripted validation: best at epoch 1, patience 1 -> stop after 2, merge epoch-1 LoRA."""
    script = [0.75, 0.5]
    seen: list[np.ndarray] = []

    def scripted(adapter, data):
        if len(seen) < len(script):
            seen.append(adapter.predict_proba([adapter.encode(t) for t, _ in TOY]))
            return script[len(seen) - 1]
        return 0.0

    monkeypatch.setattr(ft, "accuracy", scripted)
    tuned, info = finetune(llama_path, toy(), cache_dir=tmp_path, device="cpu",
                           recipe=Recipe(epochs=4, batch_size=4, lr=1e-2, lora_r=4, patience=1))
    assert (info["epochs_run"], info["best_epoch"], info["early_stopped"]) == (2, 1, True)
    final = tuned.predict_proba([tuned.encode(t) for t, _ in TOY])
    np.testing.assert_allclose(final, seen[0], atol=1e-5)  # merging only reorders float sums
    assert np.abs(final - seen[1]).max() > 1e-3


def test_lora_is_deterministic_and_smaller_than_full_finetuning(llama_path, tmp_path):
    recipe = Recipe(epochs=2, batch_size=4, lr=1e-2, lora_r=2, lora_dropout=0.2)
    a, info_a = finetune(llama_path, toy(), recipe=recipe, cache_dir=tmp_path / "a",
                         device="cpu")
    b = finetune(llama_path, toy(), recipe=recipe, cache_dir=tmp_path / "b", device="cpu")[0]
    assert_same_weights(params(a), params(b))
    full = finetune(llama_path, toy(), recipe=Recipe(epochs=1, batch_size=8),
                    cache_dir=tmp_path / "full", device="cpu")[1]
    assert full["trainable_params"] == sum(p.numel() for p in a.model.parameters())
    assert info_a["trainable_params"] * 20 < full["trainable_params"]
