"""Running a study: plan, skip finished units, execute the rest locally or on a Ray cluster.

``run_study`` holds the store's lock, records provenance in the manifest, reports and
recomputes corrupt shards, and runs the three stages in order (fine-tune, explain, metrics).

- ``local``: one process, units grouped by fine-tuned model so each model loads once, a rich
  progress bar with ETA per stage, and one for the optimiser steps of the running fine-tune
  (steps done/total, loss, ETA; printed as a line every ~10 s when the console is not a
  terminal); the GPU is used when present (``device: auto``).
- ``ray``: each group of units becomes a Ray task (with ``num_gpus=1`` when the cluster has
  GPUs) on an existing cluster (``address``) or a local one; workers write shards straight to
  the store, which must be reachable from every node (a shared filesystem or fsspec URL).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..errors import InputError
from .plan import Plan, Unit, plan_study
from .spec import StudySpec, resolve_models
from .store import STAGES, Store
from .work import Worker, run_units

EXECUTORS = ("local", "ray")


def git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5, check=False)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"host": socket.gethostname(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=console, transient=False)


def run_study(spec: StudySpec, out: str | os.PathLike[str], *, executor: str = "local",
              address: str | None = None, max_examples: int | None = None,
              console: Console | None = None, device: str | None = None,
              on_unit: Callable[[Unit, float], None] | None = None,
              checkpoints: str | os.PathLike[str] | None = None,
              keep_going: bool = False) -> Plan:
    """Run (or resume) ``spec`` into the study directory/URL ``out``; returns the plan.

    ``checkpoints``: folder for fine-tuned checkpoints (content-addressed, shared between
    studies, e.g. the user cache); default the study's ``checkpoints/`` (local stores) or the
    user cache (remote stores). ``keep_going`` (local executor): an explain or metrics unit
    that raises is reported and recorded in the manifest run's ``failed`` list (key, stage,
    model, dataset, explainer, error), the units that need its result are skipped, and the
    rest of the study runs; a rerun tries the failed units again.
    """
    from ..provenance import versions

    if executor not in EXECUTORS:
        raise InputError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if keep_going and executor != "local":
        raise InputError("keep_going is available with the local executor only")
    console = console or Console()
    spec, resolved = resolve_models(spec.with_max_examples(max_examples))
    if resolved:
        console.print(Text(resolved))
    store = Store(out)
    with store.lock():
        ckpt = os.fspath(checkpoints) if checkpoints is not None else None
        worker = Worker(spec, store, device=device, checkpoints=ckpt)
        counts = {d.name: len(worker.data(d, "eval")) for d in spec.datasets}
        plan = plan_study(spec, counts)
        import yaml

        manifest = store.read_json("manifest.json") or {"runs": []}
        run = {"started": time.time(), "executor": executor, "address": address,
               "device": device_info(), "pid": os.getpid(), "models_resolved": resolved}
        manifest.update({"study": spec.name, "spec": spec.to_dict(), "spec_digest": spec.digest(),
                         "versions": versions(), "git": git_hash(), "seeds": list(spec.seeds),
                         "plan": plan.keys(), "n_examples": counts})
        manifest["runs"].append(run)
        cleaned = store.clean_temporaries() + clean_partial_checkpoints(
            ckpt or store.checkpoint_dir(), own=ckpt is None)
        if cleaned:
            console.print(f"removed {cleaned} leftover temporary file(s) or partial "
                          "checkpoint(s) of an interrupted run", highlight=False)
        store.write_json("manifest.json", manifest)
        store.write_text("spec.yaml", yaml.safe_dump(_plain(spec.to_dict()), sort_keys=False))
        todo = _todo(plan, store, console)
        n_done = len(plan.units) - sum(len(v) for v in todo.values())
        console.print(f"study {spec.name!r}: {len(plan.units)} units, {n_done} already done, "
                      f"{sum(len(v) for v in todo.values())} to run ({executor})",
                      highlight=False)
        runtimes: dict[str, float] = {}

        def done(u: Unit, rt: float) -> None:
            runtimes[u.key] = rt
            if on_unit:
                on_unit(u, rt)

        failed: dict[str, dict[str, Any]] = {}
        if executor == "local":
            _run_local(plan, todo, worker, console, done, failed if keep_going else None)
        else:
            _run_ray(plan, todo, spec, store, address, device, console, done, ckpt)
        run.update({"finished": time.time(), "units_run": len(runtimes),
                    "runtime_s": sum(runtimes.values()), "failed": list(failed.values())})
        store.write_json("manifest.json", manifest)
    return plan


PARTIAL_AGE_S = 6 * 3600  # partial checkpoints this old in a shared folder are abandoned


def clean_partial_checkpoints(folder: str | None, *, own: bool) -> int:
    """Remove half-written fine-tuning checkpoints (``.<key>-*`` folders that were never
    renamed into place, :func:`faithscope.models.finetune.finetune`): all of them in the
    study's own checkpoint folder (the study lock is held), only those older than
    :data:`PARTIAL_AGE_S` in a folder shared with other studies. Returns how many."""
    import shutil

    if folder is None or not os.path.isdir(folder):
        return 0
    n = 0
    now = time.time()
    for entry in os.scandir(folder):
        if entry.is_dir() and entry.name.startswith(".") and "-" in entry.name and (
                own or now - entry.stat().st_mtime > PARTIAL_AGE_S):
            shutil.rmtree(entry.path, ignore_errors=True)
            n += 1
    return n


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def _todo(plan: Plan, store: Store, console: Console) -> dict[str, list[Unit]]:
    todo: dict[str, list[Unit]] = {s: [] for s in STAGES}
    for u in plan.units:
        state = store.status(u.stage, u.key)
        if state == "corrupt":
            console.print(f"[yellow]corrupt shard {store.shard_path(u.stage, u.key)} "
                          "(checksum mismatch or missing): recomputing[/]")
            store.discard(u.stage, u.key)
        if state != "done":
            todo[u.stage].append(u)
    return todo


def _grouped(units: list[Unit]) -> list[list[Unit]]:
    key = (lambda u: u.group)
    return [list(g) for _, g in groupby(sorted(units, key=key), key=key)]


def _stage_bars(bar: Progress, plan: Plan, todo: dict[str, list[Unit]], info: str,
                steps: bool = False) -> dict[str, Any]:
    """One progress bar per stage, starting at the units already finished (with ``steps``: a
    hidden ``steps`` bar for fine-tuning steps right under the ``finetune`` one)."""
    tasks = {}
    for s in STAGES:
        tasks[s] = bar.add_task(s, total=len(plan.stage(s)),
                                completed=len(plan.stage(s)) - len(todo[s]), info=info)
        if s == "finetune" and steps:
            tasks["steps"] = bar.add_task("  steps", total=None, visible=False, info="")
    return tasks


class _Lines:
    """Progress as plain lines, at most one every ``every`` s, for a console that is not a
    terminal (a pipe, a log file, CI), where the live bars only show once, at the end."""

    def __init__(self, console: Console, every: float = 10.0) -> None:
        self.console, self.every, self.last = console, every, time.perf_counter()

    def __call__(self, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if self.console.is_terminal or not (force or now - self.last >= self.every):
            return
        self.last = now
        self.console.print(Text(text))


class _StepBar:
    """Optimiser steps of the running fine-tune: a row under the ``finetune`` bar (steps
    done/total, loss, ETA), or lines off a terminal."""

    def __init__(self, bar: Progress, task: Any, lines: _Lines) -> None:
        self.bar, self.task, self.lines = bar, task, lines
        self.t0 = 0.0
        self.first: tuple[int, float] | None = None  # (step, time) of the first report
        self.steps = 0

    def start(self, label: str) -> None:
        self.t0 = time.perf_counter()
        self.first, self.steps = None, 0
        self.bar.reset(self.task, total=None, visible=True, info=f"{label}: loading")

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (step, now)
            self.bar.reset(self.task, total=total, completed=step)  # ETA without the loading
        self.steps = step
        self.bar.update(self.task, total=total, completed=step, info=f"loss {loss:.3f}")
        s0, t0 = self.first
        rate = (now - t0) / (step - s0) if step > s0 else (now - self.t0) / step
        self.lines(f"  fine-tune step {step}/{total}  loss {loss:.3f}  {now - self.t0:.0f} s, "
                   f"eta {rate * (total - step):.0f} s", force=step == total)

    def stop(self) -> None:
        if self.steps:
            self.bar.update(self.task, info="done")
        else:  # a cached checkpoint: no training
            self.bar.update(self.task, visible=False)


def _failure(u: Unit, error: str) -> dict[str, Any]:
    return {"key": u.key, "stage": u.stage, "model": u.model, "seed": u.seed,
            "dataset": u.dataset, "explainer": u.explainer, "shard": u.shard, "error": error}


def _run_local(plan: Plan, todo: dict[str, list[Unit]], worker: Worker, console: Console,
               done: Callable[[Unit, float], None],
               failed: dict[str, dict[str, Any]] | None = None) -> None:
    """Run the units of ``todo`` stage by stage; with ``failed`` (keep going), explain and
    metrics units that raise are recorded there and their dependants skipped."""
    units = plan.by_key()
    lines = _Lines(console)
    with _progress(console) as bar:
        tasks = _stage_bars(bar, plan, todo, "", steps=bool(todo["finetune"]))
        steps = _StepBar(bar, tasks["steps"], lines) if todo["finetune"] else None
        worker.on_step = steps
        try:
            for stage in STAGES:
                total, t0 = len(plan.stage(stage)), time.perf_counter()
                n_done = total - len(todo[stage])
                for group in _grouped(todo[stage]):
                    for u in group:
                        label = f"{u.model}/s{u.seed}/{u.dataset}"
                        info = label + (f" {u.explainer} #{u.shard}" if u.explainer else "")
                        bar.update(tasks[stage], info=info)
                        if steps is not None and stage == "finetune":
                            steps.start(label)
                        if failed is not None and u.parent in failed:
                            failed[u.key] = _failure(u, failed[u.parent]["error"])
                            bar.advance(tasks[stage])
                            continue
                        try:
                            rt = worker.run(u, units)
                        except Exception as err:  # noqa: BLE001  (reported, the study goes on)
                            if failed is None or stage not in ("explain", "metrics"):
                                raise
                            msg = f"{type(err).__name__}: {str(err).strip().splitlines()[0]}" \
                                if str(err).strip() else type(err).__name__
                            failed[u.key] = _failure(u, msg)
                            console.print(Text(f"failed: {stage} {info}: {msg}", style="red"))
                            bar.advance(tasks[stage])
                            continue
                        if steps is not None and stage == "finetune":
                            steps.stop()
                        done(u, rt)
                        bar.advance(tasks[stage])
                        n_done += 1
                        lines(f"{stage} {n_done}/{total} units, {time.perf_counter() - t0:.0f} s "
                              f"(last: {info}, {rt:.1f} s)", force=n_done == total)
                bar.update(tasks[stage], info="done")
        finally:
            worker.on_step = None


def _run_ray(plan: Plan, todo: dict[str, list[Unit]], spec: StudySpec, store: Store,
             address: str | None, device: str | None, console: Console,
             done: Callable[[Unit, float], None], checkpoints: str | None = None) -> None:
    try:
        import ray
    except ModuleNotFoundError:
        raise InputError("the ray executor needs Ray: pip install 'faithscope[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                           if k.startswith(("FAITHSCOPE_", "HF_"))}})
        started = True
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=2)(run_units)
        units = plan.by_key()
        with _progress(console) as bar:
            tasks = _stage_bars(bar, plan, todo, "ray")
            for stage in STAGES:
                groups = _grouped(todo[stage])
                pending = {remote.remote(spec, store.url, g, units, device=device,  # type: ignore[call-arg]
                                         checkpoints=checkpoints): g
                           for g in groups}
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        group = pending.pop(ref)
                        ray.get(ref)  # raises the task's error
                        for u in group:
                            m = store.marker(u.stage, u.key) or {}
                            done(u, float(m.get("runtime_s", 0.0)))
                        bar.advance(tasks[stage], len(group))
    finally:
        if started:
            ray.shutdown()
