"""Explanation: the one result type of faithscope, with lossless save/load.

``scores`` has one row per explained target (class) and one column per unit. Everything needed
to reproduce it travels with it: explainer name and hyper-parameters, model id and revision,
target function, seed, granularity, library versions, runtime.

``output``, ``output_ids`` and ``levels`` are set on explanations of generated text (a
generative model through :func:`faithscope.explain`): the reference output explained (its text
and token ids, the end-of-sequence token included when generated) and each unit's segmentation
level; they are None for classifiers. Files written when they lived in ``info`` load into them.
Local models also give ``output_tokens`` (each output token's text) and ``step_scores`` (per
output token, ``probability`` of that token and ``entropy`` of the model's next-token
distribution, as Inseq's step scores): with a per-token target (``log_prob_per_token``,
``contrast`` with ``per_token``) the scores are a generated-token x prompt-unit matrix whose
rows these label (:meth:`Explanation.per_token`).

``binary`` marks a *selection* rather than a ranking: the explainer picked a set of units (e.g.
``self_explanation``: the words an LLM lists), scores are 1 for selected units and 0 otherwise,
and metrics score the selected set itself (:func:`faithscope.metrics.base.selection`) instead
of the "top k by score". It is set by :func:`faithscope.explain` from the explainer class's
``binary`` flag, saved in every format, and files written before it existed load as False.

Example
-------
>>> import numpy as np
>>> from faithscope.explanation import Explanation
>>> from faithscope.units import Unit
>>> e = Explanation(example_id="0", text="good film", pair=None,
...     units=(Unit("good", 0, 4, 0, (1,)), Unit("film", 5, 9, 0, (2,))),
...     scores=np.array([[0.9, 0.1]], dtype=np.float32), targets=(1,), target_labels=("pos",),
...     probs=np.array([0.2, 0.8], dtype=np.float32), explainer="lime", params={})
>>> e.top_k(1)
[0]
>>> e.normalized("l1").scores.tolist()
[[0.8999999761581421, 0.10000000149011612]]
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .units import Unit

NORMALIZATIONS = ("l1", "max", "minmax", "rank", "none")


@dataclass(frozen=True, eq=False)
class Explanation:
    example_id: str
    text: str
    pair: str | None
    units: tuple[Unit, ...]
    scores: np.ndarray  # float32, targets x units
    targets: tuple[int, ...]
    target_labels: tuple[str, ...]
    probs: np.ndarray  # float32, predicted class probabilities
    explainer: str
    params: Mapping[str, Any]
    granularity: str = "word"
    target_fn: str = "prob"
    model_id: str = "unknown"
    model_revision: str | None = None
    seed: int | None = None
    runtime_s: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    binary: bool = False  # scores are a 0/1 selection of units, not a ranking
    # explanations of generated text: the explained reference output and each unit's level
    output: str | None = None
    output_ids: tuple[int, ...] | None = None
    levels: tuple[str, ...] | None = None
    # per output token (columns of a per-token explanation): its text and the step scores
    output_tokens: tuple[str, ...] | None = None
    step_scores: Mapping[str, tuple[float, ...]] | None = None
    # per-unit standard errors of a sampling explainer's scores (targets x units, float32;
    # 0 where exact), None for explainers without sampling error (:mod:`.explainers.adaptive`)
    errors: np.ndarray | None = None

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape != (len(self.targets), len(self.units)):
            raise ValueError(
                f"scores must be targets x units = {(len(self.targets), len(self.units))}, "
                f"got {scores.shape}"
            )
        if not isinstance(self.binary, bool | np.bool_):
            raise ValueError(f"binary must be a bool, got {self.binary!r}")
        object.__setattr__(self, "binary", bool(self.binary))
        if self.binary and not np.isin(scores, (0.0, 1.0)).all():
            raise ValueError("a binary explanation's scores must be 0 (not selected) or 1 "
                             "(selected)")
        object.__setattr__(self, "scores", scores)
        if self.errors is not None:
            errors = np.asarray(self.errors, dtype=np.float32).reshape(scores.shape)
            object.__setattr__(self, "errors", errors)
        object.__setattr__(self, "probs", np.asarray(self.probs, dtype=np.float32))
        if self.output_ids is not None:
            object.__setattr__(self, "output_ids", tuple(int(t) for t in self.output_ids))
        if self.levels is not None:
            object.__setattr__(self, "levels", tuple(str(lv) for lv in self.levels))
            if len(self.levels) != len(self.units):
                raise ValueError(f"levels must name the level of each of the {len(self.units)} "
                                 f"units, got {len(self.levels)}")
        n_out = None if self.output_ids is None else len(self.output_ids)
        if self.output_tokens is not None:
            object.__setattr__(self, "output_tokens", tuple(str(t) for t in self.output_tokens))
            if len(self.output_tokens) != n_out:
                raise ValueError(f"output_tokens must name each of the {n_out} output ids, got "
                                 f"{len(self.output_tokens)}")
        if self.step_scores is not None:
            steps = {str(k): tuple(float(x) for x in v) for k, v in self.step_scores.items()}
            if any(len(v) != n_out for v in steps.values()):
                raise ValueError(f"step_scores must hold one value per output token ({n_out})")
            object.__setattr__(self, "step_scores", steps)

    @property
    def generated(self) -> bool:
        """Whether this explains a generative model's output (``output`` is set)."""
        return self.output is not None

    @property
    def per_token(self) -> bool:
        """Whether the rows are the output's tokens (a per-token target of generated text)."""
        return self.generated and len(self.targets) > 1 and \
            self.output_ids is not None and len(self.targets) == len(self.output_ids)

    # --------------------------------------------------------------- helpers
    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def unit_texts(self) -> list[str]:
        return [u.text for u in self.units]

    def row(self, target: int | None = None) -> np.ndarray:
        """Scores for one target class (default: the first explained target)."""
        if target is None:
            return self.scores[0]
        return self.scores[self.targets.index(target)]

    def selected(self, target: int | None = None) -> np.ndarray:
        """Boolean mask of the units a binary explanation selects (score 1) for ``target``."""
        if not self.binary:
            raise ValueError(f"{self.explainer}: not a binary explanation (a ranking)")
        return self.row(target) > 0

    def top_k(self, k: int, target: int | None = None, *, by: str = "value") -> list[int]:
        """Indices of the ``k`` highest-scoring units (``by="abs"`` ranks by magnitude)."""
        s = self.row(target)
        key = np.abs(s) if by == "abs" else s
        order = np.argsort(-key, kind="stable")
        return [int(i) for i in order[: max(0, k)]]

    def normalized(self, kind: str = "l1") -> Explanation:
        """Scores normalised per row (:func:`normalize`); a binary explanation (a selection,
        not a scale) is returned unchanged."""
        if self.binary:
            return self
        return dataclasses.replace(self, scores=normalize(self.scores, kind))

    def equals(self, other: Explanation, *, atol: float = 0.0) -> bool:
        a, b = self.to_dict(), other.to_dict()
        sa, sb = np.asarray(a.pop("scores")), np.asarray(b.pop("scores"))
        pa, pb = np.asarray(a.pop("probs")), np.asarray(b.pop("probs"))
        ea, eb = a.pop("errors"), b.pop("errors")
        if (ea is None) != (eb is None) or (ea is not None and not np.allclose(
                np.asarray(ea, float), np.asarray(eb, float), atol=atol, rtol=0,
                equal_nan=True)):
            return False
        return (
            a == b
            and sa.shape == sb.shape
            and np.allclose(sa, sb, atol=atol, rtol=0)
            and np.allclose(pa, pb, atol=atol, rtol=0)
        )

    # ------------------------------------------------------------ serialise
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["units"] = [dataclasses.astuple(u) for u in self.units]
        d["units"] = [[u[0], u[1], u[2], u[3], list(u[4])] for u in d["units"]]
        d["scores"] = self.scores.tolist()  # float32 -> float64 is exact, and back
        d["probs"] = self.probs.tolist()
        d["errors"] = None if self.errors is None else self.errors.tolist()
        d["targets"] = list(self.targets)
        d["target_labels"] = list(self.target_labels)
        d["params"] = jsonable(dict(self.params))
        d["info"] = jsonable(dict(self.info))
        d["versions"] = dict(self.versions)
        d["output_ids"] = None if self.output_ids is None else list(self.output_ids)
        d["levels"] = None if self.levels is None else list(self.levels)
        d["output_tokens"] = None if self.output_tokens is None else list(self.output_tokens)
        d["step_scores"] = None if self.step_scores is None else \
            {k: list(v) for k, v in self.step_scores.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Explanation:
        d = dict(d)
        d["units"] = tuple(Unit(u[0], int(u[1]), int(u[2]), int(u[3]), tuple(u[4]))
                           for u in d["units"])
        d["scores"] = np.asarray(d["scores"], dtype=np.float32).reshape(
            len(d["targets"]), len(d["units"]))
        d["probs"] = np.asarray(d["probs"], dtype=np.float32)
        if d.get("errors") is not None:  # absent from files written before it
            d["errors"] = np.asarray(d["errors"], dtype=np.float32).reshape(d["scores"].shape)
        else:
            d["errors"] = None
        d["targets"] = tuple(int(t) for t in d["targets"])
        d["target_labels"] = tuple(d["target_labels"])
        d["binary"] = bool(d.get("binary") or False)  # absent from files written before it
        info = dict(d.get("info") or {})
        for name in ("output", "output_ids", "levels"):  # older files kept them in info
            if d.get(name) is None and name in info:
                d[name] = info.pop(name)
        d["info"] = info
        if d.get("output_ids") is not None:
            d["output_ids"] = tuple(int(t) for t in d["output_ids"])
        if d.get("levels") is not None:
            d["levels"] = tuple(d["levels"])
        return cls(**d)

    # ------------------------------------------------------------- display
    def _repr_html_(self) -> str:
        s = self.row()
        scale = float(np.max(np.abs(s))) or 1.0
        spans = []
        for u, v in zip(self.units, s, strict=True):
            a = min(abs(float(v)) / scale, 1.0)
            rgb = "220,38,38" if v >= 0 else "37,99,235"
            spans.append(
                f'<span title="{float(v):.4g}" style="background:rgba({rgb},{a:.2f});'
                f'padding:1px 2px;border-radius:3px">{html.escape(u.text)}</span>'
            )
        label = self.target_labels[0] if self.target_labels else ""
        head = html.escape(f"{self.explainer} -> {label} (p={self.probs.max():.2f})")
        return f"<div><b>{head}</b><br>{' '.join(spans)}</div>"


def normalize(scores: np.ndarray, kind: str = "l1") -> np.ndarray:
    """Normalise each row: ``l1`` (|s| sums to 1, signs kept), ``max`` (max |s| = 1),
    ``minmax`` (to [0, 1]), ``rank`` (ranks of |s| scaled to (0, 1]), or ``none``."""
    s = np.asarray(scores, dtype=np.float64)
    if kind == "none":
        out = s
    elif kind == "l1":
        d = np.abs(s).sum(axis=-1, keepdims=True)
        out = np.divide(s, d, out=np.zeros_like(s), where=d > 0)
    elif kind == "max":
        d = np.abs(s).max(axis=-1, keepdims=True) if s.shape[-1] else np.ones(s.shape[:-1] + (1,))
        out = np.divide(s, d, out=np.zeros_like(s), where=d > 0)
    elif kind == "minmax":
        lo = s.min(axis=-1, keepdims=True)
        rng = s.max(axis=-1, keepdims=True) - lo
        out = np.divide(s - lo, rng, out=np.zeros_like(s), where=rng > 0)
    elif kind == "rank":
        from scipy.stats import rankdata

        n = s.shape[-1]
        out = rankdata(np.abs(s), axis=-1) / max(n, 1)
    else:
        raise ValueError(f"normalisation must be one of {NORMALIZATIONS}, got {kind!r}")
    return out.astype(np.float32)


def jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


SAVE_FORMATS = (".json", ".jsonl", ".parquet")


def check_output_path(path: str | Path) -> Path:
    """Refuse, before any work, an explanation file name whose format is unknown."""
    path = Path(path)
    if path.suffix not in SAVE_FORMATS:
        raise ValueError(f"{path}: the file name must end in {', '.join(SAVE_FORMATS)} "
                         f"(got {path.suffix or 'no suffix'!r})")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name")
    return path


def save_explanations(explanations: Iterable[Explanation], path: str | Path) -> Path:
    """Write explanations to ``.json`` (one JSON document: a list of objects), ``.jsonl`` (one
    object per line) or ``.parquet``; written to a temporary file and renamed into place."""
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        _write_parquet(explanations, tmp)
    elif path.suffix == ".json":
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump([e.to_dict() for e in explanations], fh, ensure_ascii=False, indent=1)
            fh.write("\n")
    else:
        with open(tmp, "w", encoding="utf-8") as fh:
            for e in explanations:
                fh.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def load_explanations(path: str | Path) -> list[Explanation]:
    """Read what :func:`save_explanations` wrote (``.json`` list, ``.jsonl`` lines, ``.parquet``;
    a ``.json`` file in the older one-object-per-line layout is read too)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return [Explanation.from_dict(r) for r in json.loads(text)]
    records = [line for line in text.splitlines() if line]
    return [Explanation.from_dict(json.loads(r)) for r in records]


_JSON_COLUMNS = ("units", "params", "info", "versions", "output_ids", "levels", "output_tokens",
                 "step_scores")


def explanations_table(explanations: Iterable[Explanation]) -> Any:
    """A pyarrow Table, one row per explanation: scores as list<list<float32>>, nested
    metadata as JSON strings (the ``.parquet`` format and the study store's shards)."""
    import pyarrow as pa

    rows = [e.to_dict() for e in explanations]
    cols: dict[str, Any] = {}
    for name in (f.name for f in dataclasses.fields(Explanation)):
        values = [r[name] for r in rows]
        if name in _JSON_COLUMNS:
            cols[name] = pa.array([json.dumps(v) for v in values], pa.string())
        elif name in ("scores", "errors"):
            cols[name] = pa.array(values, pa.list_(pa.list_(pa.float32())))
        elif name == "probs":
            cols[name] = pa.array(values, pa.list_(pa.float32()))
        elif name == "output":
            cols[name] = pa.array(values, pa.string())
        else:
            cols[name] = pa.array(values)
    return pa.table(cols)


def explanations_from_table(table: Any) -> list[Explanation]:
    """Inverse of :func:`explanations_table`."""
    rows = table.to_pylist()
    for r in rows:
        for name in _JSON_COLUMNS:
            if name in r:  # output_ids, levels, ... are absent from older files
                r[name] = json.loads(r[name]) if r[name] is not None else None
    return [Explanation.from_dict(r) for r in rows]


def _write_parquet(explanations: Iterable[Explanation], path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(explanations_table(explanations), path)


def _read_parquet(path: Path) -> list[Explanation]:
    import pyarrow.parquet as pq

    return explanations_from_table(pq.read_table(path))
