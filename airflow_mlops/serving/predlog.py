"""The prediction log: rows buffered in memory, written as Parquet parts by a background thread,
and read back (by the canary analysis and the drift check) through the same row schema."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import (
    is_log_part,
    log_day,
    log_file_hour,
    log_file_name,
    log_hour_key,
    log_part_key,
    log_prefix,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

PREDICTION_COLUMNS: dict[str, str] = {
    "_ts": "float64",  # epoch seconds of the answer
    "_id": "object",  # the row's id: the caller's, or one the server made up
    "_version": "object",  # the model version that scored (or failed to score) the row
    "_prediction": "float64",  # null when the model failed
    "_error": "bool",
    "_latency_ms": "float64",  # the scoring call's time, shared by the rows of one request and version
    "_request": "object",  # one id per request
}
"""Columns of a prediction row (pandas dtypes), before the row's raw feature values (one column per feature)."""

FEEDBACK_COLUMNS: dict[str, str] = {"_ts": "float64", "_id": "object", "label": "float64"}
"""Columns of a feedback row: a label sent back for a row id."""

LOG_COLUMNS = {"predictions": PREDICTION_COLUMNS, "feedback": FEEDBACK_COLUMNS}
MAX_LISTED_DAYS = 31
READ_ATTEMPTS = 5
HOUR = timedelta(hours=1)
COMPACT_GRACE = timedelta(minutes=5)
"""How long after an hour ends its parts are compacted: the server writes a part within seconds of its rows."""
MERGED_PARTS = b"mlops_merged_parts"
"""Parquet metadata key of an hourly file: the names of the parts it holds."""


def prediction_row(
    *, row_id: str, version: str, prediction: float | None, latency_ms: float, request_id: str, features: dict[str, Any]
) -> dict[str, Any]:
    """One prediction log row; ``features`` are the raw values the model was given."""
    row = {"_ts": time.time(), "_id": row_id, "_version": version, "_prediction": prediction, "_error": prediction is None}
    return {**row, "_latency_ms": latency_ms, "_request": request_id, **features}


def feedback_row(row_id: str, label: float) -> dict[str, Any]:
    return {"_ts": time.time(), "_id": row_id, "label": label}


