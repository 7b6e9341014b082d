"""The prediction log: its reader lists only the day folders since the last check; compaction into hourly files
loses and duplicates no row, even when interrupted or raced by a reader."""

import io
import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from airflow_mlops.serving.predlog import PREDICTION_COLUMNS, PredictionLog, compact_log, prediction_row, read_log
from airflow_mlops.store.artifacts import LocalArtifactStore
from airflow_mlops.store.layout import log_part_key


class ListingStore(LocalArtifactStore):
    """A local store that records the prefixes it was asked to list."""

    def __init__(self, root):
        super().__init__(root)
        self.listed = []

    def list(self, prefix):
        self.listed.append(prefix)
        return super().list(prefix)


def write_part(store, when: datetime, rows: int, suffix: str = "x") -> None:
    frame = pd.DataFrame(
        [
            prediction_row(
                row_id=f"{when:%j%H%M%S}-{suffix}-{i}", version="v1", prediction=0.5, latency_ms=1.0, request_id="r", features={}
            )
            | {"_ts": when.timestamp() - i / 1000, "tenure": float(i)}
            for i in range(rows)
        ]
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.write_bytes(log_part_key("predictions", "p", when, suffix), buffer.getvalue())


def rows(store, since=0.0):
    return read_log(store, "p", "predictions", since).sort_values("_id").reset_index(drop=True)


class TestReadLog:
    def test_lists_only_the_days_since_the_last_check(self, tmp_path):
        store = ListingStore(tmp_path)
        now = datetime.now(UTC)
        for days_ago, rows in ((40, 5), (1, 3), (0, 2)):
            write_part(store, now - timedelta(days=days_ago), rows)
        since = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        frame = read_log(store, "p", "predictions", since.timestamp())
        assert len(frame) == 5, "yesterday's and today's rows"
        assert "predictions/p" not in store.listed, "the whole log is never listed for a recent check"
        assert len(store.listed) == 3 and all(p.startswith("predictions/p/") for p in store.listed)

    def test_a_first_check_reads_the_whole_log(self, tmp_path):
        store = ListingStore(tmp_path)
        now = datetime.now(UTC)
        for days_ago in (400, 40, 0):
            write_part(store, now - timedelta(days=days_ago), 2)
        assert len(read_log(store, "p", "predictions", 0.0)) == 6
        assert store.listed == ["predictions/p"]

    def test_empty_log_has_the_schema_columns(self, tmp_path):
        frame = read_log(LocalArtifactStore(tmp_path), "p", "predictions", 0.0)
        assert dict(frame.dtypes.astype(str)) == PREDICTION_COLUMNS


NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


@pytest.fixture
def log_store(tmp_path):
    """Parts over three hours: 08:xx (3 parts), 09:5x (2 parts), and 10:xx, the hour still being written."""
    store = LocalArtifactStore(tmp_path)
    for n, when in enumerate(["08:00:05", "08:20:00", "08:59:59", "09:50:00", "09:58:00", "10:10:00", "10:29:00"]):
        write_part(store, datetime.fromisoformat(f"2026-11-25T{when}+00:00"), 4, suffix=f"s{n}")
    return store


class TestCompaction:
    def test_past_hours_become_one_file_each_with_the_same_rows(self, log_store):
        before = rows(log_store)
        done = compact_log(log_store, "p", "predictions", now=NOW)
        assert done == {"hours": 2, "parts": 5, "rows": 20}
        names = sorted(k.rsplit("/", 1)[-1] for k in log_store.list("predictions/p"))
        assert names[:2] == ["hour-08.parquet", "hour-09.parquet"] and len(names) == 4, "10:xx parts untouched"
        pd.testing.assert_frame_equal(rows(log_store), before)
        hour = pd.read_parquet(log_store.local_path("predictions/p/2026-11-25/hour-08.parquet"))
        assert len(hour) == 12 and hour["_ts"].is_monotonic_increasing

    def test_an_hour_is_left_alone_until_its_grace_passes(self, log_store):
        assert compact_log(log_store, "p", "predictions", now=datetime(2026, 11, 25, 10, 2, tzinfo=UTC))["hours"] == 1

    def test_the_reader_skips_what_an_interrupted_compaction_already_merged(self, log_store, monkeypatch):
        before = rows(log_store)
        deleted = []

        def crash_after_one(key):
            if deleted:
                raise OSError("worker lost")
            deleted.append(key)
            LocalArtifactStore.delete(log_store, key)

        monkeypatch.setattr(log_store, "delete", crash_after_one)
        with pytest.raises(OSError, match="worker lost"):
            compact_log(log_store, "p", "predictions", now=NOW)
        assert log_store.exists("predictions/p/2026-11-25/hour-08.parquet") and len(deleted) == 1
        pd.testing.assert_frame_equal(rows(log_store), before)  # hour file + 2 listed parts: no duplicate

        monkeypatch.undo()
        assert compact_log(log_store, "p", "predictions", now=NOW) == {"hours": 2, "parts": 4, "rows": 8}
        pd.testing.assert_frame_equal(rows(log_store), before)

    def test_a_late_part_joins_its_hourly_file(self, log_store):
        compact_log(log_store, "p", "predictions", now=NOW)
        write_part(log_store, datetime(2026, 11, 25, 8, 45, tzinfo=UTC), 4, suffix="late")
        before = rows(log_store)
        assert compact_log(log_store, "p", "predictions", now=NOW) == {"hours": 1, "parts": 1, "rows": 4}
        assert len(pd.read_parquet(log_store.local_path("predictions/p/2026-11-25/hour-08.parquet"))) == 16
        pd.testing.assert_frame_equal(rows(log_store), before)

    def test_a_reader_raced_by_compaction_reads_again(self, log_store, monkeypatch):
        before = rows(log_store)
        read, raced = LocalArtifactStore.read_bytes, []

        def compact_first(key):
            if "/part-" in key and not raced:
                raced.append(key)
                compact_log(log_store, "p", "predictions", now=NOW)  # between the reader's listing and its read
            return read(log_store, key)

        monkeypatch.setattr(log_store, "read_bytes", compact_first)
        pd.testing.assert_frame_equal(rows(log_store), before)
        assert raced and not log_store.exists(raced[0]), "the part the reader listed was gone when it came to read it"

    def test_hours_before_the_start_are_not_read(self, log_store):
        compact_log(log_store, "p", "predictions", now=NOW)
        since = datetime(2026, 11, 25, 9, 55, tzinfo=UTC).timestamp()
        assert (rows(log_store, since)["_ts"] >= since).all() and len(rows(log_store, since)) == 4 + 8


class FlakyStore(LocalArtifactStore):
    """A local store whose writes fail while ``down`` is set (storage outage)."""

    down = False

    def write_bytes(self, key, data):
        if self.down:
            raise OSError("storage unavailable")
        super().write_bytes(key, data)


def served_rows(n, start=0):
    return [
        prediction_row(row_id=f"r{i}", version="v1", prediction=0.5, latency_ms=1.0, request_id="q", features={"x": float(i)})
        for i in range(start, start + n)
    ]


def logged_ids(store):
    return read_log(store, "p", "predictions", 0.0)["_id"].tolist()


def die(plog: PredictionLog) -> None:
    """What SIGKILL does to a log's process: its files close (its lock goes), nothing is shipped or removed."""
    if plog._segment is not None:
        plog._segment.close()
        plog._segment = None
    os.close(plog._owner.fd)
    plog._owner = None


class TestWriteAhead:
    def test_a_storage_outage_loses_nothing_and_ships_in_order_once_back(self, tmp_path):
        store = FlakyStore(tmp_path / "store")
        plog = PredictionLog(store, "p", wal_dir=tmp_path / "wal")
        plog.wal_dir.mkdir(parents=True)
        store.down = True
        plog.append(served_rows(5))
        plog.flush()
        plog.append(served_rows(5, start=5))
        plog.flush()
        assert plog.failed_shipments == 2 and logged_ids(store) == []
        assert len(list(plog.wal_dir.rglob("*.jsonl"))) == 2, "both segments kept on disk"
        store.down = False
        plog.flush()
        assert sorted(logged_ids(store), key=lambda i: int(i[1:])) == [f"r{i}" for i in range(10)]
        assert not list(plog.wal_dir.rglob("*.jsonl")), "shipped segments are deleted"

    def test_segments_a_killed_process_left_are_shipped_once_by_the_next(self, tmp_path):
        store = LocalArtifactStore(tmp_path / "store")
        first = PredictionLog(store, "p", wal_dir=tmp_path / "wal")
        first.append(served_rows(4))
        first.flush()  # shipped...
        first.append(served_rows(3, start=4))
        leftover = first._segment.path
        shipped = sorted(first.wal_dir.rglob("*.jsonl"))
        die(first)  # ...then the process dies: its lock goes, its segment stays
        (leftover.parent / "19700101T000000000000-copy.jsonl").write_bytes(b"")  # an empty segment is harmless
        second = PredictionLog(store, "p", wal_dir=tmp_path / "wal").start()
        second.close()
        assert shipped == [leftover]
        assert sorted(logged_ids(store), key=lambda i: int(i[1:])) == [f"r{i}" for i in range(7)]
        assert not list(first.wal_dir.iterdir()), "the adopted folder and its lock are removed"

    def test_shipping_a_segment_again_writes_the_same_part(self, tmp_path):
        store = LocalArtifactStore(tmp_path / "store")
        plog = PredictionLog(store, "p", wal_dir=tmp_path / "wal")
        plog.append(served_rows(3))
        path = plog._segment.path
        saved = path.read_bytes()
        plog.flush()
        path.write_bytes(saved)  # uploaded, then killed before the segment was deleted
        die(plog)
        PredictionLog(store, "p", wal_dir=tmp_path / "wal").start().close()
        assert len(store.list("predictions/p")) == 1 and sorted(logged_ids(store)) == ["r0", "r1", "r2"]

    def test_a_segment_still_owned_by_a_live_process_is_left_alone(self, tmp_path):
        store = LocalArtifactStore(tmp_path / "store")
        live = PredictionLog(store, "p", wal_dir=tmp_path / "wal")
        live.append(served_rows(2))
        other = PredictionLog(store, "p", wal_dir=tmp_path / "wal").start()
        other.close()
        assert logged_ids(store) == [] and live._segment.path.exists()
        live.flush()
        assert sorted(logged_ids(store)) == ["r0", "r1"]

    def test_text_utf8_cannot_hold_is_replaced_not_dropped_with_its_part(self, tmp_path):
        store = LocalArtifactStore(tmp_path / "store")
        plog = PredictionLog(store, "p", wal_dir=tmp_path / "wal")
        rows = served_rows(3)
        rows[1]["city"] = "\ud800"
        plog.append(rows)
        plog.flush()
        frame = read_log(store, "p", "predictions", 0.0)
        assert sorted(frame["_id"]) == ["r0", "r1", "r2"] and frame["city"].dropna().tolist() == ["?"]

    def test_a_torn_last_line_is_skipped(self, tmp_path):
        store = LocalArtifactStore(tmp_path / "store")
        plog = PredictionLog(store, "p", wal_dir=tmp_path / "wal")
        plog.append(served_rows(2))
        plog._segment.write(b'{"_ts": 1.0, "_id": "torn')
        die(plog)
        PredictionLog(store, "p", wal_dir=tmp_path / "wal").start().close()
        assert sorted(logged_ids(store)) == ["r0", "r1"]


class TestWorkersSharingAFolder:
    def test_a_dead_workers_segments_are_shipped_once_by_a_live_one(self, tmp_path):
        store = LocalArtifactStore(tmp_path / "store")
        dead, live, late = (PredictionLog(store, "p", wal_dir=tmp_path / "wal") for _ in range(3))
        dead.append(served_rows(3))
        live.append(served_rows(2, start=3))
        dead_folder = dead._owner.folder
        live.flush()
        assert sorted(logged_ids(store)) == ["r3", "r4"], "a living worker's folder is left alone"
        die(dead)
        live.append(served_rows(1, start=5))
        live.flush()  # adopts the dead one's folder at its next flush
        late.flush()  # finds nothing left to ship
        assert sorted(logged_ids(store), key=lambda i: int(i[1:])) == [f"r{i}" for i in range(6)]
        assert len(store.list("predictions/p")) == 3 and not dead_folder.exists()

    def test_a_folder_is_adopted_by_one_process_only(self, tmp_path):
        store = LocalArtifactStore(tmp_path / "store")
        dead = PredictionLog(store, "p", wal_dir=tmp_path / "wal")
        dead.append(served_rows(2))
        lock = dead._owner.lock
        die(dead)
        first, second = (PredictionLog(store, "p", wal_dir=tmp_path / "wal") for _ in range(2))
        first._adopt()
        second._adopt()
        assert list(first._adopted) == [lock.with_suffix("")] and not second._adopted
        first.flush()
        second.flush()
        assert sorted(logged_ids(store)) == ["r0", "r1"] and not lock.exists()
