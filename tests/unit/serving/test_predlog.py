"""The prediction-log writer: its write-ahead files lose no acknowledged row through a storage outage or a killed
process, and the worker processes sharing a folder ship a dead one's segments exactly once."""

import os

from airflow_mlops.serving.predlog import PredictionLog, prediction_row
from airflow_mlops.serving.predlog_reader import read_log
from airflow_mlops.store.artifacts import LocalArtifactStore


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
