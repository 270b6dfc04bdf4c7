"""Reading a study: DuckDB over the Parquet shards of the current plan.

Views: ``metrics`` (one row per example x explainer x metric, with model, seed, dataset),
``models`` (one row per fine-tuned model: accuracy, size, training record) and ``units``
(runtime and host of every finished unit).

Example
-------
>>> from faithscope.studies import open_study
>>> study = open_study("path/to/study")                    # doctest: +SKIP
>>> study.metrics().groupby(["model", "explainer", "metric"])["value"].mean()  # doctest: +SKIP
>>> study.sql("select model, avg(accuracy) from models group by model")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._lazy import lazy_import
from ..errors import InputError
from ..explanation import Explanation, explanations_from_table
from .store import STAGES, Store

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")


class CorruptShardError(InputError):
    """A finished unit's shard does not match the checksum in its marker."""


class Study:
    """A finished or partly finished study directory (any fsspec URL), opened read-only.

    Every shard is checked against the sha256 of its done marker once, when first needed:
    :meth:`progress` counts only intact shards and :meth:`corrupt` names the others; reading a
    stage that has a corrupt shard raises :class:`CorruptShardError` naming it (``faithscope
    run`` on the same spec recomputes it).
    """

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self.store = Store(url, create=False)
        try:
            self.manifest: dict[str, Any] = self.store.read_json("manifest.json") or {}
        except (OSError, ValueError) as err:
            raise InputError(f"{url}: unreadable manifest.json ({err})") from None
        if not self.manifest:
            raise InputError(f"{url}: not a study directory (no manifest.json)")
        self._status: dict[tuple[str, str], str] = {}

    def _state(self, stage: str, key: str) -> str:
        if (stage, key) not in self._status:
            self._status[(stage, key)] = self.store.status(stage, key, verify=True)
        return self._status[(stage, key)]

    def finished(self, stage: str) -> list[str]:
        """Keys of the stage's units whose shard is present and intact."""
        return [k for k in self.manifest.get("plan", {}).get(stage, [])
                if self._state(stage, k) == "done"]

    def corrupt(self, stage: str | None = None) -> list[str]:
        """Paths of shards that do not match their marker (all stages, or one)."""
        plan = self.manifest.get("plan", {})
        return [self.store.shard_path(s, k) for s in ([stage] if stage else STAGES)
                for k in plan.get(s, []) if self._state(s, k) == "corrupt"]

    def check(self, stage: str | None = None) -> None:
        """Raise :class:`CorruptShardError` naming the first corrupt shard, if any."""
        bad = self.corrupt(stage)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise CorruptShardError(f"corrupt shard {bad[0]}{more}: its sha256 does not match "
                                    "its done marker; run the study again to recompute it")

    def progress(self) -> dict[str, tuple[int, int]]:
        plan = self.manifest.get("plan", {})
        return {s: (len(self.finished(s)), len(plan.get(s, []))) for s in STAGES}

    def _frame(self, stage: str) -> pd.DataFrame:
        self.check(stage)
        keys = self.finished(stage)
        if not keys:
            return pd.DataFrame()
        if self.store.local:  # DuckDB reads the shards directly
            return self.sql(f"select * from {'models' if stage == 'finetune' else stage}")
        return pd.concat([self.store.read_shard(stage, k) for k in keys], ignore_index=True)

    def metrics(self) -> pd.DataFrame:
        return self._frame("metrics")

    def models(self) -> pd.DataFrame:
        return self._frame("finetune")

    def analysis(self, name: str, table: str) -> pd.DataFrame:
        """Sub-``table`` of study analysis ``name`` (e.g. ``("seed_stability", "pairs")``),
        all models and datasets, with only the columns that table uses."""
        frames = []
        self.check("analysis")
        for key in self.finished("analysis"):
            df = self.store.read_shard("analysis", key)
            df = df[(df["analysis"] == name) & (df["table"] == table)]
            if len(df):
                frames.append(df.dropna(axis=1, how="all"))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def explanations(self, **where: Any) -> Iterator[Explanation]:
        """Stream explanations shard by shard; ``where`` filters on model, seed, dataset,
        explainer (e.g. ``study.explanations(model="minilm-l6", explainer="lime")``)."""
        self.check("explain")
        for key in self.finished("explain"):
            m = self.store.marker("explain", key) or {}
            if all(m.get(k) == v for k, v in where.items()):
                yield from explanations_from_table(self.store.read_table("explain", key))

    def units(self) -> pd.DataFrame:
        rows = []
        for stage in STAGES:
            for k in self.finished(stage):
                rows.append(self.store.marker(stage, k) or {})
        return pd.DataFrame(rows)

    def connect(self) -> Any:
        """A DuckDB connection with the ``metrics``, ``models`` and ``units`` views."""
        import duckdb

        self.check("metrics")
        self.check("finetune")
        con = duckdb.connect()
        for view, stage in (("metrics", "metrics"), ("models", "finetune")):
            files = self.store.local_files(stage, self.finished(stage))
            if files and self.store.local:
                con.execute(f"create view {view} as select * from read_parquet("
                            f"{_sql_list(files)}, union_by_name=true)")
            else:
                df = (pd.concat([self.store.read_shard(stage, k)
                                 for k in self.finished(stage)], ignore_index=True)
                      if files else pd.DataFrame({"model": pd.Series(dtype=str)}))
                con.register(view, df)
        con.register("units", self.units())
        return con

    def sql(self, query: str) -> pd.DataFrame:
        con = self.connect()
        try:
            return con.execute(query).df()
        except Exception as err:  # duckdb raises its own exception types
            raise InputError(f"query failed: {err}") from None
        finally:
            con.close()

    def summary(self, by: Sequence[str] = ("dataset", "model", "explainer", "metric"),
                n_boot: int = 1000) -> pd.DataFrame:
        """Mean and bootstrap 95 % CI per group (seeds pooled unless ``seed`` is in ``by``)."""
        from ..evaluate import summarize

        df = self.metrics()
        if df.empty:
            return df
        return summarize(df, by=tuple(by), n_boot=n_boot)


