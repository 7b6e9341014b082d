"""The sensors follow Airflow's deferrable conventions: the configured default, one check before deferring,
``poke_interval`` in both modes, and one timeout across deferrals."""

import os
import subprocess
import sys
import time

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_mlops.serving.predlog import PredictionLog, prediction_row
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry
from airflow_mlops.triggers import TriggerStatus

PIPELINE = "churn"


def log_rows(store: ArtifactStore, n: int) -> None:
    plog = PredictionLog(store, PIPELINE)
    rows = [
        prediction_row(row_id=f"r{i}", version="v1", prediction=0.5, latency_ms=1.0, request_id=f"r{i}", features={})
        for i in range(n)
    ]
    plog.append(rows)
    plog.flush()


@pytest.fixture
def store(tmp_path):
    return ArtifactStore.from_uri(str(tmp_path))


def drift_sensor(store, **kwargs):
    from airflow_mlops.sensors.drift import DriftDataSensor

    return DriftDataSensor(task_id="wait", pipeline=PIPELINE, artifact_root=store.root_uri, min_rows=10, **kwargs)


@pytest.mark.parametrize("configured", ["True", "False"])
def test_deferrable_defaults_to_the_airflow_setting(configured):
    code = (
        "from airflow_mlops.sensors.drift import DriftDataSensor; from airflow_mlops.sensors.canary import PromotionWatchSensor;"
        "print(DriftDataSensor(task_id='w', pipeline='p', artifact_root='/tmp').deferrable,"
        " PromotionWatchSensor(task_id='x', pipeline='p', artifact_root='/tmp', promotion={}, problem_type='regression').deferrable)"
    )
    env = {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": configured}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, check=True)
    assert done.stdout.split() == [configured, configured]


def test_a_deferrable_sensor_checks_once_before_deferring(store):
    log_rows(store, 12)
    assert drift_sensor(store, deferrable=True).execute({}) == 12, "the rows are there: no trigger round trip"


def test_it_defers_with_its_poke_interval_and_timeout(store):
    log_rows(store, 3)
    sensor = drift_sensor(store, deferrable=True, poke_interval=7, timeout=300)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "PredictionRowsTrigger" and trigger.poll_seconds == 7
    assert 299 < deferred.value.timeout.total_seconds() <= 300
    assert 299 < deferred.value.kwargs["deadline"] - time.time() <= 300


def test_the_timeout_counts_across_deferrals(store):
    from airflow_mlops.sensors.canary import CanaryAnalysisSensor

    registry = ModelRegistry(store, PIPELINE)
    for version in ("v1", "v2"):
        registry.register(version, status="blessed", metrics={}, lineage={}, reason="")
    registry.set_alias("production", "v1")
    registry.set_alias("canary", "v2", weight=10, since=time.time())
    sensor = CanaryAnalysisSensor(
        task_id="analysis", pipeline=PIPELINE, artifact_root=store.root_uri, steps=[10, 50], problem_type="regression"
    )
    step_passed = {
        "status": TriggerStatus.SUCCESS,
        "verdict": {"passed": True, "reason": "ok", "figures": {}, "version": "v2", "weight": 10},
    }
    deadline = time.time() + 100
    with pytest.raises(TaskDeferred) as deferred:  # the next step bakes: deferred again, within the same deadline
        sensor.execute_complete({}, step_passed, deadline=deadline)
    assert deferred.value.kwargs["deadline"] == deadline and deferred.value.timeout.total_seconds() <= 100
    assert registry.load()["aliases"]["canary"]["weight"] == 50
    with pytest.raises(AirflowSensorTimeout, match="analysis: timed out"):
        sensor.execute_complete(
            {}, {**step_passed, "verdict": {**step_passed["verdict"], "weight": 10}}, deadline=time.time() - 1
        )


def test_a_trigger_error_fails_the_task_with_its_message(store):
    with pytest.raises(Exception, match="wait failed: no credentials"):
        drift_sensor(store).execute_complete({}, {"status": TriggerStatus.ERROR, "message": "no credentials"})


def test_the_triggers_carry_the_artifact_store_connection(store):
    from airflow_mlops.sensors.canary import CanaryAnalysisSensor
    from airflow_mlops.sensors.drift import DriftDataSensor

    common = {"pipeline": PIPELINE, "mlops_conn_id": "team_artifacts", "deferrable": True}
    drift = DriftDataSensor(task_id="wait", min_rows=10, **common)
    canary = CanaryAnalysisSensor(task_id="analysis", steps=[10], problem_type="regression", **common)
    for sensor in (drift, canary):
        trigger = sensor.trigger()
        assert trigger.mlops_conn_id == "team_artifacts" and trigger.artifact_root is None
        assert type(trigger)(**trigger.serialize()[1]).serialize() == trigger.serialize()


@pytest.mark.parametrize("where", [{}, {"artifact_root": "/tmp/x", "mlops_conn_id": "team"}], ids=["neither", "both"])
def test_a_task_needs_exactly_one_place_for_the_store(where):
    from airflow_mlops.exceptions import MlopsError
    from airflow_mlops.operators.data import DataAcquisitionOperator
    from airflow_mlops.sensors.drift import DriftDataSensor

    with pytest.raises(MlopsError, match="wait: give artifact_root or mlops_conn_id"):
        DriftDataSensor(task_id="wait", pipeline=PIPELINE, **where)
    with pytest.raises(MlopsError, match="acquire: give artifact_root or mlops_conn_id"):
        DataAcquisitionOperator(task_id="acquire", pipeline=PIPELINE, source_uri="x.csv", **where)
