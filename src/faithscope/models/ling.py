"""LING-LR and LING-LR-E: deterministic logistic regression on interpretable text features.

``LING-LR`` (after Bogaert et al. 2024) classifies texts from features that need no download:
length, punctuation, word shape, lexical richness, negations, intensifiers, function-word rates
and counts of a vocabulary of n-grams fixed at fit time (the most frequent in the training texts,
ties broken alphabetically). ``LING-LR-E`` adds features derived from a transformer's
explanations: per class, a lexicon of the words with the highest mean attribution towards that
class (see :func:`attribution_lexicon`), counted in each text.

The fit is a convex problem (multinomial logistic loss + L2 on standardised features) solved by
L-BFGS from zero; no randomness is involved, and the solution does not depend on the order of
the training examples beyond float rounding. Explanations are ``coefficient x standardised
feature`` for the predicted class (:meth:`LingLR.explain`).

Example
-------
>>> texts = ["a great , moving film", "not good , never funny", "great fun !", "dull and flat"]
>>> clf = LingLR(ngram_vocab=20).fit(texts, [1, 0, 1, 0])
>>> clf.predict(["a great film", "not funny"]).tolist()
[1, 0]
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._lazy import lazy_import
from ..explanation import Explanation

if TYPE_CHECKING:
    from scipy import optimize
else:
    optimize = lazy_import("scipy.optimize")

WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?|n['’]t|[^\sA-Za-z0-9]")
NEGATIONS = frozenset(  # noqa: SIM905
    ["not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "without", "n't", "cannot", "hardly", "barely", "scarcely", "nowhere"])
INTENSIFIERS = frozenset(  # noqa: SIM905
    ["very", "really", "so", "too", "extremely", "absolutely", "quite", "pretty", "most", "totally", "completely", "utterly", "highly", "incredibly", "truly", "especially", "remarkably", "terribly", "awfully", "deeply", "entirely", "fully"])
FUNCTION_WORDS = {
    "article": "a an the",
    "pronoun": "i me my we us our you your he him his she her it its they them their this that "
               "these those who whom which what",
    "preposition": "of in on at by for with about against between into through during before "
                   "after above below to from up down over under",
    "conjunction": "and but or because as until while if than so yet",
    "auxiliary": "is are was were be been being have has had do does did will would shall "
                 "should can could may might must",
}
PUNCTUATION = {"exclamation": "!", "question": "?", "comma": ",", "period": ".",
               "semicolon": ";", "colon": ":", "quote": "\"'`", "bracket": "()[]",
               "dash": "-"}


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (a rule-based tokenizer, no model needed)."""
    return [w.lower() for w in WORD.findall(text)]


def style_features(text: str) -> dict[str, float]:
    """Length, punctuation, word shape, richness, negation, intensifier, function-word rates."""
    toks = WORD.findall(text)
    alpha = [t for t in toks if t[0].isalnum()]
    n = max(len(alpha), 1)
    low = [t.lower() for t in alpha]
    counts = Counter(low)
    f: dict[str, float] = {
        "n_chars": float(len(text)), "n_words": float(len(alpha)),
        "n_sentences": float(max(1, len(re.findall(r"[.!?]+(?:\s|$)", text)))),
        "mean_word_length": float(np.mean([len(t) for t in alpha])) if alpha else 0.0,
        "long_word_rate": sum(len(t) >= 7 for t in alpha) / n,
        "capitalized_rate": sum(t[0].isupper() for t in alpha) / n,
        "all_caps_rate": sum(t.isupper() and len(t) > 1 for t in alpha) / n,
        "digit_rate": sum(t.isdigit() for t in alpha) / n,
        "type_token_ratio": len(counts) / n,
        "hapax_rate": sum(c == 1 for c in counts.values()) / n,
        "negation_rate": sum(t in NEGATIONS or t.endswith("n't") for t in low) / n,
        "intensifier_rate": sum(t in INTENSIFIERS for t in low) / n,
    }
    for name, chars in PUNCTUATION.items():
        f[f"punct_{name}"] = sum(text.count(c) for c in chars) / n
    for name, ws in FUNCTION_WORDS.items():
        vocab = set(ws.split())
        f[f"fw_{name}_rate"] = sum(t in vocab for t in low) / n
    return f


def ngrams(toks: Sequence[str], n_max: int) -> list[str]:
    return [" ".join(toks[i : i + n]) for n in range(1, n_max + 1)
            for i in range(len(toks) - n + 1)]


