"""Labels in: incremental reads, first label wins, the join to the prediction log by id, unknown ids, retries."""

from __future__ import annotations

from datetime import timedelta

import pyarrow.compute as pc
import pytest
from churn_setup import GATE, PIPELINE, built, log_feedback, production_store  # noqa: F401 (pytest fixtures)
from labelled_traffic import DAY0, log_at, write_labels

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages.label_exports import label_files
from airflow_mlops.stages.labels import LabelSource, ingest_labels, read_joined
from airflow_mlops.store.layout import labels_prefix


@pytest.fixture
def store(built, tmp_path):
    """A copy of the pipeline store with its first model in production."""
    return production_store(built, tmp_path)


@pytest.fixture
def traffic(store, built):
    """Two days of logged traffic: 60 rows on day 0 and 60 on day 1."""
    version = built.model["model_version"]
    first = log_at(store, version, make_churn(60, seed=31), DAY0 + timedelta(hours=3))
    second = log_at(store, version, make_churn(60, seed=32), DAY0 + timedelta(days=1, hours=5))
    return first, second


def ingest(store, folder, run_id, **source):
    labels = LabelSource(uri=str(folder / "*.csv"), label_column="churned", **source)
    return ingest_labels(store, PIPELINE, labels, slices=["contract"], run_id=run_id)


def joined(store):
    return read_joined(store, PIPELINE, DAY0.timestamp(), (DAY0 + timedelta(days=3)).timestamp())


