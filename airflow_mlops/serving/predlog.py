"""The prediction log: rows buffered in memory, written as Parquet parts by a background thread,
and read back (by the canary analysis and the drift check) through the same row schema."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import log_day, log_part_key, log_prefix

if TYPE_CHECKING:
    import pandas as pd

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


def prediction_row(
    *, row_id: str, version: str, prediction: float | None, latency_ms: float, request_id: str, features: dict[str, Any]
) -> dict[str, Any]:
    """One prediction log row; ``features`` are the raw values the model was given."""
    row = {"_ts": time.time(), "_id": row_id, "_version": version, "_prediction": prediction, "_error": prediction is None}
    return {**row, "_latency_ms": latency_ms, "_request": request_id, **features}


def feedback_row(row_id: str, label: float) -> dict[str, Any]:
    return {"_ts": time.time(), "_id": row_id, "label": label}


def read_log(store: ArtifactStore, pipeline: str, kind: str, since_ts: float) -> pd.DataFrame:
    """Rows of the prediction (or feedback) log written at or after ``since_ts`` (epoch seconds).

    Only the day folders from ``since_ts``'s day to tomorrow (UTC) are listed when that is at most
    ``MAX_LISTED_DAYS`` days; an older start (a first check) lists the whole log once.
    """
    import pandas as pd

    start = datetime.fromtimestamp(since_ts, UTC).date()
    end = datetime.now(UTC).date() + timedelta(days=1)  # a server clock a little ahead still counts
    prefix = log_prefix(kind, pipeline)
    if 0 <= (end - start).days <= MAX_LISTED_DAYS:
        days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
        keys = [k for day in days for k in store.list(f"{prefix}/{day.isoformat()}") if k.endswith(".parquet")]
    else:
        keys = [k for k in store.list(prefix) if k.endswith(".parquet") and log_day(k) >= start.isoformat()]
    if not keys:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in LOG_COLUMNS[kind].items()})
    frame = pd.concat([pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in keys], ignore_index=True)
    return frame[frame["_ts"] >= since_ts].reset_index(drop=True)


class PredictionLog:
    """Append-only log under ``<kind>/<pipeline>/<date>/part-*.parquet`` (see ``store/layout.py``).

    ``append`` only takes a lock and extends a list, so a request never waits on storage; a
    background thread writes a part every ``flush_rows`` rows or ``flush_seconds``.

    :param store: the artifact store.
    :param pipeline: pipeline name.
    :param kind: ``predictions`` or ``feedback``.
    """

    def __init__(
        self,
        store: ArtifactStore,
        pipeline: str,
        *,
        kind: str = "predictions",
        flush_rows: int = 1000,
        flush_seconds: float = 2.0,
    ) -> None:
        self.store, self.pipeline, self.kind = store, pipeline, kind
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{kind}-log", daemon=True)
        self.parts_written = 0

    def start(self) -> PredictionLog:
        self._thread.start()
        return self

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        import pandas as pd

        buffer = io.BytesIO()
        frame = pd.DataFrame(rows)
        frame.astype({c: t for c, t in LOG_COLUMNS[self.kind].items() if c in frame}).to_parquet(buffer, index=False)
        key = log_part_key(self.kind, self.pipeline, datetime.now(UTC), uuid.uuid4().hex[:8])
        self.store.write_bytes(key, buffer.getvalue())
        self.parts_written += 1
        log.debug("Wrote %d %s rows to %s", len(rows), self.kind, key)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep serving; the rows of a failed part are logged and dropped
                log.exception("Could not write a %s part", self.kind)
            time.sleep(0)