def _sql_list(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def open_study(path: str | os.PathLike[str]) -> Study:
    """Open a study directory written by :func:`faithscope.studies.run_study`."""
    return Study(path)


def print_results(study: Study, console: Any) -> None:
    """Accuracy per model and seed, then one metric table per dataset and model."""
    from rich.table import Table
    from rich.text import Text

    from ..tables import metric_table

    prog = study.progress()
    console.print(Text("units finished: " + ", ".join(f"{s} {a}/{b}"
                                                      for s, (a, b) in prog.items())))
    study.check()
    models = study.models()
    if not models.empty:
        t = Table(title="fine-tuned models: accuracy on the evaluation split")
        for col in ("dataset", "model", "params (M)", "seed", "accuracy", "val acc",
                    "epochs", "train s"):
            left = col in ("dataset", "model")
            t.add_column(col, justify="left" if left else "right",
                         overflow="fold" if left else "ellipsis", no_wrap=not left)
        for r in models.sort_values(["dataset", "params_m", "model", "seed"]).itertuples():
            val = "—" if r.val_accuracy != r.val_accuracy else f"{r.val_accuracy:.3f}"  # NaN
            t.add_row(Text(str(r.dataset)), Text(str(r.model)), f"{r.params_m:.3g}",
                      str(r.seed), f"{r.accuracy:.3f}", val, str(r.epochs_run),
                      f"{r.train_seconds or 0:.0f}")
        console.print(t)
        if "model_from" in models.columns:
            for r in models.drop_duplicates("model").itertuples():
                used = ("generative, used as is (not fine-tuned)"
                        if getattr(r, "kind", None) == "generative"
                        else f"fine-tuned checkpoint {r.revision}")
                console.print(Text(f"{r.model}: base model from its {r.model_from}, "
                                   f"{r.model_source}; {used}"))
    summary = study.summary()
    sizes = dict(zip(models["model"], models["params_m"], strict=False)) if not models.empty else {}
    for (dataset, model), g in (summary.groupby(["dataset", "model"], sort=False)
                                if not summary.empty else []):
        n = int(g["n"].max())
        console.print(Text(f"{dataset} · {model} ({sizes.get(model, 0):.3g}M) · "
                           f"n={n} rows per cell, mean ± 95% CI"))  # not wrapped to the table
        console.print(metric_table(g.drop(columns=["dataset", "model"])))
    print_analyses(study, console)


def print_analyses(study: Study, console: Any) -> None:
    """Seed-stability agreement per explainer and LING-LR accuracies, when the study has them."""
    from rich.table import Table
    from rich.text import Text

    from ..metrics.stability import agreement_table

    def cell(r: Any, name: str) -> str:
        m = getattr(r, f"{name}_mean")
        if m != m:  # NaN: nothing to compare
            return "-"
        return f"{m:.2f} [{getattr(r, f'{name}_q25'):.2f}, {getattr(r, f'{name}_q75'):.2f}]"

    pairs = study.analysis("seed_stability", "pairs")
    for (dataset, model), g in (pairs.groupby(["dataset", "model"]) if len(pairs) else []):
        for measure in ("spearman", "jaccard"):
            t = Table(title=Text(f"seed stability · {dataset} · {model} · {measure}: "
                                 "mean [quartiles] over example x pair"))
            for col in ("explainer", "between seeds", "within model (sampling)",
                        "seeds agree on label", "seeds disagree"):
                t.add_column(col)
            for r in agreement_table(g, measure).itertuples():
                t.add_row(Text(str(r.explainer)), cell(r, "between"), cell(r, "within"),
                          cell(r, "unanimous"), cell(r, "split"))
            console.print(t)
    acc = study.analysis("ling_lr", "accuracy")
    for (dataset, model), g in (acc.groupby(["dataset", "model"]) if len(acc) else []):
        t = Table(title=Text(f"LING-LR vs the transformer · {dataset} · {model}: accuracy"))
        for col in ("classifier", "seed", "accuracy", "features"):
            t.add_column(col)
        for r in g.itertuples():
            t.add_row(Text(str(r.classifier)), "-" if r.seed < 0 else str(int(r.seed)),
                      f"{r.accuracy:.3f}", "-" if r.n_features != r.n_features
                      else str(int(r.n_features)))
        console.print(t)


def export(study: Study, fmt: str, path: str) -> str:
    df = study.metrics()
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        raise InputError(f"export format must be csv or parquet, got {fmt!r}")
    return path


__all__ = ["Study", "export", "open_study", "print_results"]
