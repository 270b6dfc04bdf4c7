"""Removal metrics in ERASER's and in ferret's conventions (``convention="eraser"|"ferret"``).

Each convention is checked against an INDEPENDENT implementation written here from the peers'
source, in plain numpy over a model's probabilities of token-id sequences (deletion, no
faithscope code on the path):

* ERASER (DeYoung et al. 2020): github.com/jayded/eraserbenchmark
  ``rationale_benchmark/metrics.py`` (``_instances_aopc``: the mean of p(x) - p(x_k) over the
  thresholds, for the predicted class) and the baseline models that produce the thresholded
  scores, github.com/successar/Eraser-Benchmark-Baseline-Models
  ``Rationale_model/models/classifiers/*.py`` (``remove_tokens`` / ``regenerate_tokens``:
  ``max_length = math.ceil(n * threshold)``, the top ``max_length`` tokens by score are deleted
  / the only ones kept). Their ``np.argsort`` leaves ties to numpy's quicksort; here ties go to
  the earlier token, faithscope's rule.
* ferret (Attanasio et al. 2023), ferret-xai 0.4.2 ``ferret/evaluators/
  faithfulness_measures.py`` and ``utils_from_soft_to_discrete.py``: ``v = int(f * n)``, a bin
  with v = 0 is skipped, ``argsort()[-v:][::-1]`` keeps positive scores only (``only_pos``, its
  default), a rationale equal to the last one used is dropped, an empty one skipped, the mean
  over the bins used, and 0 (comprehensiveness) / 1 (sufficiency) when no bin is left. Ties:
  the later token, as ``argsort`` gives under a stable sort (``kind="stable"`` here).

ferret decodes the kept ids to text and re-tokenizes; here, as in faithscope, the kept token
ids are scored directly ("on the same token ids").
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics

import numpy as np
import pytest
import torch

import faithscope as fs
from faithscope.metrics import get_metric, n_top
from faithscope.metrics.base import CONVENTIONS, n_floor
from faithscope.metrics.faithfulness import ERASER_BINS, FERRET_BINS
from helpers import hand_item

AOPC = ("aopc_comprehensiveness", "aopc_sufficiency")
FERRET_ARANGE = tuple(float(b) for b in np.arange(0.1, 1.1, 0.1))  # ferret's literal bins


# ------------------------------------------------------------------ independent references
def softmax64(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


class TokenModel:
    """p(class | token ids) straight from a float64 copy of the torch model, one unpadded
    sequence at a time, cached per id sequence. In float64 the reference is exact to ~1e-15:
    what remains of a difference is faithscope's float32 inference (padded batches), measured
    at <= 7.4e-7 on these explanations."""

    def __init__(self, adapter):
        self.model = copy.deepcopy(adapter.model).double().eval()
        self.tok = adapter.tokenizer
        self.cache: dict[tuple[int, ...], np.ndarray] = {}

    def __call__(self, ids) -> np.ndarray:
        key = tuple(int(i) for i in ids)
        if key not in self.cache:
            t = torch.tensor([key], dtype=torch.long)
            with torch.no_grad():
                out = self.model(input_ids=t, attention_mask=torch.ones_like(t),
                                 token_type_ids=torch.zeros_like(t))
            logits = out.logits if hasattr(out, "logits") else out
            self.cache[key] = softmax64(logits[0].double().numpy())
        return self.cache[key]

    def wrap(self, ids) -> list[int]:
        return [self.tok.cls_token_id, *ids, self.tok.sep_token_id]


def eraser_scores(prob, docs: list[list[int]], scores, thresholds, *, keep_top: bool,
                  cls: int | None = None) -> list[float]:
    """ERASER's p(x) - p(x_k) per threshold; ``docs``: the token ids of each ERASER token."""
    n = len(docs)
    full = prob(prob.wrap([t for d in docs for t in d]))
    kls = int(np.argmax(full)) if cls is None else cls  # ERASER: inst["classification"]
    out = []
    for threshold in thresholds:
        max_length = math.ceil(n * threshold)
        top = set(np.argsort(-np.asarray(scores, dtype=np.float64),
                             kind="stable")[:max_length].tolist())
        kept = [i for i in range(n) if (i in top) == keep_top]
        out.append(full[kls] - prob(prob.wrap([t for i in kept for t in docs[i]]))[kls])
    return out


def eraser_aopc(prob, docs, scores, thresholds=ERASER_BINS, *, keep_top: bool) -> float:
    return float(np.average(eraser_scores(prob, docs, scores, thresholds, keep_top=keep_top)))