class TestIngestLabels:
    def test_late_out_of_order_duplicated_and_unknown_labels(self, store, traffic, tmp_path):
        """(c) Labels arrive late (day 1's file holds day 0's ids too), out of order, duplicated within and across
        files, and some for ids never logged: each id is joined once with its first label; unknown ones are
        counted, never joined."""
        first, second = traffic
        folder = tmp_path / "labels"
        ids = list(second["customer_id"][:20][::-1]) + list(first["customer_id"][:10])  # out of order, two days
        labels = [1.0] * 30
        write_labels(folder, "a.csv", [*ids, ids[0], "nobody-1", "nobody-2"], [*labels, 0.0, 1.0, 0.0])
        result = ingest(store, folder, "run-1")
        assert (result["files"], result["file_labels"], result["duplicates"]) == (1, 33, 1)
        assert (result["unknown"], result["joined"]) == (2, 30), result
        assert set(result["unknown_examples"]) == {"nobody-1", "nobody-2"}
        assert result["days"] == [DAY0.date().isoformat(), (DAY0 + timedelta(days=1)).date().isoformat()]

        # A later export repeats 10 ids with other labels (first wins), labels 10 late day-0 ids, one more unknown.
        late = list(first["customer_id"][10:20])
        write_labels(folder, "b.csv", [*ids[:10], *late, "nobody-3"], [0.0] * 10 + [0.0] * 10 + [1.0])
        result = ingest(store, folder, "run-2")
        assert (result["files"], result["already_labelled"], result["unknown"], result["joined"]) == (1, 10, 1, 10)
        table = joined(store)
        assert table.num_rows == 40 and len(set(table["_id"].to_pylist())) == 40
        kept = dict(zip(table["_id"].to_pylist(), table["label"].to_pylist(), strict=True))
        assert all(kept[i] == 1.0 for i in ids) and all(kept[i] == 0.0 for i in late), "the first label wins"
        row = table.filter(pc.equal(table["_id"], first["customer_id"][0])).to_pylist()[0]
        expected = first.iloc[0]
        assert row["_prediction"] == pytest.approx(expected["_prediction"]) and row["contract"] == expected["contract"]

        assert ingest(store, folder, "run-3")["files"] == 0, "a file is read once"

    def test_feedback_labels_count_and_arrive_first(self, store, traffic, tmp_path):
        first, _ = traffic
        log_feedback(store, first.iloc[:5])  # the true labels, sent to /feedback before the export
        folder = tmp_path / "labels"
        write_labels(folder, "a.csv", first["customer_id"][:8], [9.0] * 8)
        result = ingest(store, folder, "run-1")
        assert (result["feedback_labels"], result["duplicates"], result["joined"]) == (5, 5, 8)
        kept = dict(zip(*(joined(store)[c].to_pylist() for c in ("_id", "label")), strict=True))
        assert [kept[i] for i in first["customer_id"][:5]] == first["churned"][:5].astype(float).tolist()
        assert ingest(store, tmp_path / "none", "run-2")["feedback_labels"] == 0, "the feedback log is read once"

    def test_a_retried_ingest_neither_duplicates_nor_loses(self, store, traffic, tmp_path, monkeypatch):
        first, second = traffic
        folder = tmp_path / "labels"
        write_labels(folder, "a.csv", first["customer_id"][:30], [1.0] * 30)
        from airflow_mlops.stages import labels as stage

        def crash(*args, **kwargs):
            raise OSError("worker killed after the joined rows were written")

        monkeypatch.setattr(stage, "label_file_key", crash)
        with pytest.raises(OSError, match="killed"):
            ingest(store, folder, "run-1")
        assert joined(store).num_rows == 30, "the first attempt wrote its rows"
        write_labels(folder, "b.csv", second["customer_id"][:5], [1.0] * 5)  # arrived before the retry
        monkeypatch.undo()
        retried = ingest(store, folder, "run-1")
        assert (retried["files"], retried["joined"], retried["already_labelled"]) == (1, 30, 0), "the plan's files only"
        assert joined(store).num_rows == 30
        assert ingest(store, folder, "run-1") == retried, "a retry of a finished batch returns its counts"
        assert ingest(store, folder, "run-2")["joined"] == 5, "the file that arrived meanwhile: the next run"
        assert len(store.list(f"{labels_prefix(PIPELINE)}/files")) == 2

    def test_a_changed_file_is_read_again_its_ids_already_labelled(self, store, traffic, tmp_path):
        first, _ = traffic
        folder = tmp_path / "labels"
        path = write_labels(folder, "a.csv", first["customer_id"][:5], [1.0] * 5)
        ingest(store, folder, "run-1")
        write_labels(folder, "a.csv", first["customer_id"][:8], [0.0] * 8)
        path.touch()
        result = ingest(store, folder, "run-2")
        assert (result["files"], result["already_labelled"], result["joined"]) == (1, 5, 3)

    def test_event_time_and_parquet(self, store, traffic, tmp_path):
        import pandas as pd

        first, _ = traffic
        folder = tmp_path / "labels"
        folder.mkdir()
        frame = pd.DataFrame({"cid": first["customer_id"][:4], "y": [1, 0, 1, 0]})
        frame["when"] = pd.to_datetime(["2026-11-02T10:00:00Z"] * 4)
        frame.to_parquet(folder / "x.parquet")
        source = LabelSource(uri=str(folder / "*.parquet"), id_column="cid", label_column="y", event_time_column="when")
        assert ingest_labels(store, PIPELINE, source, slices=[], run_id="r")["joined"] == 4
        assert set(joined(store)["_event_ts"].to_pylist()) == {pd.Timestamp("2026-11-02T10:00:00Z").timestamp()}

    def test_a_missing_column_names_the_file(self, store, tmp_path):
        folder = tmp_path / "labels"
        write_labels(folder, "a.csv", ["x"], [1.0])
        with pytest.raises(MlopsError, match=r"a\.csv has no column 'label'"):
            ingest_labels(store, PIPELINE, LabelSource(uri=str(folder / "*.csv")), slices=[], run_id="r")


class TestLabelFiles:
    def test_none_yet_is_no_error(self, tmp_path):
        assert label_files(str(tmp_path / "missing" / "*.csv"), None) == []

    def test_an_s3_prefix_glob(self, s3_bucket):
        import boto3

        endpoint, bucket = s3_bucket
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for key in ("labels/2026-11-01.csv", "labels/2026-11-02.csv", "labels/readme.txt", "other/x.csv"):
            client.put_object(Bucket=bucket, Key=key, Body=b"id,label\na,1\n")
        names = [f["name"] for f in label_files(f"s3://{bucket}/labels/*.csv", client)]
        assert names == [f"s3://{bucket}/labels/2026-11-01.csv", f"s3://{bucket}/labels/2026-11-02.csv"]
        assert len(label_files(f"s3://{bucket}/labels/", client)) == 3, "a plain prefix: every object below it"