def read_log(store: ArtifactStore, pipeline: str, kind: str, since_ts: float, columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of the prediction (or feedback) log written at or after ``since_ts`` (epoch seconds); with
    ``columns``, only those of them the log has (and ``_ts``) are read.

    Only the day folders from ``since_ts``'s day to tomorrow (UTC) are listed when that is at most
    ``MAX_LISTED_DAYS`` days; an older start (a first check) lists the whole log once. Files of hours that
    ended before ``since_ts`` are not read. A part compacted away between the listing and its read makes the
    read start again (its rows are in the hourly file by then).
    """
    import pandas as pd
    import pyarrow.compute as pc

    start = datetime.fromtimestamp(since_ts, UTC).date()
    end = datetime.now(UTC).date() + timedelta(days=1)  # a server clock a little ahead still counts
    prefix = log_prefix(kind, pipeline)
    for _attempt in range(READ_ATTEMPTS):
        if 0 <= (end - start).days <= MAX_LISTED_DAYS:
            days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
            keys = [k for day in days for k in store.list(f"{prefix}/{day.isoformat()}")]
        else:
            keys = [k for k in store.list(prefix) if log_day(k) >= start.isoformat()]
        keys = [k for k in keys if k.endswith(".parquet") and not _ended_before(k, since_ts)]
        try:
            tables = _read_files(store, keys, None if columns is None else ["_ts", *columns])
        except ArtifactNotFound:
            log.debug("A %s part went away while reading (compacted); reading again", kind)
            continue
        if not tables:
            return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in LOG_COLUMNS[kind].items()})
        table = _concat(tables)
        if pc.min(table["_ts"]).as_py() < since_ts:  # filtered in Arrow, before the one conversion to pandas
            table = table.filter(pc.greater_equal(table["_ts"], since_ts))
        return table.to_pandas()
    raise MlopsError(f"Could not read the {kind} log of {pipeline}: parts kept going away while it was read.")


def _ended_before(key: str, ts: float) -> bool:
    """Whether every row of a log file was written before ``ts``: the hour its name says ended, plus
    ``COMPACT_GRACE`` (a part is named by the start of its write-ahead segment; its rows follow within seconds)."""
    hour = log_file_hour(key)
    return hour is not None and (hour + HOUR + COMPACT_GRACE).timestamp() <= ts


def _read_files(store: ArtifactStore, keys: list[str], columns: list[str] | None = None) -> list[pa.Table]:
    """Hourly files first, then the parts none of them holds yet."""
    tables, merged = [], set()
    for key in [k for k in keys if not is_log_part(k)]:
        table, names = _read_file(store, key, columns)
        tables.append(table)
        merged.update(names)
    tables += [_read_file(store, k, columns)[0] for k in keys if is_log_part(k) and log_file_name(k) not in merged]
    return tables


def _read_file(store: ArtifactStore, key: str, columns: list[str] | None = None) -> tuple[pa.Table, list[str]]:
    """A part's or an hourly file's rows (``columns`` of them that it has), and the parts an hourly file holds."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(io.BytesIO(store.read_bytes(key)))
    schema = parquet.schema_arrow
    table = parquet.read(columns=None if columns is None else [c for c in dict.fromkeys(columns) if c in schema.names])
    return table.replace_schema_metadata(None), json.loads((schema.metadata or {}).get(MERGED_PARTS, b"[]"))


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Tables with the columns of all (a column some lack is null there; integers and floats meet as floats)."""
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="permissive")


def compact_log(
    store: ArtifactStore, pipeline: str, kind: str, *, now: datetime | None = None, grace: timedelta = COMPACT_GRACE
) -> dict[str, int]:
    """Merge the parts of every hour that ended at least ``grace`` ago into that hour's file, then delete them.

    The hourly file lists the parts it holds (Parquet metadata) and is written before any part is deleted, so an
    interrupted compaction loses no row and duplicates none: readers skip the parts an hourly file lists, and a
    retry merges only the parts not listed yet.
    """
    import pyarrow.parquet as pq

    now = now or datetime.now(UTC)
    hours: dict[datetime, list[str]] = {}
    for key in store.list(log_prefix(kind, pipeline)):
        if is_log_part(key) and (hour := log_file_hour(key)) is not None:
            hours.setdefault(hour, []).append(key)
    done = {"hours": 0, "parts": 0, "rows": 0}
    for hour, parts in sorted(hours.items()):
        if hour + HOUR + grace > now:
            continue  # the server may still write parts for this hour
        hour_key = log_hour_key(kind, pipeline, hour.date().isoformat(), hour.hour)
        try:
            held, merged = _read_file(store, hour_key)
        except ArtifactNotFound:  # the hour's first compaction
            held, merged = None, []
        new = [k for k in parts if log_file_name(k) not in merged]
        if new:
            tables = [_read_file(store, k)[0] for k in new]
            done["rows"] += sum(t.num_rows for t in tables)
            table = _concat([held, *tables] if held is not None else tables).sort_by("_ts")
            names = json.dumps(sorted(merged + [log_file_name(k) for k in new])).encode()
            buffer = io.BytesIO()
            pq.write_table(table.replace_schema_metadata({MERGED_PARTS: names}), buffer)
            store.write_bytes(hour_key, buffer.getvalue())  # before any part goes
        for key in parts:
            store.delete(key)
        done["hours"] += 1
        done["parts"] += len(parts)
    log.info("Compacted %(parts)d %(kind)s parts into %(hours)d hourly files (%(rows)d rows)", {**done, "kind": kind})
    return done


class PredictionLog:
    """Append-only log under ``<kind>/<pipeline>/<date>/part-*.parquet`` (see ``store/layout.py``), written
    ahead to local files so no acknowledged row is lost.

    ``append`` writes the rows to the open segment of the write-ahead log (one ``write`` call, before the
    request is answered) and keeps them in memory; a background thread ships them as a Parquet part every
    ``flush_rows`` rows or ``flush_seconds``, then deletes the segment. A part's key comes from its segment
    (start time and id), so shipping a segment again writes the same part, never a second copy. A failed
    shipment stays on disk and is retried, in order, at the next flush.

    Each process writes its segments into a folder of its own, ``<wal_dir>/<kind>/<owner>/``, and holds the lock
    of ``<owner>.lock`` beside it while it lives, so the worker processes of one server share a ``wal_dir``. A
    folder whose lock no process holds (its process was killed) is adopted at the next flush of any process
    writing there, the first to take that lock: it ships the folder's segments, then removes the folder and the
    lock. Only the lock holder ships a folder, so a dead worker's segments are shipped by exactly one other.

    :param store: the artifact store.
    :param pipeline: pipeline name.
    :param kind: ``predictions`` or ``feedback``.
    :param wal_dir: folder of the write-ahead segments (``<wal_dir>/<kind>/``); it must outlive the process.
    """

    def __init__(
        self,
        store: ArtifactStore,
        pipeline: str,
        *,
        kind: str = "predictions",
        flush_rows: int = 1000,
        flush_seconds: float = 2.0,
        wal_dir: Path | str | None = None,
    ) -> None:
        self.store, self.pipeline, self.kind = store, pipeline, kind
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.wal_dir = Path(wal_dir or default_wal_dir(store, pipeline)) / kind
        self._rows: list[dict[str, Any]] = []
        self._owner: _Owner | None = None
        self._segment: _Segment | None = None
        self._pending: list[tuple[Path, list[dict[str, Any]] | None]] = []
        self._adopted: dict[Path, _Owner] = {}
        self._lock = threading.Lock()
        self._ship_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{kind}-log", daemon=True)
        self.parts_written = 0
        self.failed_shipments = 0

    def start(self) -> PredictionLog:
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def append(self, rows: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        with self._lock:
            if self._segment is None:
                if self._owner is None:
                    self._owner = _Owner.create(self.wal_dir)
                self._segment = _Segment.open(self._owner.folder)
            self._segment.write(data)
            self._rows.extend(rows)
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def close(self) -> None:
        """Ship what is left, then remove this process's folder (kept, for the next start, if shipping failed)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        with self._lock, self._ship_lock:
            owners = [*self._adopted.values(), *([self._owner] if self._owner else [])]
            self._owner, self._adopted = None, {}
            for owner in owners:
                owner.release(remove=not self._pending)

    def flush(self) -> None:
        """Adopt the folders of dead processes, then ship the rows appended so far and every segment still waiting; a
        failure leaves them for the next flush."""
        with self._lock:
            rows, self._rows = self._rows, []
            segment, self._segment = self._segment, None
        with self._ship_lock:
            if segment is not None:
                segment.close()
                self._pending.append((segment.path, rows))
            self._adopt()
            while self._pending:
                path, rows = self._pending[0]
                try:
                    self._ship(path, rows if rows is not None else _read_segment(path))
                except Exception:  # storage down: the segment stays on disk, shipped at a later flush
                    self.failed_shipments += 1
                    self._pending[0] = (path, None)  # read back from disk then, not held in memory meanwhile
                    log.exception("Could not write a %s part from %s; will retry", self.kind, path.name)
                    return
                path.unlink(missing_ok=True)
                self._pending.pop(0)
            for owner in self._adopted.values():  # every segment of theirs is shipped
                owner.release(remove=True)
            self._adopted.clear()

    def _adopt(self) -> None:
        """Queue the segments of every folder whose process is gone and whose lock this process could take."""
        own = self._owner.folder if self._owner else None
        for lock in sorted(self.wal_dir.glob("*.lock")) if self.wal_dir.is_dir() else []:
            folder = lock.with_suffix("")
            if folder == own or folder in self._adopted or (owner := _Owner.claim(lock)) is None:
                continue
            self._adopted[folder] = owner
            segments = sorted(folder.glob("*.jsonl"))
            self._pending += [(path, None) for path in segments]
            log.info("Shipping %d %s segment(s) a stopped server process left in %s", len(segments), self.kind, folder)

    def _ship(self, path: Path, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        import pandas as pd

        buffer = io.BytesIO()
        frame = pd.DataFrame(rows)
        frame = frame.astype({c: t for c, t in LOG_COLUMNS[self.kind].items() if c in frame})
        try:
            frame.to_parquet(buffer, index=False)
        except UnicodeEncodeError:  # text the server let through that UTF-8 cannot hold: keep the row, replace the text
            log.warning("Replacing text UTF-8 cannot encode in %s", path.name)
            text = frame.select_dtypes(include="object").columns
            frame[text] = frame[text].apply(lambda c: c.map(_encodable))
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
        started, suffix = _Segment.named(path)
        key = log_part_key(self.kind, self.pipeline, started, suffix)
        self.store.write_bytes(key, buffer.getvalue())
        self.parts_written += 1
        log.debug("Wrote %d %s rows to %s", len(rows), self.kind, key)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()
            time.sleep(0)


def _encodable(value: Any) -> Any:
    return value.encode("utf-8", "replace").decode() if isinstance(value, str) else value


def default_wal_dir(store: ArtifactStore, pipeline: str) -> Path:
    """``$MLOPS_WAL_DIR`` (else the system's temporary directory ``/airflow-mlops-wal``) ``/<root id>-<pipeline>``:
    the same folder on every start for one store and pipeline, so a restarted server ships what a killed one
    left, and never into another store."""
    import hashlib
    import tempfile

    base = Path(os.environ.get("MLOPS_WAL_DIR") or Path(tempfile.gettempdir()) / "airflow-mlops-wal")
    return base / f"{hashlib.sha256(store.root_uri.encode()).hexdigest()[:12]}-{pipeline}"


@dataclass
class _Owner:
    """A process's hold on a write-ahead folder: the lock of ``<folder>.lock``, taken when the folder is made (or
    adopted) and held until its segments are shipped or the process ends."""

    folder: Path
    lock: Path
    fd: int

    @classmethod
    def create(cls, wal_dir: Path) -> _Owner:
        """A new folder for this process; its lock is held before it bears the name other processes look for."""
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder, lock, unnamed = wal_dir / name, wal_dir / f"{name}.lock", wal_dir / f".{name}.new"
        folder.mkdir(parents=True)
        fd = os.open(unnamed, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(unnamed, lock)
        return cls(folder, lock, fd)

    @classmethod
    def claim(cls, lock: Path) -> _Owner | None:
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
class _Segment:
    """One write-ahead file: JSON lines, named by its start time (UTC) and a random id."""

    path: Path
    fd: int

    @classmethod
    def open(cls, folder: Path) -> _Segment:
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


def _read_segment(path: Path) -> list[dict[str, Any]]:
    """The rows of a segment; a torn last line (the process died inside a write) is left out."""
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("Skipped a torn line in %s", path)
    return rows
