"""The prediction log's write-ahead files: a folder per process, held by a lock while it lives, of JSON-lines
segments that outlive a killed process until another ships them (see ``PredictionLog``)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def default_wal_dir(store: ArtifactStore, pipeline: str) -> Path:
    """``$MLOPS_WAL_DIR`` (else the system's temporary directory ``/airflow-mlops-wal``) ``/<root id>-<pipeline>``:
    the same folder on every start for one store and pipeline, so a restarted server ships what a killed one
    left, and never into another store."""
    import hashlib
    import tempfile

    base = Path(os.environ.get("MLOPS_WAL_DIR") or Path(tempfile.gettempdir()) / "airflow-mlops-wal")
    return base / f"{hashlib.sha256(store.root_uri.encode()).hexdigest()[:12]}-{pipeline}"


@dataclass
class Owner:
    """A process's hold on a write-ahead folder: the lock of ``<folder>.lock``, taken when the folder is made (or
    adopted) and held until its segments are shipped or the process ends."""

    folder: Path
    lock: Path
    fd: int

    @classmethod
    def create(cls, wal_dir: Path) -> Owner:
        """A new folder for this process; its lock is held before it bears the name other processes look for."""
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder, lock, unnamed = wal_dir / name, wal_dir / f"{name}.lock", wal_dir / f".{name}.new"
        folder.mkdir(parents=True)
        fd = os.open(unnamed, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(unnamed, lock)
        return cls(folder, lock, fd)

    @classmethod
    def claim(cls, lock: Path) -> Owner | None:
        """The folder of ``lock`` when no living process holds it, now held by this one; None otherwise."""
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # removed by the process that adopted it
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(lock).st_ino:  # removed meanwhile by the one that adopted it
                raise FileNotFoundError(lock)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        return cls(lock.with_suffix(""), lock, fd)

    def release(self, *, remove: bool) -> None:
        """Let go of the folder; with ``remove``, delete it (when empty) and its lock first."""
        if remove:
            try:
                self.folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # a segment is left: the folder stays to be adopted
                remove = False
        if remove:
            self.lock.unlink(missing_ok=True)
        os.close(self.fd)


@dataclass
class Segment:
    """One write-ahead file: JSON lines, named by its start time (UTC) and a random id."""

    path: Path
    fd: int

    @classmethod
    def open(cls, folder: Path) -> Segment:
        path = folder / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.jsonl"
        return cls(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        os.close(self.fd)

    @staticmethod
    def named(path: Path) -> tuple[datetime, str]:
        stamp, suffix = path.stem.split("-", 1)
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC), suffix


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The rows of a segment; a torn last line (the process died inside a write) is left out."""
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("Skipped a torn line in %s", path)
    return rows
