"""The prediction-log reader lists only the day folders since the last check, and a first check the whole log."""

from datetime import UTC, datetime, timedelta

from log_parts import write_part

from airflow_mlops.serving.predlog import PREDICTION_COLUMNS
from airflow_mlops.serving.predlog_reader import read_log
from airflow_mlops.store.artifacts import LocalArtifactStore


class ListingStore(LocalArtifactStore):
    """A local store that records the prefixes it was asked to list."""

    def __init__(self, root):
        super().__init__(root)
        self.listed = []

    def list(self, prefix):
        self.listed.append(prefix)
        return super().list(prefix)


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