def ferret_aopc(prob, ids: list[int], scores, target: int, thresholds=FERRET_ARANGE, *,
                sufficiency: bool) -> float:
    """ferret's AOPC_Comprehensiveness/Sufficiency_Evaluation, removal by "perc", only_pos."""
    scores = np.asarray(scores)
    baseline = prob(prob.wrap(ids))[target]
    removal_importance = []
    last_id_top = None
    for v in thresholds:
        k = int(v * len(scores))
        if not 0 < k <= len(scores):
            continue
        id_top = [i for i in scores.argsort(kind="stable")[-k:][::-1] if scores[i] > 0]
        if not id_top:
            continue
        if last_id_top is not None and set(id_top) == last_id_top:
            continue
        last_id_top = set(id_top)
        sample = np.array(ids)
        kept = sample[np.sort(id_top)] if sufficiency else np.delete(sample, id_top)
        removal_importance.append(baseline - prob(prob.wrap(kept.tolist()))[target])
    if not removal_importance:
        return 1.0 if sufficiency else 0.0
    return float(statistics.mean(removal_importance))


# ------------------------------------------------------------------------- explanations
TEXTS = [
    "a good cast",  # 3 tokens: 1, 5, 10, 20 % round to 0 units under floor
    "the plot is thin but the cast is very good",
    "the film is long and slow and dull but the cast shines in every scene and the music "
    "carries it to a moving end",
    "stuffed to the brim with ideas",  # word pieces: stuff ##ed, bri ##m
]


def crafted(e: fs.Explanation) -> list[fs.Explanation]:
    """Scores built to separate the conventions: ties, negatives, all negative, all zero."""
    n = len(e.units)
    i = np.arange(n)
    rows = {
        "ties": np.where(i % 3 == 1, -0.4, np.where(i % 2 == 0, 0.5, 0.2)),
        "negatives": np.where(i % 4 == 0, 0.3 + 0.01 * i, -0.2 - 0.01 * i),
        "all_negative": -1.0 - 0.1 * i,
        "zeros": np.zeros(n),
    }
    return [dataclasses.replace(e, scores=r[None, :].astype(np.float32), explainer=name)
            for name, r in rows.items()]


def explanations(adapter, granularity: str, *, other_class: bool = False):
    exps = fs.explain(adapter, TEXTS, ["leave_one_out", ("lime", {"n_samples": 40})],
                      granularity=granularity, seed=0)
    out = list(exps)
    for e in exps[::2]:
        out += crafted(e)
    if other_class:  # the class NOT predicted (ferret scores any target)
        for text, e in zip(TEXTS, exps[::2], strict=True):
            (o,) = fs.explain(adapter, [text], ["leave_one_out"], granularity=granularity,
                              target=1 - e.predicted)
            assert o.targets == (1 - o.predicted,)
            out.append(dataclasses.replace(o, example_id=e.example_id, explainer="loo_other"))
    return out


def token_ids(prob: TokenModel, e: fs.Explanation) -> list[int]:
    ids = prob.tok(e.text)["input_ids"][1:-1]
    assert [u.tokens for u in e.units] == [(t + 1,) for t in range(len(ids))]
    return ids


def word_docs(prob: TokenModel, e: fs.Explanation) -> list[list[int]]:
    """ERASER tokens (whitespace words) as token-id lists, from the tokenizer's word ids."""
    enc = prob.tok(e.text)
    words: dict[int, list[int]] = {}
    for t, w in zip(enc["input_ids"], enc.word_ids(), strict=True):
        if w is not None:
            words.setdefault(w, []).append(t)
    assert len(words) == len(e.text.split()) == len(e.units)
    return list(words.values())


def evaluate(exps, adapter, name, **params):
    df = fs.evaluate(exps, adapter, metrics=[(name, params)], random=False, operator="delete")
    assert list(df.explainer) == [e.explainer for e in exps]
    return df


@pytest.fixture(scope="module")
def prob(bert_adapter):
    return TokenModel(bert_adapter)


@pytest.fixture(scope="module")
def token_exps(bert_adapter):
    return explanations(bert_adapter, "token", other_class=True)


@pytest.fixture(scope="module")
def word_exps(bert_adapter):
    return explanations(bert_adapter, "word")


