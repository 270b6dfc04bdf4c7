"""Scalarizers: the attributed quantity of a generated text (the generation "targets").

A scalarizer turns the model's behaviour on a (perturbed) prompt into numbers comparable with the
reference output generated from the original prompt, one row per prompt and one column per
target (the whole output, or each output token). They are targets of the one targets registry
(:mod:`faithscope.targets`) that declare ``for_generation``: ``faithscope.explain`` and
``faithscope.evaluate`` take them by name, ``(name, params)`` or instance (``target_fn=``) when
the model is generative, and ``faithscope list targets`` marks them ``(generation)``:

* ``log_prob``: log-probability of the reference output given the prompt, by teacher forcing
  (one forward per prompt; ``per_token=True`` gives one column per output token; ``mean``
  averages over tokens; ``log_prob_per_token`` is ``log_prob`` with ``per_token``). On a classifier the same name is the log-softmax of the target class
  (:attr:`LogProb.classifier_target`). The reference's token ids include its end-of-sequence token when the
  model generated one, so the probability of stopping there is part of the score;
* ``summary_prob``: the same under a separate local *scorer* LM (e.g. a summariser scoring the
  black-box model's summary; Monteiro Paes et al. 2025): the reference text is tokenized by the
  scorer, followed by the scorer's end-of-sequence token when the reference ended with one;
* text-only, for any model including one behind an HTTP endpoint: the prompt is re-generated
  and compared with the reference text by ``cosine`` (sentence-embedding cosine with a local
  encoder), ``bertscore`` (F1 of greedy cosine matching of contextual token embeddings; Zhang et
  al. 2020, without idf weighting or baseline rescaling) or ``nli`` (probability, or logit, that
  the reference entails the new output under a local NLI classifier).

Reference: Monteiro Paes, Wei et al. 2025, "Multi-Level Explanations for Generative Language
Models" (ACL).

Example
-------
>>> from faithscope.generation.scalarizers import bertscore_f1
>>> import numpy as np
>>> a = np.eye(3)
>>> float(bertscore_f1(a, a)), float(bertscore_f1(a, a[:2]))
(1.0, 0.8)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from ..models.generative import Generation
from ..registry import targets
from ..targets import contrast as _contrast_of_logits
from ..targets import log_prob as _log_prob_of_logits


@dataclass(frozen=True, kw_only=True)
class Scalarizer:
    """A target of generated text (see the module docstring)."""

    name: ClassVar[str] = ""
    text_only: ClassVar[bool] = False  # works with models that only return text
    for_generation: ClassVar[bool] = True  # a target of generative models (targets registry)
    classifier_target: ClassVar[Any] = None  # the same name's function of a classifier's logits

    def n_targets(self, reference: Generation) -> int:
        return 1

    def target_labels(self, reference: Generation) -> tuple[str, ...]:
        return (self.name,)

    def __call__(self, lm: Any, prompts: Sequence[str], references: Sequence[Generation]
                 ) -> list[np.ndarray]:
        """One vector of target values (float64) per prompt; ``references[i]`` is the output
        of the unperturbed prompt that row ``i`` perturbs. All rows form one virtual batch."""
        raise NotImplementedError


def ends_with_eos(lm: Any, reference: Generation) -> bool:
    """Whether the reference output stopped with an end-of-sequence token of ``lm``."""
    if reference.eos:
        return True
    stops = getattr(lm, "stop_ids", ())
    return bool(len(reference.ids)) and int(reference.ids[-1]) in stops


@targets.register("log_prob")
@dataclass(frozen=True, kw_only=True)
class LogProb(Scalarizer):
    """Log-probability of the reference output by teacher forcing (sum, or ``mean`` per token);
    ``per_token`` gives one target per output token."""

    classifier_target: ClassVar[Any] = staticmethod(_log_prob_of_logits)
    per_token: bool = False
    mean: bool = False

    def n_targets(self, reference: Generation) -> int:
        return max(1, len(reference.ids)) if self.per_token else 1

    def target_labels(self, reference: Generation) -> tuple[str, ...]:
        if not self.per_token:
            return ("log_prob",)
        return tuple(f"token {i}" for i in range(self.n_targets(reference)))

    def scorer(self, lm: Any) -> Any:
        if not hasattr(lm, "output_logprobs"):
            raise InputError(f"{self.name} needs a local model that returns log-probabilities; "
                             "use a text-only scalarizer (cosine, bertscore, nli) instead")
        return lm

    def __call__(self, lm: Any, prompts: Sequence[str], references: Sequence[Generation]
                 ) -> list[np.ndarray]:
        scorer = self.scorer(lm)
        if scorer is lm:
            outs = [r.ids for r in references]
        else:
            own: dict[tuple[str, bool], np.ndarray] = {}
            for r in references:
                key = (r.text, ends_with_eos(lm, r))
                if key not in own:
                    ids = scorer.output_ids(r.text)
                    eos = getattr(getattr(scorer, "tokenizer", None), "eos_token_id", None)
                    own[key] = np.append(ids, eos).astype(np.int64) if key[1] and \
                        eos is not None else ids
            outs = [own[(r.text, ends_with_eos(lm, r))] for r in references]
        lps = scorer.output_logprobs(list(prompts), outs)
        if self.per_token:
            return [lp if len(lp) else np.zeros(1) for lp in lps]
        return [np.array([lp.mean() if self.mean and len(lp) else lp.sum()]) for lp in lps]

    def gradient_terms(self, lm: Any, reference: Generation
                       ) -> list[tuple[np.ndarray, np.ndarray | None, float]]:
        """The differentiated quantity as a weighted sum of teacher-forced terms
        ``(output ids, aligned foil ids or None, weight)`` (see
        :meth:`~faithscope.models.generative.GenerativeAdapter.output_gradients`)."""
        ids = np.asarray(reference.ids, dtype=np.int64)
        w = 1.0 / len(ids) if self.mean and not self.per_token and len(ids) else 1.0
        return [(ids, None, w)]


@targets.register("log_prob_per_token")
@dataclass(frozen=True, kw_only=True)
class LogProbPerToken(LogProb):
    """:class:`LogProb` with one target per output token (``log_prob`` with ``per_token``)."""

    classifier_target = None
    per_token: bool = True


@targets.register("contrast")
@dataclass(frozen=True, kw_only=True)
class Contrast(LogProb):
    """Why this output rather than ``foil``: a contrastive target of generated text.

    * whole output (default): ``log p(y | x) - log p(y' | x)``, the reference output ``y``
      and the foil output ``y'`` each scored by teacher forcing (any lengths);
    * ``per_token=True``: one target per output token, ``log p(y_t | x, y_<t) -
      log p(y'_t | x, y_<t)``: the foil's token at step ``t`` scored after the *reference's*
      prefix (Yin & Neubig 2022, "Interpreting Language Models with Contrastive
      Explanations": the logit difference of target and foil). Steps where the two agree give
      0; the foil must have as many tokens as the output.

    ``foil`` is one text, or a mapping from prompt text to its foil. The foil is tokenized
    without special tokens; when the reference ended with an end-of-sequence token, the foil
    ends with the same token. On a classifier the same name is the log-odds of the target class
    against the others (:func:`faithscope.targets.contrast`).

    Example: ``fs.explain(lm, ["Tom had a dog."], "leave_one_out",
    target_fn=("contrast", {"foil": "The cat", "per_token": True}))``.
    """

    classifier_target: ClassVar[Any] = staticmethod(_contrast_of_logits)
    foil: Any = None  # str, or {prompt text: foil text}

    def foil_text(self, reference: Generation) -> str:
        f = self.foil
        if isinstance(f, Mapping):
            if reference.prompt not in f:
                raise InputError(f"contrast: no foil for prompt {reference.prompt[:60]!r}")
            f = f[reference.prompt]
        if not isinstance(f, str) or not f.strip():
            raise InputError("the contrast target needs foil= (the alternative output text)")
        return f

    def foil_ids(self, lm: Any, reference: Generation) -> np.ndarray:
        if not hasattr(lm, "output_ids"):
            raise InputError("contrast needs a local model that tokenizes and scores outputs")
        ids = lm.output_ids(self.foil_text(reference))
        if ends_with_eos(lm, reference) and len(reference.ids):
            ids = np.append(ids, int(reference.ids[-1]))
        ids = np.asarray(ids, dtype=np.int64)
        if self.per_token and len(ids) != len(reference.ids):
            raise InputError(
                f"contrast per token: the foil {self.foil_text(reference)!r} has {len(ids)} "
                f"tokens and the output {reference.text!r} {len(reference.ids)}; give a foil of "
                "as many tokens, or per_token=False (whole outputs)")
        return ids

    def target_labels(self, reference: Generation) -> tuple[str, ...]:
        if not self.per_token:
            return ("contrast",)
        return tuple(f"token {i}" for i in range(self.n_targets(reference)))

    def __call__(self, lm: Any, prompts: Sequence[str], references: Sequence[Generation]
                 ) -> list[np.ndarray]:
        scorer = self.scorer(lm)
        foils = {id(r): self.foil_ids(scorer, r) for r in references}
        outs = [np.asarray(r.ids, dtype=np.int64) for r in references]
        if self.per_token:
            lps = scorer.output_logprobs(list(prompts), outs,
                                         foils=[foils[id(r)] for r in references])
            return [lp if len(lp) else np.zeros(1) for lp in lps]
        both = scorer.output_logprobs([*prompts, *prompts],
                                      [*outs, *[foils[id(r)] for r in references]])
        n = len(outs)
        red = (lambda lp: lp.mean() if len(lp) else 0.0) if self.mean else np.sum
        return [np.array([red(both[i]) - red(both[n + i])]) for i in range(n)]

    def gradient_terms(self, lm: Any, reference: Generation
                       ) -> list[tuple[np.ndarray, np.ndarray | None, float]]:
        ids = np.asarray(reference.ids, dtype=np.int64)
        foil = self.foil_ids(lm, reference)
        if self.per_token:
            return [(ids, foil, 1.0)]
        wy = 1.0 / len(ids) if self.mean and len(ids) else 1.0
        wf = 1.0 / len(foil) if self.mean and len(foil) else 1.0
        return [(ids, None, wy), (foil, None, -wf)]


@targets.register("summary_prob")
@dataclass(frozen=True, kw_only=True)
class SummaryProb(LogProb):
    """:class:`LogProb` of the reference output under a separate local scorer LM."""

    text_only = True
    classifier_target = None
    scorer_model: Any = None  # a GenerativeAdapter

    def scorer(self, lm: Any) -> Any:
        if self.scorer_model is None:
            raise InputError("summary_prob needs scorer_model= (a local GenerativeAdapter)")
        return self.scorer_model


@dataclass(frozen=True, kw_only=True)
class TextScalarizer(Scalarizer):
    """Re-generate each prompt's output and compare it with the reference text."""

    text_only = True

    def compare(self, references: list[str], texts: list[str]) -> np.ndarray:
        """Similarity of ``texts[i]`` to ``references[i]`` (one virtual batch)."""
        raise NotImplementedError

    def __call__(self, lm: Any, prompts: Sequence[str], references: Sequence[Generation]
                 ) -> list[np.ndarray]:
        texts = [g.text for g in lm.generate(list(prompts))]
        values = self.compare([r.text for r in references], texts)
        return [np.array([v], dtype=np.float64) for v in values]


@dataclass(frozen=True, kw_only=True)
class SameOutput(TextScalarizer):
    """1 if re-generating gives exactly the reference output, else 0 (the flip rate of
    generated text; not a registered target)."""

    name: ClassVar[str] = "same_output"

    def compare(self, references: list[str], texts: list[str]) -> np.ndarray:
        return np.array([float(a.strip() == b.strip()) for a, b in zip(references, texts,
                                                                         strict=True)])


def _encoder(obj: Any) -> Any:
    if obj is None:
        raise InputError("this scalarizer needs encoder= (a TextEncoder or a model path)")
    return _load_encoder(obj) if isinstance(obj, str) else obj


@functools.lru_cache(maxsize=4)
def _load_encoder(path: str) -> Any:
    """A path is loaded once, not at every batch of comparisons."""
    from ..models.encoders import TextEncoder

    return TextEncoder.load(path)


def _compare_by_reference(references: list[str], texts: list[str], encode: Any,
                          similarity: Any) -> np.ndarray:
    """Encode each distinct reference once and every text, in one call; then compare."""
    refs = sorted(set(references))
    enc = encode([*refs, *texts])
    ref = {r: enc[i] for i, r in enumerate(refs)}
    return np.array([similarity(ref[r], enc[len(refs) + i]) for i, r in enumerate(references)])


@targets.register("cosine")
@dataclass(frozen=True, kw_only=True)
class Cosine(TextScalarizer):
    """Cosine similarity of sentence embeddings (mean-pooled local encoder)."""

    encoder: Any = None

    def compare(self, references: list[str], texts: list[str]) -> np.ndarray:
        return _compare_by_reference(references, texts, _encoder(self.encoder).embed,
                                     lambda a, b: float(a @ b))


def bertscore_f1(ref: np.ndarray, cand: np.ndarray) -> float:
    """BERTScore F1 of two sets of L2-normalised token embeddings (greedy matching)."""
    if len(ref) == 0 or len(cand) == 0:
        return 0.0
    sim = ref @ cand.T
    recall = sim.max(1).mean()
    precision = sim.max(0).mean()
    return float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0


@targets.register("bertscore")
@dataclass(frozen=True, kw_only=True)
class BertScore(TextScalarizer):
    """BERTScore F1 between the reference and each new output (local encoder)."""

    encoder: Any = None

    def compare(self, references: list[str], texts: list[str]) -> np.ndarray:
        return _compare_by_reference(references, texts,
                                     _encoder(self.encoder).token_embeddings, bertscore_f1)


@targets.register("nli")
@dataclass(frozen=True, kw_only=True)
class NLI(TextScalarizer):
    """Entailment of the new output by the reference under a local NLI classifier
    (a :class:`~faithscope.models.ModelAdapter` whose labels include ``entailment``)."""

    classifier: Any = None
    logit: bool = False

    def compare(self, references: list[str], texts: list[str]) -> np.ndarray:
        clf = self.classifier
        if clf is None:
            raise InputError("nli needs classifier= (an NLI ModelAdapter)")
        names = [str(label).lower() for label in clf.labels]
        hit = [i for i, n in enumerate(names) if n.startswith("entail")]
        if not hit:
            raise InputError(f"nli: no entailment label among {clf.labels}")
        encs = [clf.encode(r if r.strip() else ".", t if t.strip() else ".")
                for r, t in zip(references, texts, strict=True)]
        if self.logit:
            lg = clf.logits([e.ids[None] for e in encs],
                            None if encs[0].type_ids is None else
                            [e.type_ids[None] for e in encs])
            return np.concatenate(lg)[:, hit[0]].astype(np.float64)
        return clf.predict_proba(encs)[:, hit[0]].astype(np.float64)


def get_scalarizer(spec: Any) -> Scalarizer:
    """A target of generated text from a name, a ``(name, params)`` pair or an instance."""
    if isinstance(spec, Scalarizer):
        return spec
    name = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(name, str) and name in targets and \
            not getattr(targets.get(name), "for_generation", False):
        gen = [n for n in targets.names() if getattr(targets.get(n), "for_generation", False)]
        raise InputError(f"target {name!r} is a target of classifiers; the targets of generated "
                         f"text are {', '.join(gen)}")
    out: Scalarizer = targets.build(spec)
    return out
