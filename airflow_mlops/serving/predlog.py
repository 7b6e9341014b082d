"""The prediction log's writer and its row schema: rows appended ahead to local files, shipped as Parquet parts by a
background thread. ``predlog_reader`` reads them back through the same schema; ``predlog_compaction`` merges them into
hourly files; ``write_ahead`` holds the local files."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from airflow_mlops.ml.multiclass import PROBABILITIES
from airflow_mlops.serving.write_ahead import Owner, Segment, default_wal_dir, read_segment
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import log_part_key

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

BATCH_REQUEST_PREFIX = "batch-"
"""``_request`` of the rows batch scoring logs (a server's request ids are uuid hex): the drift and performance
monitors read them as traffic, the canary analysis and the post-promotion watch never (no request latency, and
scored by the version the batch run resolved, not by the router's split)."""


def served_rows(frame: Any) -> Any:
    """The rows of a prediction log frame that the model server answered (batch scoring's rows left out)."""
    if "_request" not in frame or frame.empty:
        return frame
    return frame[~frame["_request"].astype(str).str.startswith(BATCH_REQUEST_PREFIX)]


def prediction_row(
    *,
    row_id: str,
    version: str,
    prediction: float | None,
    latency_ms: float,
    request_id: str,
    features: dict[str, Any],
    probabilities: list[float] | None = None,
) -> dict[str, Any]:
    """One prediction log row; ``features`` are the raw values the model was given, ``probabilities`` a multiclass
    model's class probabilities (``prediction``: the index of the most probable)."""
    row = {"_ts": time.time(), "_id": row_id, "_version": version, "_prediction": prediction, "_error": prediction is None}
    if probabilities is not None:
        row[PROBABILITIES] = probabilities
    return {**row, "_latency_ms": latency_ms, "_request": request_id, **features}


def feedback_row(row_id: str, label: float) -> dict[str, Any]:
    return {"_ts": time.time(), "_id": row_id, "label": label}


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
        self._owner: Owner | None = None
        self._segment: Segment | None = None
        self._pending: list[tuple[Path, list[dict[str, Any]] | None]] = []
        self._adopted: dict[Path, Owner] = {}
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
                    self._owner = Owner.create(self.wal_dir)
                self._segment = Segment.open(self._owner.folder)
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
                    self._ship(path, rows if rows is not None else read_segment(path))
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
            if folder == own or folder in self._adopted or (owner := Owner.claim(lock)) is None:
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
        started, suffix = Segment.named(path)
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
