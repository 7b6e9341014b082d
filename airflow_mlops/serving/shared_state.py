"""What the worker processes of one model server share: the row ids answered (for feedback) and the models
refused, in an SQLite file beside the write-ahead logs."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FEEDBACK_WINDOW_SECONDS = 7 * 24 * 3600
MAX_TRACKED_IDS = 2_000_000
"""Ids the server remembers for feedback (oldest forgotten first); they outlive a restart (``SharedState``)."""
NOT_ANSWERED = "not answered by this server in the feedback window"


class SharedState:
    """What the worker processes of one server share, in an SQLite file (WAL mode) beside the write-ahead logs.

    The row ids answered, each with when and whether it was labelled: feedback is taken for an id any worker
    answered within ``FEEDBACK_WINDOW_SECONDS``, and only the first label of an answer (an atomic
    ``UPDATE ... WHERE labelled = 0``). A worker writes the ids it answered every ``WRITE_SECONDS`` in one
    transaction from a thread (a commit per request would cost about 50 us of each), and its own before it judges
    a label; an id a label names that is not there yet (answered by another worker just now) is looked up again
    after ``VISIBLE_SECONDS``. The models refused in a server run are recorded too, so a refusal is counted once
    whichever worker found it. Each worker holds its own connection; SQLite's locks order the writes.

    :param path: the SQLite file; it outlives restarts, and so do the answered ids.
    :param run: the server run (one id for all its workers).
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS answered (id TEXT NOT NULL UNIQUE, at REAL NOT NULL, labelled INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS refused (run TEXT NOT NULL, version TEXT NOT NULL, PRIMARY KEY (run, version));
    """
    WRITE_SECONDS = 0.05
    VISIBLE_SECONDS = 4 * WRITE_SECONDS

    def __init__(self, path: Path, run: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.run = path, run
        self._db = self._connect()
        self._db.executescript(self.SCHEMA)
        self._lock = threading.Lock()  # the connection: the event loop, the writer and the registry refresh use it
        self._unwritten: list[tuple[str, float]] = []
        self._unwritten_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_every, name="answered-ids", daemon=True)

    def _connect(self) -> Any:
        import sqlite3

        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a commit is an append to SQLite's own WAL, no fsync
        return db

    @staticmethod
    @contextlib.contextmanager
    def _transaction(db: Any) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def start(self) -> None:
        self._writer.start()

    def close(self) -> None:
        self._stop.set()
        self._writer.join(timeout=10)
        self.write()

    def answered(self, ids: list[str], now: float) -> None:
        """Ids just answered: each answer may get one label (an id answered again may be labelled again)."""
        with self._unwritten_lock:
            self._unwritten.extend((row_id, now) for row_id in ids)

    def write(self) -> None:
        """Write the ids answered since the last write. A replaced row gets a new rowid, so rowids keep the order of
        the answers."""
        with self._unwritten_lock:
            batch, self._unwritten = self._unwritten, []
        if not batch:
            return
        try:
            with self._lock, self._transaction(self._db):
                self._db.executemany("INSERT OR REPLACE INTO answered VALUES (?, ?, 0)", batch)
        except Exception:
            with self._unwritten_lock:
                self._unwritten[:0] = batch
            raise

    def _write_every(self) -> None:
        while not self._stop.wait(self.WRITE_SECONDS):
            try:
                self.write()
            except Exception:  # the file is busy or the disk full: the ids stay queued, written at the next turn
                log.exception("Could not write the answered ids; will retry")

    def label(self, ids: list[str], now: float) -> list[str | None]:
        """Take the label of each id: None when taken, else why it is refused."""
        self.write()
        cutoff, refusals = now - FEEDBACK_WINDOW_SECONDS, []
        with self._lock, self._transaction(self._db):
            for row_id in ids:
                taken = self._db.execute(
                    "UPDATE answered SET labelled = 1 WHERE id = ? AND labelled = 0 AND at >= ?", (row_id, cutoff)
                ).rowcount
                if taken:
                    refusals.append(None)
                    continue
                known = self._db.execute("SELECT 1 FROM answered WHERE id = ? AND at >= ?", (row_id, cutoff)).fetchone()
                refusals.append("already labelled" if known else NOT_ANSWERED)
        return refusals

    def forget(self, now: float) -> None:
        """Drop the answers older than the feedback window, then the oldest beyond ``MAX_TRACKED_IDS`` (in rowid
        order: only the dropped rows are scanned). Its own connection, so the event loop's never waits on it."""
        with contextlib.closing(self._connect()) as db, self._transaction(db):
            first_kept = "SELECT rowid FROM answered WHERE at >= ? ORDER BY rowid LIMIT 1"
            db.execute(
                f"DELETE FROM answered WHERE rowid < coalesce(({first_kept}), (SELECT max(rowid) + 1 FROM answered))",
                (now - FEEDBACK_WINDOW_SECONDS,),
            )
            db.execute("DELETE FROM answered WHERE rowid <= (SELECT max(rowid) FROM answered) - ?", (MAX_TRACKED_IDS,))

    def first_refusal(self, version: str) -> bool:
        """Record that ``version`` could not be loaded; True for the first worker of this run to record it."""
        with self._lock, self._transaction(self._db):
            return bool(self._db.execute("INSERT OR IGNORE INTO refused VALUES (?, ?)", (self.run, version)).rowcount)
