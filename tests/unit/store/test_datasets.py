"""Streaming snapshots of a source: types settled over every block, ids independent of batching."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.store import datasets
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import load_dataset, snapshot_source


@pytest.fixture
def store(tmp_path):
    return ArtifactStore.from_uri(str(tmp_path / "store"))


@pytest.fixture
def small_blocks(monkeypatch):
    """CSV parsed 4 KiB at a time: a later block can disagree with the types the first one suggested."""
    monkeypatch.setattr(datasets, "CSV_BLOCK_BYTES", 4096)


def stored_schema(store, snap):
    return pq.read_schema(store.local_path(f"datasets/p/{snap.dataset_id}/data.parquet"))


def write(path, text):
    path.write_text(text)
    return str(path)


class TestTypes:
    def test_an_integer_column_with_a_decimal_in_a_late_block_becomes_float(self, store, tmp_path, small_blocks):
        lines = [f"{i},{i % 7}" for i in range(3000)] + ["3000,2.5"]
        snap, _ = snapshot_source(store, "p", write(tmp_path / "a.csv", "id,x\n" + "\n".join(lines) + "\n"))
        assert stored_schema(store, snap).field("x").type == pa.float64()
        frame = load_dataset(store, "p", snap.dataset_id)
        assert snap.rows == len(frame) == 3001
        assert frame["x"].iloc[-1] == 2.5 and frame["x"].iloc[:3000].tolist() == [float(i % 7) for i in range(3000)]

    def test_numbers_then_text_become_text(self, store, tmp_path, small_blocks):
        lines = [f"{i},{i}" for i in range(3000)] + ["3000,unknown"]
        snap, _ = snapshot_source(store, "p", write(tmp_path / "a.csv", "id,code\n" + "\n".join(lines) + "\n"))
        frame = load_dataset(store, "p", snap.dataset_id)
        assert stored_schema(store, snap).field("code").type == pa.string()
        assert frame["code"].iloc[[0, 2999, 3000]].tolist() == ["0", "2999", "unknown"]

    def test_dates_stay_the_text_they_were_written_as_and_empty_text_is_null(self, store, tmp_path):
        snap, _ = snapshot_source(store, "p", write(tmp_path / "a.csv", "day,city\n2026-01-02,Oslo\n2026-01-03,\n"))
        frame = load_dataset(store, "p", snap.dataset_id)
        assert frame["day"].tolist() == ["2026-01-02", "2026-01-03"]
        assert frame["city"].iloc[0] == "Oslo" and frame["city"].iloc[1] is None

    def test_files_that_disagree_on_a_type_share_the_wider_one(self, store, tmp_path):
        pd.DataFrame({"x": [1, 2]}).to_parquet(tmp_path / "a.parquet")
        pd.DataFrame({"x": [0.5, np.nan]}).to_parquet(tmp_path / "b.parquet")
        snap, files = snapshot_source(store, "p", str(tmp_path / "*.parquet"))
        assert files == [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
        assert load_dataset(store, "p", snap.dataset_id)["x"].tolist()[:3] == [1.0, 2.0, 0.5]

    def test_files_with_other_columns_are_refused_by_name(self, store, tmp_path):
        write(tmp_path / "a.csv", "x,y\n1,2\n")
        write(tmp_path / "b.csv", "x,z\n1,2\n")
        with pytest.raises(MlopsError, match=r"b\.csv does not have the columns.*extra: \['z'\], missing: \['y'\]"):
            snapshot_source(store, "p", str(tmp_path / "*.csv"))
        assert store.list("datasets") == [], "nothing stored"

    def test_an_unreadable_file_is_named(self, store, tmp_path):
        (tmp_path / "a.parquet").write_bytes(b"not parquet")
        with pytest.raises(MlopsError, match=r"Could not read .*a\.parquet as parquet"):
            snapshot_source(store, "p", str(tmp_path / "a.parquet"))


class TestIdentity:
    def test_the_id_does_not_depend_on_how_the_file_was_cut_into_blocks(self, store, tmp_path, monkeypatch):
        rng = np.random.default_rng(3)
        frame = pd.DataFrame({"n": rng.normal(size=5000), "c": rng.choice(["a", "b", None], 5000), "k": np.arange(5000)})
        frame.to_csv(tmp_path / "a.csv", index=False)
        whole, _ = snapshot_source(store, "p", str(tmp_path / "a.csv"))
        monkeypatch.setattr(datasets, "CSV_BLOCK_BYTES", 2048)
        blocks, _ = snapshot_source(store, "p", str(tmp_path / "a.csv"))
        assert blocks.dataset_id == whole.dataset_id and blocks.created is False
        assert pq.ParquetFile(store.local_path(f"datasets/p/{whole.dataset_id}/data.parquet")).metadata.num_rows == 5000

    def test_row_groups_are_the_pipelines_batches(self, store, tmp_path, monkeypatch):
        monkeypatch.setattr(datasets, "ROW_GROUP_ROWS", 1000)
        monkeypatch.setattr(datasets, "CSV_BLOCK_BYTES", 1024)  # blocks of about 150 rows
        pd.DataFrame({"k": np.arange(4500)}).to_csv(tmp_path / "a.csv", index=False)
        snap, _ = snapshot_source(store, "p", str(tmp_path / "a.csv"))
        meta = pq.ParquetFile(store.local_path(f"datasets/p/{snap.dataset_id}/data.parquet")).metadata
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000] * 4 + [500]
