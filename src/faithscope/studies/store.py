"""The result store: one Parquet shard per finished work unit, written atomically, on any fsspec
filesystem (a local folder, ``file://``, ``s3://`` ...), plus a manifest with provenance.

Layout of a study directory::

    manifest.json              spec, versions, git hash, device, plan keys, runs (timestamps)
    spec.yaml                  the spec as run
    units/<stage>/<key>.parquet      the shard (stage: finetune | explain | metrics)
    units/<stage>/<key>.done.json    written after the shard: rows, sha256, runtime, host
    checkpoints/               fine-tuned models (local stores)
    .lock                      held by the running driver (local stores)

A unit counts as finished only when its done marker exists and the shard's sha256 matches the
marker; anything else (a shard without marker after a kill, a truncated or altered shard) is
reported and recomputed.

Example
-------
>>> import tempfile, pandas as pd
>>> from faithscope.studies.store import Store
>>> st = Store(tempfile.mkdtemp())
>>> st.write_shard("metrics", "abc", pd.DataFrame({"value": [0.5]}), runtime_s=0.1)
>>> st.status("metrics", "abc"), st.read_shard("metrics", "abc")["value"].tolist()
('done', [0.5])
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._lazy import lazy_import
from ..errors import InputError

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

STAGES = ("finetune", "explain", "metrics", "analysis")


class StudyLockedError(InputError):
    """Another run holds the study directory."""


class Store:
    """Shards and manifest of one study, under a local path or an fsspec URL."""

    def __init__(self, url: str | os.PathLike[str], *, create: bool = True) -> None:
        import fsspec

        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                                else (self.fs.protocol,))
        if create:
            self.fs.makedirs(self.root, exist_ok=True)

    # ---------------------------------------------------------------- paths
    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def shard_path(self, stage: str, key: str) -> str:
        return self.path("units", stage, f"{key}.parquet")

    def marker_path(self, stage: str, key: str) -> str:
        return self.path("units", stage, f"{key}.done.json")

    def checkpoint_dir(self) -> str | None:
        return self.path("checkpoints") if self.local else None

    def clean_temporaries(self) -> int:
        """Remove temporary files left by writes that were killed half-way (``.tmp-*`` next
        to the shards and the manifest); run under the study lock. Returns how many."""
        found = set(self.fs.glob(self.path("**", ".tmp-*"))) | set(
            self.fs.glob(self.path(".tmp-*")))
        for path in sorted(found):
            self.fs.rm(path)
        return len(found)

    # ---------------------------------------------------------------- atomic writes
    def _put_bytes(self, path: str, data: bytes) -> None:
        """Write to a unique temporary name, then rename into place."""
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        # ends in .part: a glob for the final name (``*.done.json``) never sees a half-write
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{path.rsplit('/', 1)[1]}.part"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
            if self.local:
                fh.flush()
                os.fsync(fh.fileno())
        self.fs.mv(tmp, path)

    def write_json(self, name: str, obj: Any) -> None:
        self._put_bytes(self.path(name), json.dumps(obj, indent=2, default=str).encode())

    def read_json(self, name: str) -> Any:
        p = self.path(name)
        if not self.fs.exists(p):
            return None
        with self.fs.open(p, "rb") as fh:
            return json.loads(fh.read())

    def write_text(self, name: str, text: str) -> None:
        self._put_bytes(self.path(name), text.encode())

    def write_shard(self, stage: str, key: str, df: pd.DataFrame | Any, *, runtime_s: float,
                    extra: dict[str, Any] | None = None) -> None:
        """Store a DataFrame or pyarrow Table as the shard of unit ``key``."""
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        if isinstance(df, pd.DataFrame):
            df.to_parquet(buf, index=False)
        else:
            pq.write_table(df, buf)
        data = buf.getvalue()
        self._put_bytes(self.shard_path(stage, key), data)
        marker = {"key": key, "stage": stage, "rows": len(df), "bytes": len(data),
                  "sha256": hashlib.sha256(data).hexdigest(), "runtime_s": runtime_s,
                  "finished": time.time(), "host": socket.gethostname(), **(extra or {})}
        self._put_bytes(self.marker_path(stage, key), json.dumps(marker).encode())

    # ---------------------------------------------------------------- reads
    def marker(self, stage: str, key: str) -> dict[str, Any] | None:
        p = self.marker_path(stage, key)
        try:
            with self.fs.open(p, "rb") as fh:
                return dict(json.loads(fh.read()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def status(self, stage: str, key: str, *, verify: bool = True) -> str:
        """``done``, ``missing`` or ``corrupt`` (marker without a matching shard)."""
        m = self.marker(stage, key)
        if m is None:
            return "missing"
        p = self.shard_path(stage, key)
        if not self.fs.exists(p):
            return "corrupt"
        if verify:
            with self.fs.open(p, "rb") as fh:
                data = fh.read()
            if len(data) != m.get("bytes") or hashlib.sha256(data).hexdigest() != m.get("sha256"):
                return "corrupt"
        return "done"

    def discard(self, stage: str, key: str) -> None:
        for p in (self.marker_path(stage, key), self.shard_path(stage, key)):
            if self.fs.exists(p):
                self.fs.rm(p)

    def read_table(self, stage: str, key: str) -> Any:
        """The shard as a pyarrow Table."""
        import pyarrow.parquet as pq

        with self.fs.open(self.shard_path(stage, key), "rb") as fh:
            return pq.read_table(io.BytesIO(fh.read()))

    def read_shard(self, stage: str, key: str) -> pd.DataFrame:
        return self.read_table(stage, key).to_pandas()

    def local_files(self, stage: str, keys: list[str]) -> list[str]:
        """Shard paths readable by DuckDB (local stores) for finished keys."""
        return [self.shard_path(stage, k) for k in keys]

    # ---------------------------------------------------------------- lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive use of the study directory by one driver; a second one is refused."""
        if not self.local:  # object stores: a lease file, refused while another is fresh
            lease = self.path(".lease.json")
            info = self.read_json(".lease.json")
            if info and time.time() - float(info.get("time", 0)) < 6 * 3600:
                raise StudyLockedError(f"{self.url} is in use by {info.get('host')} pid "
                                       f"{info.get('pid')} since {info.get('time')}")
            self.write_json(".lease.json", {"host": socket.gethostname(), "pid": os.getpid(),
                                            "time": time.time()})
            try:
                yield
            finally:
                self.fs.rm(lease)
            return
        import fcntl

        path = self.path(".lock")
        fh = open(path, "a+")  # noqa: SIM115 (held for the whole block)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = fh.read().strip() or "another process"
            fh.close()
            raise StudyLockedError(f"study {self.url} is being run by {who}; wait for it to "
                                   "finish (two runs on one study directory are refused)") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
