"""Pipelines feeding pipelines: a source that follows another pipeline's Asset (``source.asset``) is scheduled on it
and reads the data its newest event names, through real dag.test() runs of both training DAGs."""

from __future__ import annotations

import pytest
from conftest import run_dag
from test_training_dag import TRAINING_TASKS, asset_events, churn_config, write_day, xcom

from airflow_mlops.ml.synthetic import make_churn

pytestmark = pytest.mark.slow


def test_a_pipeline_trains_on_another_pipelines_dataset_asset(pipeline, tmp_path):
    small = {"model": {"num_boost_round": 20, "params": {"num_leaves": 7}}}
    follower = churn_config(
        "follower", tmp_path, source={"asset": "mlops_feeder_dataset"}, artifacts={"root": str(tmp_path / "b")}, **small
    )
    config, dag = pipeline(follower)
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["mlops_feeder_dataset"]
    assert config.source.uri is None and "mlops_feeder_dataset" in {a.name for a in dag.get_task("data.acquire").inlets}

    run, states = run_dag(dag, "2026-11-01")  # the feeder has not produced anything yet
    assert states["data.acquire"] == "failed" and run.state == "failed"

    _, feeder = pipeline(churn_config("feeder", tmp_path, **small))
    write_day(tmp_path, "2026-11-02", make_churn(1200, seed=21))
    fed, fed_states = run_dag(feeder, "2026-11-02")
    assert fed.state == "success", fed_states
    produced = asset_events(fed)["mlops_feeder_dataset"]

    run, states = run_dag(dag, "2026-11-03")
    assert all(states[t] == "success" for t in TRAINING_TASKS), states
    acquired = xcom(run, "data.acquire")
    assert acquired["source"] == f"{produced['dataset_uri']}/data.parquet"
    assert acquired["dataset_id"] == produced["dataset_id"], "the same rows: the same content id in the other store"
    assert acquired["dataset_uri"].startswith(f"file://{tmp_path / 'b'}")
