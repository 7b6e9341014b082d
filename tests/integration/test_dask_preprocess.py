"""Preprocessing on a real dask.distributed cluster (a scheduler and 2 worker processes on 127.0.0.1) with the store on
the moto S3 server over HTTP: Beam's DaskRunner writes the same transform, profile, features and row ids as the
DirectRunner.

The workers find the S3 endpoint only in the pipeline's ``s3_*`` options (the store's connection settings): nothing in
their environment names it.
"""

from __future__ import annotations

import io

import boto3
import pandas as pd
import pytest

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.ml.transform import ROW_ID
from airflow_mlops.stages.data import Columns, acquire
from airflow_mlops.stages.features import SPLITS, preprocess, read_features
from airflow_mlops.store import datasets
from airflow_mlops.store.artifacts import ArtifactStore

pytestmark = pytest.mark.slow

PIPELINE = "churn_dask"
COLUMNS = Columns(
    "churned",
    "classification",
    ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"],
    ["contract", "payment_method", "region"],
)
SETTINGS = {"eval_fraction": 0.25, "histogram_bins": 10}


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, silence_logs=40
    ) as local:
        yield local


@pytest.fixture
def stores(s3_bucket, tmp_path, monkeypatch):
    """The same snapshot (6 row groups) in two S3 stores of one bucket: one per runner."""
    endpoint, bucket = s3_bucket
    monkeypatch.delenv("MLOPS_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(datasets, "ROW_GROUP_ROWS", 1000)
    make_churn(5500, seed=25).to_csv(tmp_path / "churn.csv", index=False)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    opened = {}
    for runner in ("direct", "dask"):
        store = ArtifactStore.from_uri(f"s3://{bucket}/{runner}", s3_client=client)
        opened[runner] = store, acquire(store, PIPELINE, str(tmp_path / "churn.csv"))["dataset_id"]
    return opened


def test_dask_runner_writes_what_the_direct_runner_writes(cluster, stores):
    direct_store, dataset_id = stores["direct"]
    dask_store, dask_dataset_id = stores["dask"]
    assert dask_dataset_id == dataset_id
    direct = preprocess(direct_store, PIPELINE, dataset_id, COLUMNS, runner="DirectRunner", **SETTINGS)
    dask = preprocess(
        dask_store,
        PIPELINE,
        dataset_id,
        COLUMNS,
        runner="dask",
        pipeline_options={"dask_client_address": cluster.scheduler_address},
        **SETTINGS,
    )
    assert dask["cached"] is False and direct["cached"] is False
    same = ("features_id", "dataset_id", "transform_hash", "rows", "train_rows", "eval_rows")
    assert {k: dask[k] for k in same} == {k: direct[k] for k in same}
    assert dask["rows"] == 5500 and dask["features_uri"].startswith("s3://")

    prefix = f"features/{PIPELINE}/{dask['features_id']}"
    for name in ("transform.json", "profile.json"):
        assert dask_store.read_bytes(f"{prefix}/{name}") == direct_store.read_bytes(f"{prefix}/{name}"), name
    keys = dask_store.list(prefix)
    assert [k for k in keys if k.startswith(f"{prefix}/train/")] == [f"{prefix}/train/part-{i:05d}.parquet" for i in range(6)]
    for split in SPLITS:
        ours, theirs = (
            read_features(dask_store, PIPELINE, dask["features_id"], split),
            read_features(direct_store, PIPELINE, direct["features_id"], split),
        )
        pd.testing.assert_frame_equal(ours, theirs)
        assert ours[ROW_ID].is_unique
    raw = pd.read_parquet(io.BytesIO(dask_store.read_bytes(f"{prefix}/eval_raw/part-00000.parquet")))
    assert set(raw.columns) >= {ROW_ID, *COLUMNS.features, COLUMNS.label}