# ------------------------------------------------------------- hand-computed, no model
def test_k_rules():
    assert CONVENTIONS == ("eraser", "ferret")
    # (fraction, n): ERASER ceil (>= 1), ferret floor (0 = an empty bin)
    cases = {(0.01, 3): (1, 0), (0.2, 3): (1, 0), (0.5, 3): (2, 1), (1.0, 3): (3, 3),
             (0.1, 25): (3, 2), (0.5, 25): (13, 12), (0.3, 10): (3, 3), (0.05, 19): (1, 0),
             (0.05, 20): (1, 1), (0.29, 100): (29, 29), (0.5, 0): (0, 0)}
    for (f, n), (ceil_k, floor_k) in cases.items():
        assert (n_top(f, n), n_floor(f, n)) == (ceil_k, floor_k), (f, n)
    # through the metrics: ERASER's bins of 3 units -> k 1 1 1 1 2; ferret's -> 0 0 0 0 1 (the
    # four empty bins are skipped)
    it = hand_item([0.3, 0.2, 0.1])
    assert get_metric("aopc_comprehensiveness").tops(it).sum(1).tolist() == [1, 1, 1, 1, 2]
    assert get_metric("aopc_comprehensiveness", convention="ferret").tops(it).sum(
        1).tolist() == [1]
    # ferret's default bins are np.arange(0.1, 1.1, 0.1): 10 % ... 100 %
    np.testing.assert_allclose(FERRET_BINS, FERRET_ARANGE, rtol=0, atol=1e-15)
    assert get_metric("aopc_comprehensiveness", convention="ferret", bins=FERRET_BINS).tops(
        it).sum(1).tolist() == [1, 2, 3]


def test_hand_masks_and_values_differ_by_convention():
    # units 0..5; ties 0.5 at units 0 and 2; a negative and a zero score
    it = hand_item([0.5, -0.2, 0.5, 0.1, 0.0, 0.3])
    bins = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # of 6 units: ceil 1 2 2 3 5 6, floor 0 1 1 3 4 6
    er = get_metric("aopc_comprehensiveness", bins=bins)
    fe = get_metric("aopc_comprehensiveness", bins=bins, convention="ferret")
    removed_er = [[0], [0, 2], [0, 2], [0, 2, 5], [0, 2, 5, 3, 4], list(range(6))]
    np.testing.assert_array_equal(~er.masks(it), [np.isin(range(6), r) for r in removed_er])
    # ferret: 10 % -> 0 units (skipped); 20 % -> unit 2 (the later of the tie); 30 % repeats
    # it (dropped); 50 % -> 2, 0, 5; 70 % -> 4 units, all positive; 100 %: the same 4 (dropped)
    removed_fe = [[2], [2, 0, 5], [2, 0, 5, 3]]
    np.testing.assert_array_equal(~fe.masks(it), [np.isin(range(6), r) for r in removed_fe])
    full = np.array([0.3, 0.7])
    p_er = np.array([[0.5, 0.5], [0.6, 0.4], [0.6, 0.4], [0.8, 0.2], [0.9, 0.1], [1.0, 0.0]])
    v, d = er.from_probs(it, full, p_er)
    assert v == pytest.approx((0.2 + 0.3 + 0.3 + 0.5 + 0.6 + 0.7) / 6, abs=1e-12)
    assert d["k"] == [1, 2, 2, 3, 5, 6] and d["convention"] == "eraser"
    v, d = fe.from_probs(it, full, np.array([[0.5, 0.5], [0.8, 0.2], [0.9, 0.1]]))
    assert v == pytest.approx((0.2 + 0.5 + 0.6) / 3, abs=1e-12)  # over the 3 bins used
    assert d == {"k": [1, 3, 4], "values": pytest.approx([0.2, 0.5, 0.6], abs=1e-12),
                 "convention": "ferret", "bins": [0.2, 0.5, 0.7]}
    # sufficiency keeps the same units; single-fraction metrics follow the same rules
    fs_ = get_metric("aopc_sufficiency", bins=bins, convention="ferret")
    np.testing.assert_array_equal(fs_.masks(it), ~fe.masks(it))
    np.testing.assert_array_equal(~get_metric("comprehensiveness", fraction=0.2).masks(it),
                                  [np.isin(range(6), [0, 2])])
    np.testing.assert_array_equal(
        ~get_metric("comprehensiveness", fraction=0.2, convention="ferret").masks(it),
        [np.isin(range(6), [2])])


def test_ferret_ties_later_unit_eraser_earlier():
    it = hand_item([0.2, 0.2, 0.2, 0.2])
    er = get_metric("comprehensiveness", fraction=0.5)
    fe = get_metric("comprehensiveness", fraction=0.5, convention="ferret")
    np.testing.assert_array_equal(er.masks(it), [[False, False, True, True]])
    np.testing.assert_array_equal(fe.masks(it), [[True, True, False, False]])


