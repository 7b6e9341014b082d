"""Compaction into hourly files loses and duplicates no row, even when interrupted or raced by a reader."""

from datetime import UTC, datetime

import pandas as pd
import pytest
from log_parts import rows, write_part

from airflow_mlops.serving.predlog_compaction import compact_log
from airflow_mlops.store.artifacts import LocalArtifactStore

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