def attribution_lexicon(explanations: Sequence[Explanation], labels: Sequence[int], *,
                        size: int = 50, min_count: int = 3) -> dict[int, list[str]]:
    """Per class, the ``size`` words with the highest mean attribution towards that class.

    ``explanations[i]`` explains towards ``labels[i]`` (its first target row); word units are
    lower-cased; words seen fewer than ``min_count`` times are ignored; ties break
    alphabetically. Pass the explanations of several seeds together to pool them.
    """
    sums: dict[int, defaultdict[str, float]] = {}
    counts: dict[int, Counter[str]] = {}
    for e, y in zip(explanations, labels, strict=True):
        for u, s in zip(e.units, e.scores[0], strict=True):
            w = u.text.lower()
            if not any(c.isalnum() for c in w):
                continue
            sums.setdefault(int(y), defaultdict(float))[w] += float(s)
            counts.setdefault(int(y), Counter())[w] += 1
    out = {}
    for y in sorted(sums):
        means = [(sums[y][w] / c, w) for w, c in counts[y].items() if c >= min_count]
        out[y] = [w for _, w in sorted(means, key=lambda t: (-t[0], t[1]))[:size]]
    return out


@dataclass(kw_only=True)
class LingLR:
    """Multinomial logistic regression on :func:`style_features`, n-gram counts and, for
    LING-LR-E, counts of per-class ``lexicon`` words. Keyword-only hyper-parameters."""

    ngram_vocab: int = 500  # most frequent training n-grams kept as count features
    ngram_max: int = 2
    l2: float = 1.0  # penalty on the coefficients of standardised features
    lexicon: Mapping[int, Sequence[str]] | None = None
    max_iter: int = 2000
    feature_names: list[str] = field(default_factory=list, init=False)
    coef_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    intercept_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    n_classes: int = field(default=0, init=False)
    _vocab: list[str] = field(default_factory=list, init=False, repr=False)
    _mu: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)
    _sd: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)

    # -------------------------------------------------------------- features
    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Raw feature matrix (texts x features), columns named by ``feature_names``."""
        rows = []
        for text in texts:
            toks = words(text)
            grams = Counter(ngrams(toks, self.ngram_max))
            f = style_features(text)
            row = list(f.values()) + [float(grams[g]) for g in self._vocab]
            if self.lexicon is not None:
                tset = Counter(toks)
                for y in sorted(self.lexicon):
                    hits = sum(tset[w] for w in self.lexicon[y])
                    row += [float(hits), hits / max(len(toks), 1)]
            rows.append(row)
        return np.asarray(rows, dtype=np.float64)

    def _names(self) -> list[str]:
        names = list(style_features("a").keys()) + [f"ngram[{g}]" for g in self._vocab]
        if self.lexicon is not None:
            for y in sorted(self.lexicon):
                names += [f"lexicon_{y}_count", f"lexicon_{y}_rate"]
        return names

    # -------------------------------------------------------------- fit / predict
    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> LingLR:
        y = np.asarray(labels, dtype=np.int64)
        self.n_classes = int(y.max()) + 1
        grams: Counter[str] = Counter()
        for t in texts:
            grams.update(set(ngrams(words(t), self.ngram_max)))
        ranked = sorted(grams.items(), key=lambda kv: (-kv[1], kv[0]))
        self._vocab = [g for g, c in ranked[: self.ngram_vocab] if c >= 2]
        self.feature_names = self._names()
        x = self.features(texts)
        self._mu, self._sd = x.mean(0), x.std(0)
        self._sd[self._sd == 0] = 1.0
        z = (x - self._mu) / self._sd
        n, d = z.shape
        k = self.n_classes
        onehot = np.eye(k)[y]

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[: d * k].reshape(d, k), theta[d * k :]
            logits = z @ w + b
            logits -= logits.max(1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            p = np.exp(logp)
            val = -(onehot * logp).sum() / n + 0.5 * self.l2 * (w * w).sum() / n
            gl = (p - onehot) / n
            gw = z.T @ gl + self.l2 * w / n
            return float(val), np.concatenate([gw.ravel(), gl.sum(0)])

        res = optimize.minimize(loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                                options={"maxiter": self.max_iter, "gtol": 1e-10,
                                         "ftol": 1e-15})
        self.coef_ = res.x[: d * k].reshape(d, k)
        self.intercept_ = res.x[d * k :]
        return self

    def _z(self, texts: Sequence[str]) -> np.ndarray:
        return (self.features(texts) - self._mu) / self._sd

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        return self._z(texts) @ self.coef_ + self.intercept_

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.decision_function(texts).argmax(1)

    def accuracy(self, texts: Sequence[str], labels: Sequence[int]) -> float:
        return float((self.predict(texts) == np.asarray(labels)).mean())

    def explain(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, ``coefficient x standardised feature`` for its predicted class, minus the
        mean over classes (so a feature's contributions across classes sum to zero)."""
        z = self._z(texts)
        pred = (z @ self.coef_ + self.intercept_).argmax(1)
        centred = self.coef_ - self.coef_.mean(1, keepdims=True)
        return z * centred[:, pred].T