def test_ferret_positive_scores_only_and_fallback():
    it = hand_item([-0.5, 0.4, -0.1, 0.0, -0.3])  # one positive unit (1)
    full = np.array([0.3, 0.7])
    fe = get_metric("aopc_comprehensiveness", convention="ferret", bins=FERRET_BINS)
    # 10 %: 0 units (skipped); 20 %: unit 1; 40 % .. 100 %: still unit 1 only (dropped)
    np.testing.assert_array_equal(fe.masks(it), [[True, False, True, True, True]])
    v, d = fe.from_probs(it, full, np.array([[0.4, 0.6]]))
    assert v == pytest.approx(0.1) and d["bins"] == [0.2] and d["k"] == [1]
    # ERASER takes the top k whatever their sign: 10 % and 40 % of 5 units -> 1 and 2 units
    er = get_metric("aopc_comprehensiveness", bins=(0.1, 0.4))
    np.testing.assert_array_equal(~er.masks(it), [[False, True, False, False, False],
                                                  [False, True, False, True, False]])
    # no positive score: no bin left -> ferret's fallback, 0 and 1; ERASER removes anyway
    neg = hand_item([-0.5, -0.4, 0.0])
    for name, fallback in zip(AOPC, (0.0, 1.0), strict=True):
        m = get_metric(name, convention="ferret")
        assert m.masks(neg).shape == (0, 3)
        v, d = m.from_probs(neg, full, np.zeros((0, 2)))
        assert v == fallback and d["bins"] == [] and d["values"] == []
        assert get_metric(name).masks(neg).shape == (5, 3)
    # by="abs": ranked by |score|, every unit (no positive filter)
    fa = get_metric("comprehensiveness", fraction=0.4, by="abs", convention="ferret")
    np.testing.assert_array_equal(fa.masks(it), [[False, False, True, True, True]])  # 0, 1


def test_binary_explanations_are_scored_on_their_selection_in_both_conventions():
    it = hand_item([0.0, 1.0, 0.0, 1.0], binary=True)
    for name in (*AOPC, "comprehensiveness", "sufficiency"):
        er, fe = get_metric(name), get_metric(name, convention="ferret")
        np.testing.assert_array_equal(er.masks(it), fe.masks(it))
        assert len(fe.masks(it)) == 1
    empty = hand_item([0.0, 0.0], binary=True)  # an empty selection removes nothing
    v, d = get_metric("aopc_comprehensiveness", convention="ferret").from_probs(
        empty, np.array([0.3, 0.7]), np.array([[0.3, 0.7]]))
    assert v == 0.0 and d["convention"] == "ferret"


def test_convention_is_a_validated_recorded_hyper_parameter(bert_adapter):
    for name in (*AOPC, "comprehensiveness", "sufficiency"):
        assert get_metric(name).convention == "eraser"  # the default
        m = get_metric((name, {"convention": "ferret"}))
        assert m.params()["convention"] == "ferret"
        with pytest.raises(fs.InputError, match="convention must be one of"):
            get_metric(name, convention="ERASER")
    for name in ("flip_rate", "deletion_curve", "perturbation_curve"):
        with pytest.raises(fs.InputError, match="unknown hyper-parameter"):
            get_metric(name, convention="ferret")
    exps = fs.explain(bert_adapter, TEXTS[:2], ["leave_one_out"], granularity="token")
    df = fs.evaluate(exps, bert_adapter, metrics=[
        ("aopc_comprehensiveness", {"convention": "ferret"}), "aopc_comprehensiveness"])
    got = {(r.metric, r.detail["convention"]) for r in df.itertuples()}
    assert got == {("aopc_comprehensiveness", "ferret"), ("aopc_comprehensiveness", "eraser")}


