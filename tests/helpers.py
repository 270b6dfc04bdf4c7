"""Shared test helpers: a linear bag-of-embeddings classifier with known attributions, input
sentences, and brute-force Shapley values computed by enumerating every coalition."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

import faithscope as fs
from faithscope.explainers import score_masks
from faithscope.targets import get_target

ASSETS = Path(__file__).parent / "assets"

# [PAD], [UNK], [MASK] in the BERT uncased vocabulary (tests/assets/bert_vocab.txt)
BERT_PAD, BERT_UNK, BERT_MASK = 0, 100, 103

SENTENCES = [
    "An unboxing, frankly: it's well-conceived!",  # subword splits + punctuation
    "a gorgeous, witty film",
]
PAIR = ("the plot is thin.", "yet oddly moving")
INPUTS = [*SENTENCES, PAIR]

# six short movie reviews (both polarities) for the sanity and attack tests
REVIEWS = [
    "a gorgeous , witty and moving film with a charming cast",
    "the plot is thin and the acting is flat , a dull and tedious mess",
    "never boring : the music is great and the director loved every scene",
    "an awful script , weak actors and a stupid routine story",
    "really fine acting but the movie is too long and quite boring",
    "one of the best films , funny and wonderful",
]


class FineTuned(NamedTuple):
    """A session fixture's fine-tuned model (tests/conftest.py): the adapter, ``finetune``'s
    info, and the labelled examples it was trained and evaluated on."""

    model: fs.ModelAdapter
    info: dict[str, Any]
    train: tuple[Any, ...]
    dev: tuple[Any, ...]


class LinearBag(nn.Module):
    """logits = sum over real positions of E[ids] @ W + b: every token adds a fixed vector.

    The [PAD], [UNK] and [MASK] rows of E are zero, so replacing a unit's tokens by [MASK] (or
    deleting them) removes exactly that unit's contribution: with ``target_fn="logit"`` the
    explained quantity is linear in the unit mask, and the exact attribution of unit ``u`` to
    class ``c`` is ``sum(E[id] @ W[:, c] for id in u's tokens)``.
    """

    def __init__(self, vocab_size: int = 30522, hidden: int = 8, num_labels: int = 2,
                 zero_ids: tuple[int, ...] = (BERT_PAD, BERT_UNK, BERT_MASK), seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(vocab_size, hidden)
        self.W = nn.Parameter(torch.randn(hidden, num_labels, generator=g))
        self.b = nn.Parameter(torch.randn(num_labels, generator=g))
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(vocab_size, hidden, generator=g))
            self.emb.weight[list(zero_ids)] = 0.0
        self.config = SimpleNamespace(num_labels=num_labels, pad_token_id=None)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_):
        x = self.emb(input_ids)  # (rows, length, hidden); a forward hook may replace it
        if attention_mask is not None:
            x = x * attention_mask[..., None].to(x.dtype)
        return x.sum(1) @ self.W + self.b  # a plain tensor: the adapter accepts that too

    def token_contributions(self, ids: np.ndarray) -> np.ndarray:
        """Per-token contribution to every logit: (length x classes)."""
        with torch.no_grad():
            return (self.emb.weight[torch.as_tensor(ids)] @ self.W).double().numpy()

    def unit_contributions(self, item) -> np.ndarray:
        """Exact per-unit contributions (classes x units) for a Prepared item."""
        tok = self.token_contributions(item.enc.ids)
        return np.stack([tok[list(u.tokens)].sum(0) for u in item.units], axis=1)


def all_coalitions(d: int) -> np.ndarray:
    """Every subset of d units as a boolean mask (2**d x d); row i is the binary code of i."""
    codes = np.arange(2**d)
    return ((codes[:, None] >> np.arange(d)) & 1).astype(bool)


def game_values(adapter, item, target_fn: str = "prob", operator: str = "mask") -> np.ndarray:
    """v(S) for every coalition S (2**d x targets), in all_coalitions order."""
    masks = all_coalitions(item.n_units)
    return score_masks(adapter, [item], [masks], get_target(target_fn), operator=operator)[0]


def brute_force_shapley(values: np.ndarray, d: int) -> np.ndarray:
    """Exact Shapley values (targets x units) from v over all coalitions (all_coalitions order):
    phi_i = sum_{S not containing i} |S|! (d-|S|-1)! / d! (v(S+i) - v(S))."""
    phi = np.zeros((values.shape[1], d))
    for i in range(d):
        bit = 1 << i
        for code in range(2**d):
            if code & bit:
                continue
            s = bin(code).count("1")
            w = math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
            phi[:, i] += w * (values[code | bit] - values[code])
    return phi


def marginal_std(values: np.ndarray, d: int) -> np.ndarray:
    """Standard deviation (targets x units) of unit i's marginal contribution v(S+i) - v(S)
    when S is the set of units before i in a uniformly random permutation."""
    mean = brute_force_shapley(values, d)
    var = np.zeros_like(mean)
    for i in range(d):
        bit = 1 << i
        for code in range(2**d):
            if code & bit:
                continue
            s = bin(code).count("1")
            w = math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
            var[:, i] += w * (values[code | bit] - values[code] - mean[:, i]) ** 2
    return np.sqrt(var)


def with_batch_size(adapter: fs.ModelAdapter, max_batch_size: int) -> fs.ModelAdapter:
    """A fresh adapter (own stats and batch size) around the same model and tokenizer."""
    return fs.ModelAdapter(adapter.model, adapter.tokenizer, model_id=adapter.model_id,
                           revision=adapter.revision, max_batch_size=max_batch_size,
                           max_length=adapter.max_length, labels=adapter.labels)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch threads (the suite defaults to 1), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hand_exp(scores, *, targets=(1,), probs=(0.3, 0.7), example_id="x",
             binary: bool = False) -> fs.Explanation:
    """An Explanation over units w0 w1 ... (one token each) with the given score rows."""
    from faithscope.units import Unit

    s = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    units, pos = [], 0
    for i in range(s.shape[1]):
        w = f"w{i}"
        units.append(Unit(w, pos, pos + len(w), 0, (i + 1,)))
        pos += len(w) + 1
    text = " ".join(u.text for u in units)
    return fs.Explanation(example_id=example_id, text=text, pair=None, units=tuple(units),
                          scores=s, targets=tuple(targets),
                          target_labels=tuple(str(t) for t in targets),
                          probs=np.asarray(probs), explainer="hand", params={}, binary=binary)


def hand_item(scores, truth=None, *, targets=(1,), target=None, binary: bool = False):
    """EvalItem with a boolean reference mask that is True at the indices in ``truth``."""
    from faithscope.metrics.base import EvalItem

    e = hand_exp(scores, targets=targets, binary=binary)
    ref = None
    if truth is not None:
        ref = np.zeros(len(e.units), dtype=bool)
        ref[list(truth)] = True
    return EvalItem(e, None, ref, targets[0] if target is None else target)


def save_tiny(path, seed: int = 0, **kw: Any):
    """Save a tiny random BERT classifier (faithscope.models.tiny) to ``path``; returns it."""
    from faithscope.models.tiny import tiny_classifier

    tiny = tiny_classifier(seed=seed, **kw)
    tiny.model.save_pretrained(path)
    tiny.tokenizer.save_pretrained(path)
    return path


# ------------------------------------------------------------------ explanation contract
# shared by tests/test_conformance.py (classifiers) and tests/test_conformance_generation.py
def check_scores(e: fs.Explanation, n_targets: int) -> None:
    """Scores are float32, (targets x units) for this explanation's units, and finite."""
    assert e.units, "every input has at least one unit"
    assert e.scores.dtype == np.float32
    assert e.scores.shape == (n_targets, len(e.units))
    assert len(e.targets) == n_targets
    assert np.isfinite(e.scores).all()


def check_same_scores(first, again) -> None:
    """Two runs of the same call (same seed) give identical units and scores."""
    assert len(first) == len(again)
    for a, b in zip(first, again):
        assert a.units == b.units
        assert np.array_equal(a.scores, b.scores)


def check_batch_invariance(big, one, name: str, atol: float = 1e-5) -> None:
    """The same call with a large and a batch size of 1: same units, scores equal to atol."""
    assert len(big) == len(one)
    for a, b in zip(big, one):
        assert a.units == b.units
        assert np.allclose(a.scores, b.scores, atol=atol, rtol=0), (
            f"{name}: max |diff| {np.abs(a.scores - b.scores).max():.3g}")


def check_round_trip(exps, path) -> list[fs.Explanation]:
    """Save ``exps`` to ``path`` (its suffix picks the format), load them back, and check the
    loaded explanations equal them exactly; returns the loaded ones."""
    loaded = fs.load_explanations(fs.save_explanations(exps, path))
    assert len(loaded) == len(exps)
    for a, b in zip(exps, loaded):
        assert a.equals(b)  # exact: atol=0
        assert b.scores.dtype == np.float32
        assert np.array_equal(a.scores, b.scores)
        assert a.units == b.units and dict(a.info) == dict(b.info)
        assert (a.output, a.output_ids, a.levels) == (b.output, b.output_ids, b.levels)
    return loaded


def kill_9_midway(cmd: list[str], study: Path, at_least: int = 4) -> tuple[int, int]:
    """Run ``cmd`` (a study-running CLI command, one torch thread), SIGKILL it once the study
    at ``study`` has ``at_least`` finished units, and return (units finished, units planned):
    the common part of the kill -9 tests of studies and audits."""
    import json
    import os
    import signal
    import subprocess
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    units = study / "units"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(units.rglob("[!.]*.done.json"))) < at_least:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = sum(1 for p in units.rglob("*.done.json") if not p.name.startswith("."))
    total = sum(len(v) for v in json.loads((study / "manifest.json").read_text())["plan"].values())
    return done, total
