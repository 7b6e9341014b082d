"""The prediction log: rows buffered in memory, written as Parquet parts by a background thread."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


class PredictionLog:
    """Append-only log under ``<kind>/<pipeline>/<date>/part-*.parquet``.

    ``append`` only takes a lock and extends a list, so a request never waits on storage; a
    background thread writes a part every ``flush_rows`` rows or ``flush_seconds``.

    :param store: the artifact store.
    :param pipeline: pipeline name.
    :param kind: ``predictions`` or ``feedback``.
    """

    def __init__(self, store: ArtifactStore, pipeline: str, *, kind: str = "predictions", flush_rows: int = 1000, flush_seconds: float = 2.0) -> None:
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
        pd.DataFrame(rows).to_parquet(buffer, index=False)
        now = datetime.now(UTC)
        key = f"{self.kind}/{self.pipeline}/{now:%Y-%m-%d}/part-{now:%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
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