# ------------------------------------------- through the public API vs the references
@pytest.mark.parametrize("granularity", ["token", "word"])
def test_eraser_convention_equals_independent_eraser(bert_adapter, prob, token_exps, word_exps,
                                                     granularity):
    exps = [e for e in (token_exps if granularity == "token" else word_exps)
            if e.targets[0] == e.predicted]  # ERASER scores the predicted class
    docs = [[[t] for t in token_ids(prob, e)] if granularity == "token" else word_docs(prob, e)
            for e in exps]
    for name, keep_top in zip(AOPC, (False, True), strict=True):
        df = evaluate(exps, bert_adapter, name)  # the default convention
        want = [eraser_aopc(prob, d, e.scores[0], keep_top=keep_top)
                for e, d in zip(exps, docs, strict=True)]
        np.testing.assert_allclose(df.value, want, rtol=0, atol=1e-6)
        assert set(df.detail.map(lambda d: d["convention"])) == {"eraser"}
        fe = evaluate(exps, bert_adapter, name, convention="ferret")
        assert np.abs(fe.value.to_numpy() - np.asarray(want)).max() > 1e-3
    for name, keep_top in (("comprehensiveness", False), ("sufficiency", True)):
        df = evaluate(exps, bert_adapter, name, fraction=0.35)
        want = [eraser_scores(prob, d, e.scores[0], [0.35], keep_top=keep_top)[0]
                for e, d in zip(exps, docs, strict=True)]
        np.testing.assert_allclose(df.value, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bins", [FERRET_ARANGE, ERASER_BINS], ids=["ferret_bins", "eraser_bins"])
def test_ferret_convention_equals_independent_ferret(bert_adapter, prob, token_exps, bins):
    exps = token_exps
    for name, suff in zip(AOPC, (False, True), strict=True):
        df = evaluate(exps, bert_adapter, name, convention="ferret", bins=bins)
        want = [ferret_aopc(prob, token_ids(prob, e), e.scores[0], e.targets[0], bins,
                            sufficiency=suff) for e in exps]
        np.testing.assert_allclose(df.value, want, rtol=0, atol=1e-6)
        assert set(df.detail.map(lambda d: d["convention"])) == {"ferret"}
        er = evaluate(exps, bert_adapter, name, bins=bins)  # ERASER's rules on the same bins
        assert np.abs(er.value.to_numpy() - np.asarray(want)).max() > 1e-3
        # the cases built for it: ferret's fallback, and bins that round to 0 units
        fallback = 1.0 if suff else 0.0
        for e, row in zip(exps, df.itertuples(), strict=True):
            if e.explainer in ("all_negative", "zeros"):
                assert row.value == fallback and row.detail["bins"] == []
        short = [r.detail for e, r in zip(exps, df.itertuples(), strict=True)
                 if len(e.units) == 3 and e.explainer == "leave_one_out"]
        assert short and all(min(d["bins"], default=1.0) >= 1 / 3 for d in short)


# ---------------------------------------------- linear bag of words: exact expectations
def test_linear_bag_exact(linear_adapter):
    """LinearBag: logits = b + sum of per-token vectors, so p(kept tokens) is known in closed
    form; both conventions reproduce it, and differ where the scores are built to."""
    model = linear_adapter.model
    with torch.no_grad():
        b = model.b.double().numpy()
    tok = linear_adapter.tokenizer
    texts = ["a gorgeous witty film with a charming cast", "the plot is thin"]
    base = fs.explain(linear_adapter, texts, ["leave_one_out"], granularity="token")
    exps = [x for e in base for x in (e, *crafted(e))]

    def p_kept(e, keep) -> float:
        ids = tok(e.text)["input_ids"]
        c = model.token_contributions(np.array(ids))  # (tokens x classes)
        rows = [0, *(i + 1 for i in range(len(keep)) if keep[i]), len(ids) - 1]
        return float(softmax64(b + c[rows].sum(0))[e.targets[0]])

    def expected(e, convention, keep_top):
        s = np.asarray(e.scores[0], dtype=np.float64)
        n = len(s)
        full = p_kept(e, [True] * n)
        drops, last = [], None
        for f in ERASER_BINS if convention == "eraser" else FERRET_BINS:
            if convention == "eraser":
                top = set(sorted(range(n), key=lambda i: (-s[i], i))[:max(1, math.ceil(f * n))])
            else:
                k = math.floor(f * n + 1e-9)
                top = {i for i in sorted(range(n), key=lambda i: (-s[i], -i))[:k] if s[i] > 0}
                if not top or top == last:
                    continue
                last = top
            drops.append(full - p_kept(e, [(i in top) == keep_top for i in range(n)]))
        if not drops:
            return 1.0 if keep_top else 0.0
        return float(np.mean(drops))

    for name, keep_top in zip(AOPC, (False, True), strict=True):
        er = evaluate(exps, linear_adapter, name)
        fe = evaluate(exps, linear_adapter, name, convention="ferret", bins=FERRET_BINS)
        np.testing.assert_allclose(er.value, [expected(e, "eraser", keep_top) for e in exps],
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(fe.value, [expected(e, "ferret", keep_top) for e in exps],
                                   rtol=0, atol=1e-6)
        assert np.abs(er.value.to_numpy() - fe.value.to_numpy()).max() > 1e-3
