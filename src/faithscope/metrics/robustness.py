"""Input robustness of explanations: max and average sensitivity (Quantus definitions).

A small change of the input that leaves the model's prediction alone should leave the
explanation (nearly) alone. For ``n_samples`` random perturbations ``x'`` of the input, the
explainer runs again for the same target class and the relative change of the explanation is

    sensitivity(x') = || a(x) - a(x') ||_2 / || a(x) ||_2

(Frobenius norm of the difference, normalised by the explanation's norm so that explainers of
different scales and texts of different lengths compare). ``max_sensitivity`` reports the
largest value over the samples, ``avg_sensitivity`` the mean (Yeh et al. 2019; Quantus's
``MaxSensitivity`` / ``AvgSensitivity`` with the explanation-norm denominator). Lower is better.

Two perturbations of text:

* ``noise`` (``max_sensitivity``, ``avg_sensitivity``): uniform noise in ``[-r, r]`` on every
  dimension of the word embeddings of the input's tokens (Quantus's ``uniform_noise``), with
  ``r = radius`` times the standard deviation of the embedding matrix so that one radius fits
  every model; each token id of an example gets one noise vector per sample (every occurrence
  in that example; special tokens are untouched);
* ``drop_unit`` (``max_sensitivity_word``, ``avg_sensitivity_word``): delete the tokens of one
  unit chosen at random among those outside the top ``fraction`` of the explanation (by
  absolute score); both explanations are compared on the remaining units.

Randomness is per example: the noise of token id ``t`` of example ``e`` in sample ``s`` is a
counter-based (Philox) stream keyed by (``seed``, example id, ``s``, ``t``) (:func:`token_noise`),
and the unit ``drop_unit`` deletes is drawn from a generator keyed by (``seed``, ``s``, example
id), so an example's perturbations, and its value, do not depend on the other examples of the
call or their order: evaluating per shard gives what one call gives. All examples still form one
virtual batch per sample: each example's noisy tokens get private rows appended to the word
embedding table for the duration of the call (:func:`private_embedding_rows`), so the same word
in two examples carries each example's own noise. An adapter that does not feed token ids to the
model as they are (a prompted classifier decodes them into its prompt) runs one example per
call instead, with that example's noise on the shared table (template tokens with the same ids
included, as before).

Samples whose perturbation changes the predicted class are left out (``exclude_flips=True``,
Quantus's ``return_nan_when_prediction_changes``); their number is in the detail. Quantus's
default of 200 samples is lowered to 10: each sample re-runs the explainer.

References: Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations" (NeurIPS);
Bhatt et al. 2020 (avg-sensitivity); Hedstroem et al. 2023, "Quantus" (JMLR).

Example
-------
>>> import faithscope as fs
>>> from faithscope.models.tiny import tiny_classifier
>>> model = tiny_classifier()
>>> exps = fs.explain(model, ["a good film , really", "a dull mess"], ["gradient_x_input"])
>>> df = fs.evaluate(exps, model, metrics=["max_sensitivity", "avg_sensitivity_word"],
...                  random=False)
>>> sorted(df["family"].unique()), bool((df["value"] >= 0).all())
(['robustness'], True)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._lazy import lazy_import
from ..explainers.base import Explainer, Prepared, attribute_grouped, token_unit_index
from ..explanation import Explanation
from ..models.adapter import Encoded, InputError, ModelAdapter
from ..models.batching import seed_torch
from ..registry import metrics
from ..targets import TargetFn, get_target
from .analysis import Analysis, Values, nan_to_none
from .base import n_top

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")

PERTURBATIONS = ("noise", "drop_unit")


def drop_unit(item: Prepared, u: int) -> Prepared:
    """``item`` with the tokens of unit ``u`` deleted (units after it renumbered; the logits
    are still the original input's: rescore before relying on them)."""
    enc = item.enc
    keep = np.ones(len(enc), dtype=bool)
    keep[list(item.units[u].tokens)] = False
    new_pos = np.cumsum(keep) - 1
    new_enc = Encoded(
        text=enc.text, pair=enc.pair, ids=enc.ids[keep],
        type_ids=None if enc.type_ids is None else enc.type_ids[keep],
        offsets=tuple(o for o, k in zip(enc.offsets, keep, strict=True) if k),
        sequence_ids=tuple(s for s, k in zip(enc.sequence_ids, keep, strict=True) if k),
        truncated=enc.truncated)
    units = tuple(replace(v, tokens=tuple(int(new_pos[t]) for t in v.tokens))
                  for j, v in enumerate(item.units) if j != u)
    return replace(item, enc=new_enc, units=units,
                   token_unit=token_unit_index(units, len(new_enc)))


def _rescored(adapter: ModelAdapter, items: Sequence[Prepared]) -> list[Prepared]:
    """Items with the model's logits on their (possibly changed) input."""
    if not items:
        return []
    types = None if items[0].enc.type_ids is None else [
        it.enc.type_ids[None, :] for it in items]  # type: ignore[index]
    logits = adapter.logits([it.enc.ids[None, :] for it in items], types)
    return [replace(it, logits=lg[0]) for it, lg in zip(items, logits, strict=True)]


def example_key(example_id: str) -> int:
    """A 64-bit key of an example id (BLAKE2b), for counter-based generators."""
    return int.from_bytes(hashlib.blake2b(example_id.encode(), digest_size=8).digest(), "little")


def token_noise(seed: int, example_id: str, sample: int, token_ids: Sequence[int], hidden: int,
                half: float) -> np.ndarray:
    """Uniform noise in ``[-half, half]`` (float32, tokens x hidden): row ``k`` is drawn from a
    Philox stream with key (``seed``, :func:`example_key` of ``example_id``) at counter
    (0, 0, ``sample``, ``token_ids[k]``), so it depends on those four values only (not on the
    other tokens or examples of a call)."""
    bits = np.random.Philox(key=[seed % 2**64, example_key(example_id)])
    gen = np.random.Generator(bits)
    state = bits.state
    out = np.empty((len(token_ids), hidden), dtype=np.float32)
    for k, t in enumerate(token_ids):
        # as Philox(key=..., counter=[0, 0, sample, t]), without building one per token
        state["state"]["counter"] = np.array([0, 0, sample, int(t)], dtype=np.uint64)
        state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0  # no buffer
        bits.state = state
        out[k] = gen.uniform(-half, half, size=hidden)
    return out


def noisy_ids(adapter: ModelAdapter, item: Prepared) -> list[int]:
    """The token ids the noise perturbs in ``item``: those of its units, special ids excluded,
    sorted."""
    return sorted({int(t) for t in item.enc.ids[item.token_unit >= 0]} - adapter.special_ids)


@contextlib.contextmanager
def private_embedding_rows(adapter: ModelAdapter, n_rows: int) -> Iterator[tuple[int, Any]]:
    """Within the block the word-embedding table has ``n_rows`` extra rows after its ``V`` rows
    (a new parameter in place of the old one, so an output layer tied to it is untouched);
    yields ``V`` and the extra rows (a tensor view, to fill under ``torch.no_grad``). The
    original parameter is back on exit."""
    emb = adapter.model.get_input_embeddings()
    original = emb.weight
    vocab, hidden = int(original.shape[0]), int(original.shape[1])
    with torch.no_grad():
        table = torch.cat([original.detach(), original.new_zeros((n_rows, hidden))])
    size = getattr(emb, "num_embeddings", None)
    emb.weight = torch.nn.Parameter(table, requires_grad=original.requires_grad)
    if size is not None:
        emb.num_embeddings = vocab + n_rows
    try:
        yield vocab, emb.weight.data[vocab:]
    finally:
        emb.weight = original
        if size is not None:
            emb.num_embeddings = size


def _feeds_ids(adapter: ModelAdapter) -> bool:
    """Whether the adapter runs the model on the items' token ids as they are (not, as a
    prompted classifier does, on a prompt re-tokenized from their decoded text)."""
    return type(adapter).logits is ModelAdapter.logits


def relative_change(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||a||; NaN when ``a`` is all zero."""
    den = float(np.linalg.norm(a))
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / den) if den > 0 else math.nan


@dataclass(frozen=True, kw_only=True)
class _Sensitivity(Analysis):
    family = "robustness"
    higher_is_better = False
    bounds = (0.0, math.inf)
    reference = "Yeh et al. 2019; Quantus (Hedstroem et al. 2023)"
    aggregate: ClassVar[str] = "max"
    perturbation: ClassVar[str] = "noise"
    n_samples: int = 10
    radius: float = 0.2  # noise half-width, in standard deviations of the embedding matrix
    fraction: float = 0.2  # drop_unit: the top share of units that is never dropped
    exclude_flips: bool = True
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) \
                or self.n_samples < 1:
            raise InputError(f"{self.name}: n_samples must be a positive integer")
        if not self.radius > 0:
            raise InputError(f"{self.name}: radius must be positive, got {self.radius!r}")

    def analyse(self, adapter: ModelAdapter, explainer: Explainer,
                explanations: Sequence[Explanation], items: Sequence[Prepared]) -> Values:
        if not items:
            return []
        fn = get_target(explanations[0].target_fn)
        n, s_count = len(items), self.n_samples
        vals = np.full((n, s_count), np.nan)
        flipped = np.zeros((n, s_count), dtype=bool)
        base = [np.asarray(e.scores[0], dtype=np.float64) for e in explanations]
        pred = [int(np.argmax(it.logits)) for it in items]

        def record(s: int, idx: Sequence[int], refs: Sequence[np.ndarray],
                   new: Sequence[Prepared], scores: Sequence[np.ndarray]) -> None:
            for r, (i, sc) in enumerate(zip(idx, scores, strict=True)):
                vals[i, s] = relative_change(refs[r], np.asarray(sc, dtype=np.float64)[0])
                flipped[i, s] = int(np.argmax(new[r].logits)) != pred[i]

        if self.perturbation == "noise":
            self._noise_samples(adapter, explainer, items, fn, base, record)
        else:
            self._drop_samples(adapter, explainer, items, fn, base, record)
        out = []
        for i in range(n):
            use = vals[i][~flipped[i]] if self.exclude_flips else vals[i]
            use = use[np.isfinite(use)]
            mx = float(use.max()) if len(use) else math.nan
            mean = float(use.mean()) if len(use) else math.nan
            detail: dict[str, Any] = {
                "perturbation": self.perturbation, "n_samples": s_count,
                "n_used": len(use), "n_flipped": int(flipped[i].sum()), "max": mx,
                "mean": mean, "per_sample": nan_to_none(vals[i].tolist())}
            detail["radius" if self.perturbation == "noise" else "fraction"] = (
                self.radius if self.perturbation == "noise" else self.fraction)
            out.append((mx if self.aggregate == "max" else mean, detail))
        return out

    def _noise_samples(self, adapter: ModelAdapter, explainer: Explainer,
                       items: Sequence[Prepared], fn: TargetFn, base: Sequence[np.ndarray],
                       record: Callable[..., None]) -> None:
        """Every sample of embedding noise: all examples in one explainer call per sample, each
        token id of each example on a private embedding row (see the module docstring)."""
        weight = adapter.embedding_matrix()
        half = self.radius * float(weight.float().std())
        hidden = int(weight.shape[1])
        ids = [noisy_ids(adapter, it) for it in items]
        if not _feeds_ids(adapter):  # ids go through text: one example at a time
            for s in range(self.n_samples):
                for i, it in enumerate(items):
                    rows = dict(zip(ids[i], token_noise(self.seed, it.example_id, s, ids[i],
                                                        hidden, half), strict=True))
                    with adapter.perturbed_embeddings(rows):
                        new = _rescored(adapter, [it])
                        seed_torch(it.seed)
                        scores, _ = attribute_grouped(explainer, adapter, new, fn)
                    record(s, [i], [base[i]], new, scores)
            return
        starts = np.cumsum([0] + [len(t) for t in ids])
        flat = torch.tensor([t for ts in ids for t in ts], dtype=torch.long,
                            device=weight.device)
        clean = weight[flat].float()
        with private_embedding_rows(adapter, int(starts[-1])) as (vocab, extra):
            moved = []
            for it, ts, a in zip(items, ids, starts[:-1], strict=True):
                where = {t: vocab + int(a) + k for k, t in enumerate(ts)}
                new_ids = np.array([where.get(int(t), int(t)) for t in it.enc.ids],
                                   dtype=it.enc.ids.dtype)
                moved.append(replace(it, enc=replace(it.enc, ids=new_ids)))
            idx = list(range(len(items)))
            for s in range(self.n_samples):
                noise = np.concatenate([token_noise(self.seed, it.example_id, s, ts, hidden, half)
                                        for it, ts in zip(items, ids, strict=True)])
                with torch.no_grad():
                    extra.copy_((clean + torch.from_numpy(noise).to(clean.device)
                                 ).to(extra.dtype))
                new = _rescored(adapter, moved)
                seed_torch(items[0].seed)
                scores, _ = attribute_grouped(explainer, adapter, new, fn)
                record(s, idx, base, new, scores)

    def _drop_samples(self, adapter: ModelAdapter, explainer: Explainer,
                      items: Sequence[Prepared], fn: TargetFn, base: Sequence[np.ndarray],
                      record: Callable[..., None]) -> None:
        """Every sample of unit deletion: one explainer call per sample for all examples."""
        for s in range(self.n_samples):
            idx, dropped = [], []
            for i, (it, a) in enumerate(zip(items, base, strict=True)):
                protect = set(np.argsort(-np.abs(a), kind="stable")[
                    : n_top(self.fraction, it.n_units)].tolist())
                cand = [u for u in range(it.n_units) if u not in protect]
                if cand:
                    rng = np.random.default_rng(
                        [self.seed, s, zlib.crc32(it.example_id.encode())])
                    idx.append(i)
                    dropped.append(int(rng.choice(cand)))
            new = _rescored(adapter, [drop_unit(items[i], u)
                                      for i, u in zip(idx, dropped, strict=True)])
            refs = [np.delete(base[i], u) for i, u in zip(idx, dropped, strict=True)]
            if new:
                seed_torch(items[0].seed)
                scores, _ = attribute_grouped(explainer, adapter, new, fn)
                record(s, idx, refs, new, scores)


# one metric class, four registered presets (Yeh et al. 2019: max / average sensitivity;
# under embedding noise, or deleting one unit outside the top fraction)
MaxSensitivity = metrics.preset("max_sensitivity", _Sensitivity, aggregate="max",
                                perturbation="noise")
AvgSensitivity = metrics.preset("avg_sensitivity", _Sensitivity, aggregate="mean",
                                perturbation="noise")
MaxSensitivityWord = metrics.preset("max_sensitivity_word", _Sensitivity, aggregate="max",
                                    perturbation="drop_unit")
AvgSensitivityWord = metrics.preset("avg_sensitivity_word", _Sensitivity, aggregate="mean",
                                    perturbation="drop_unit")
