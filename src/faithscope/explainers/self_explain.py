"""``self_explanation``: ask the LLM which words its answer rests on, as a word mask.

For a :class:`~faithscope.models.prompted.PromptClassifier` (an LLM classifying by prompting),
the explainer fills a prompt template that shows the input and the label being explained and
asks for the words behind it; the generated answer is parsed into a word mask over the units
(:func:`parse_word_list`): lists in any common shape (commas, semicolons, new lines, bullets,
numbering, "and"), quotes, casing and punctuation are tolerated, phrases are matched as runs of
consecutive units (items of up to three words that do not occur verbatim are matched word by
word; longer ones are prose, not a list), and words that are not in the text are reported in
``info["unmatched"]`` rather than guessed. Scores are 1 for listed units and 0 otherwise, and
the explanation is flagged ``binary``: metrics score the listed set itself, as a set (F1
against human rationales; flip rate, sufficiency and comprehensiveness after masking exactly
those words), never "the top k by score", so an answer that lists nothing scores F1 = 0 and
removes nothing; the ``coverage`` metric reports the share of answers that list any word of the
text.

Templates (``template`` picks one of ``templates``, or give your own with ``{text}``,
``{pair}`` and ``{label}``) follow the phrasings compared by Fayyaz et al. 2024.

Reference: Fayyaz et al. 2024, "Evaluating Human Alignment and Model Faithfulness of LLM
Rationale".

Example
-------
>>> from faithscope.explainers.self_explain import parse_word_list
>>> from faithscope.units import Unit
>>> text = "The film was not good, just dull."
>>> units = [Unit(m, text.index(m), text.index(m) + len(m)) for m in
...          ("The", "film", "was", "not", "good", "just", "dull")]
>>> mask, words, unmatched = parse_word_list('1. "not good"\\n2. Dull!\\n3. boring', units)
>>> mask.astype(int).tolist(), unmatched
([0, 0, 0, 1, 1, 0, 1], ['boring'])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.adapter import InputError, ModelAdapter
from ..registry import explainers
from ..targets import TargetFn
from ..units import Unit
from .base import Explainer, Prepared
from .perturbation import Result

TEMPLATES = (
    "Text: {text}\nAnswer: {label}\nList the words of the text that were most important for "
    "this answer, separated by commas.\nWords:",
    "Read the text and the label given to it.\nText: {text}\nLabel: {label}\nWhich words in the "
    "text made you choose this label? Answer with a list of words from the text.\nWords:",
    "Text: {text}\nThe text was classified as {label}. Copy the words from the text that "
    "explain this classification.\nImportant words:",
)
_ITEM_SPLIT = re.compile(r"[\n,;|/]+|\s+(?:and|&)\s+|\t")
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u25cf>]+|\(?\d+[.)]|\(?[a-z][.)](?=\s))\s*", re.I)
_PREAMBLE = re.compile(r"^\s*(?:the\s+)?(?:most\s+)?(?:important\s+)?(?:key\s+)?words?"
                       r"(?:\s+are)?\s*:?\s*", re.I)
_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")
MAX_LOOSE_WORDS = 3  # longer items must occur verbatim: they are sentences, not word lists


def _norm(word: str) -> str:
    return word.lower().replace("\u2019", "'")


def parse_word_list(answer: str, units: Sequence[Unit]) -> tuple[np.ndarray, list[str],
                                                                  list[str]]:
    """Mask over ``units`` of the words an answer lists; also the parsed items and the items
    not found in the text (in answer order, lower-cased)."""
    unit_words = [[_norm(w) for w in _WORD.findall(u.text)] for u in units]
    mask = np.zeros(len(units), dtype=bool)
    items: list[str] = []
    unmatched: list[str] = []
    for line in answer.strip().split("\n\n")[0].splitlines() or [""]:
        line = _PREAMBLE.sub("", _BULLET.sub("", line))
        for raw in _ITEM_SPLIT.split(line):
            ws = [_norm(w) for w in _WORD.findall(raw)]
            if not ws:
                continue
            items.append(" ".join(ws))
            hits = _find_phrase(unit_words, ws)
            if not hits and len(ws) <= MAX_LOOSE_WORDS:  # short item, not verbatim: word by word
                hits = [i for w in ws for i, uw in enumerate(unit_words) if w in uw]
            if not hits:
                unmatched.append(" ".join(ws))
                continue
            mask[hits] = True
    return mask, items, unmatched


def _find_phrase(unit_words: list[list[str]], ws: list[str]) -> list[int]:
    flat = [(i, w) for i, uw in enumerate(unit_words) for w in uw]
    n = len(ws)
    hits: list[int] = []
    for start in range(len(flat) - n + 1):
        if [w for _, w in flat[start : start + n]] == ws:
            hits += [i for i, _ in flat[start : start + n]]
    return sorted(set(hits))


@explainers.register("self_explanation")
@dataclass(frozen=True, kw_only=True)
class SelfExplanation(Explainer):
    """The model's own answer to "which words made you choose this label?" as a word mask."""

    needs_generation = True
    binary = True
    template: int | str = 0
    max_new_tokens: int = 48

    def prompt(self, it: Prepared, label: str) -> str:
        tpl = TEMPLATES[self.template] if isinstance(self.template, int) else self.template
        text = it.enc.text
        if it.enc.pair and "{pair}" not in tpl:  # a text pair shown as two lines
            text = f"{text}\n{it.enc.pair}"
        return tpl.replace("{text}", text).replace("{pair}", it.enc.pair or "").replace(
            "{label}", label)

    def validate(self) -> None:
        super().validate()
        if isinstance(self.template, int) and not 0 <= self.template < len(TEMPLATES):
            raise InputError(f"self_explanation: template index must be < {len(TEMPLATES)}")
        if isinstance(self.template, str) and "{text}" not in self.template:
            raise InputError("self_explanation: a template needs a {text} placeholder")

    def attribute(self, adapter: ModelAdapter, items: Sequence[Prepared],
                  target_fn: TargetFn) -> Result:
        gen: Any = getattr(adapter, "generate", None)
        if gen is None:
            raise InputError("self_explanation needs a model that generates text (a "
                             "PromptClassifier wrapping an LLM)")
        rows = [(k, t) for k, it in enumerate(items) for t in it.targets]
        prompts = [self.prompt(items[k], adapter.labels[t]) for k, t in rows]
        answers = gen(prompts, max_new_tokens=self.max_new_tokens)
        scores = [np.zeros((len(it.targets), it.n_units)) for it in items]
        infos: list[dict[str, Any]] = [{"answers": [], "words": [], "unmatched": [],
                                        "forwards": 0} for _ in items]
        row_of = {k: 0 for k in range(len(items))}
        for (k, _), ans in zip(rows, answers, strict=True):
            mask, words, unmatched = parse_word_list(ans.text, items[k].units)
            scores[k][row_of[k]] = mask.astype(np.float64)
            row_of[k] += 1
            infos[k]["answers"].append(ans.text)
            infos[k]["words"].append(words)
            infos[k]["unmatched"].append(unmatched)
            infos[k]["forwards"] += 1
        return scores, infos
