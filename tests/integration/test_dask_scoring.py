"""Batch scoring with ``engine: beam`` on a real dask.distributed cluster (a scheduler and 2 worker processes on
127.0.0.1), the store on the moto S3 server over HTTP: the DaskRunner writes the parts, counts and prediction-log
sample the DirectRunner writes, to the bit. The workers reach S3 only through the pipeline's ``s3_*`` options."""

from __future__ import annotations

import boto3
import pytest

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.stages import scoring
from airflow_mlops.stages.data import Columns, acquire
from airflow_mlops.stages.evaluation import GateSettings, evaluate, register
from airflow_mlops.stages.features import preprocess
from airflow_mlops.stages.training import TrainSettings, train
from airflow_mlops.store import datasets
from airflow_mlops.store.artifacts import ArtifactStore

pytestmark = pytest.mark.slow

PIPELINE = "churn_dask_scoring"
COLUMNS = Columns(
    "churned",
    "classification",
    ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"],
    ["contract", "payment_method", "region"],
)
GATE = GateSettings(
    metric="roc_auc", threshold=0.5, must_beat_production_by=0.0, slices=[], fairness_column=None, fairness_max_gap=None
)


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, silence_logs=40
    ) as local:
        yield local


def test_dask_runner_scores_what_the_direct_runner_scores(cluster, s3_bucket, tmp_path, monkeypatch):
    endpoint, bucket = s3_bucket
    monkeypatch.delenv("MLOPS_S3_ENDPOINT_URL", raising=False)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    store = ArtifactStore.from_uri(f"s3://{bucket}/root", s3_client=client)
    make_churn(1500, seed=4).to_csv(tmp_path / "train.csv", index=False)
    features = preprocess(
        store,
        PIPELINE,
        acquire(store, PIPELINE, str(tmp_path / "train.csv"))["dataset_id"],
        COLUMNS,
        runner="DirectRunner",
        eval_fraction=0.25,
        histogram_bins=10,
    )
    model = train(
        store,
        PIPELINE,
        features["features_id"],
        TrainSettings(params={"num_leaves": 7}, num_boost_round=15, seed=1, early_stopping_rounds=None),
    )
    evaluation = evaluate(store, PIPELINE, model["model_version"], features["features_id"], GATE, run_id="train")
    register(store, PIPELINE, evaluation, lineage={}, promote=True)
    version = scoring.resolve_model(store, PIPELINE)["model_version"]

    monkeypatch.setattr(datasets, "ROW_GROUP_ROWS", 1000)  # 5 row groups: parts spread over both workers
    make_churn(4500, seed=9).drop(columns=["churned"]).to_parquet(tmp_path / "input.parquet", index=False)
    dataset_id = acquire(store, PIPELINE, str(tmp_path / "input.parquet"))["dataset_id"]
    args = {"engine": "beam", "log_sample": 0.1, "log_max_rows": 300}
    direct = scoring.score(store, PIPELINE, dataset_id, version, runner="DirectRunner", **args)
    prefix = f"scores/{PIPELINE}/{direct['scoring_id']}"
    parts = {k: store.read_bytes(k) for k in store.list(prefix) if "/part-" in k}
    logged = store.read_bytes(direct["log_key"])
    assert (direct["parts"], direct["rows"], direct["logged_rows"]) == (5, 4500, 300)
    for key in parts:
        store.delete(key)
    dask = scoring.score(
        store,
        PIPELINE,
        dataset_id,
        version,
        runner="dask",
        pipeline_options={"dask_client_address": cluster.scheduler_address},
        **args,
    )
    assert dask == direct
    assert {k: store.read_bytes(k) for k in store.list(prefix) if "/part-" in k} == parts
    assert store.read_bytes(direct["log_key"]) == logged
    assert direct["output_uri"].startswith(f"s3://{bucket}/root/scores/")
