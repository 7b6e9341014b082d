"""Drift and canary waits on an S3 artifact root whose endpoint and credentials exist only in an Airflow AWS connection.

boto3's default credential chain finds nothing here (no AWS_* variables, no shared files, no instance metadata), so
every S3 call below succeeds only because the sensors and triggers open the store through ``aws_conn_id``.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import threading
import time

import numpy as np
import pytest
from airflow.sdk.exceptions import TaskDeferred
from botocore.exceptions import NoCredentialsError
from conftest import DAGS, run_dag
from test_training_dag import xcom

from airflow_mlops.config.deployment import CanaryAnalysisConfig
from airflow_mlops.hooks.artifact_store import ArtifactStoreHook
from airflow_mlops.sensors.canary import CanaryAnalysisSensor
from airflow_mlops.sensors.drift import DriftDataSensor
from airflow_mlops.serving.predlog import PredictionLog, prediction_row
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry
from airflow_mlops.triggers import TriggerStatus
from airflow_mlops.triggers.canary import DeploymentCheckTrigger
from airflow_mlops.triggers.drift import PredictionRowsTrigger

pytestmark = pytest.mark.slow

PIPELINE = "churn_conn"
CANARY = {"pipeline": PIPELINE, "problem_type": "classification", "min_requests": 20}
"""What the canary trigger and sensor share: a step ends after 20 canary requests (the bake time is long)."""


@pytest.fixture
def s3_root(s3_bucket, aws_connection, monkeypatch, tmp_path) -> str:
    """``s3://<bucket>/mlops`` on the moto server, reachable only through the ``aws_connection`` connection."""
    import boto3

    for name in list(os.environ):
        if name.startswith("AWS_") or name == "MLOPS_S3_ENDPOINT_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    # The default session made by earlier boto3.client() calls (the s3_bucket fixture) keeps the credentials it found.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    root = f"s3://{s3_bucket[1]}/mlops"
    with pytest.raises(NoCredentialsError):
        ArtifactStore.from_uri(root).list("")  # the old way: boto3's default chain
    return root


def conn_store(root: str, aws_connection: str) -> ArtifactStore:
    return ArtifactStoreHook(artifact_root=root, aws_conn_id=aws_connection).get_store()


def log_rows(store: ArtifactStore, version: str, n: int, *, errors: int = 0, tag: str = "") -> list[dict]:
    """Write ``n`` prediction-log rows of ``version`` (the first ``errors`` failed, each row its own request) as one
    Parquet part through ``store``; returns the rows."""
    rows = []
    for i in range(n):
        row_id, prediction = f"{version}{tag}-{i}", None if i < errors else (i % 10) / 10
        row = prediction_row(
            row_id=row_id, version=version, prediction=prediction, latency_ms=10.0 + i % 5, request_id=row_id, features={}
        )
        rows.append(row)
    plog = PredictionLog(store, PIPELINE)
    plog.append(rows)
    plog.flush()
    return rows


def side(rows: list[dict]) -> dict:
    """The figures the canary analysis must report for one version's rows (one scoring call per row)."""
    ok = [r["_prediction"] for r in rows if not r["_error"]]
    return {
        "requests": len(rows),
        "error_rate": sum(r["_error"] for r in rows) / len(rows),
        "p95_latency_ms": float(np.percentile([r["_latency_ms"] for r in rows], 95)),
        "mean_prediction": float(np.mean(ok)),
    }


def assert_side(figures: dict, rows: list[dict]) -> None:
    assert {k: figures[k] for k in ("requests", "error_rate", "p95_latency_ms", "mean_prediction")} == pytest.approx(side(rows))


async def first_event_after(trigger, write, *, settle: float = 0.5):
    """Start ``trigger``; check that it is still waiting after ``settle`` seconds; run ``write`` (in a thread)
    and return the first event."""

    async def first():
        return await anext(trigger.run())

    pending = asyncio.create_task(first())
    await asyncio.sleep(settle)
    assert not pending.done(), f"fired before the data was there: {pending.result().payload}"
    await asyncio.to_thread(write)
    return await asyncio.wait_for(pending, 30)


class TestDriftWait:
    def test_trigger_and_sensor_count_rows_through_the_connection(self, s3_root, aws_connection):
        store = conn_store(s3_root, aws_connection)
        kwargs = {"artifact_root": s3_root, "pipeline": PIPELINE, "min_rows": 50}

        # Without the connection the trigger meets the empty default chain and reports it as an error event.
        event = asyncio.run(anext(PredictionRowsTrigger(aws_conn_id=None, poll_seconds=0.05, **kwargs).run()))
        assert event.payload["status"] == TriggerStatus.ERROR and "credentials" in event.payload["message"]

        sensor = DriftDataSensor(task_id="wait", aws_conn_id=aws_connection, deferrable=False, **kwargs)
        assert sensor.poke({}).is_done is False
        log_rows(store, "v1", 30)
        assert sensor.poke({}).is_done is False, "30 of 50 rows"

        trigger = PredictionRowsTrigger(aws_conn_id=aws_connection, poll_seconds=0.05, **kwargs)
        event = asyncio.run(first_event_after(trigger, lambda: log_rows(store, "v1", 25, tag="b")))
        assert event.payload == {"status": TriggerStatus.SUCCESS, "message": "55 new logged predictions", "rows": 55}
        assert (sensor.poke({}).is_done, sensor.poke({}).xcom_value) == (True, 55)
        assert DriftDataSensor(task_id="fresh", aws_conn_id=aws_connection, deferrable=False, **kwargs).poke({}).is_done


class TestCanaryWait:
    def test_trigger_verdict_and_sensor_steps_through_the_connection(self, s3_root, aws_connection):
        store = conn_store(s3_root, aws_connection)
        registry = ModelRegistry(store, PIPELINE)
        for version in ("v1", "v2"):
            registry.register(version, status="blessed", metrics={}, lineage={}, reason="test")
        registry.set_alias("production", "v1")
        log_rows(store, "v1", 15, errors=15, tag="old")  # before the canary step: outside its window
        time.sleep(0.01)
        registry.set_alias("canary", "v2", weight=25, since=time.time())
        production = log_rows(store, "v1", 60, errors=3)
        canary = log_rows(store, "v2", 10, errors=1)

        criteria = CanaryAnalysisConfig().model_dump()
        trigger = DeploymentCheckTrigger(
            artifact_root=s3_root,
            aws_conn_id=aws_connection,
            pipeline=PIPELINE,
            check="canary_check",
            arguments={
                "task": "classification",
                "min_requests": CANARY["min_requests"],
                "bake_seconds": 3600,
                "criteria": criteria,
            },
            poll_seconds=0.05,
        )
        event = asyncio.run(first_event_after(trigger, lambda: canary.extend(log_rows(store, "v2", 10, tag="b"))))
        assert event.payload["status"] == TriggerStatus.SUCCESS, event.payload
        verdict = event.payload["verdict"]
        assert verdict["passed"] is True, verdict["reason"]
        assert (verdict["version"], verdict["production"], verdict["weight"]) == ("v2", "v1", 25)
        assert_side(verdict["figures"]["canary"], canary)
        assert_side(verdict["figures"]["production"], production)
        assert verdict["figures"]["canary"]["error_rate"] == 0.05 and verdict["figures"]["production"]["requests"] == 60

        sensor = CanaryAnalysisSensor(
            task_id="canary",
            artifact_root=s3_root,
            aws_conn_id=aws_connection,
            steps=[25, 50],
            bake_minutes=60,
            deferrable=False,
            **CANARY,
        )
        # Step 25 passes (the trigger's figures) and the canary moves on to 50%: not done yet.
        step = sensor.poke({})
        assert (step.is_done, step.xcom_value) == (False, None)
        analyses = [e for e in read_events(store, PIPELINE) if e["kind"] == "canary_analysis"]
        assert [(e["version"], e["weight"], e["passed"]) for e in analyses] == [("v2", 25, True)]
        assert analyses[0]["figures"] == verdict["figures"]
        assert registry.load()["aliases"]["canary"]["weight"] == 50
        assert [e["weight"] for e in read_events(store, PIPELINE) if e["kind"] == "canary_step"] == [50]
        assert sensor.poke({}).is_done is False, "no traffic yet at 50%"

        production, canary = log_rows(store, "v1", 20, tag="c"), log_rows(store, "v2", 20, tag="c")
        done = sensor.poke({})
        assert done.is_done is True
        decision = done.xcom_value
        assert (decision["decision"], decision["version"], decision["weight"], decision["passed"]) == ("promote", "v2", 50, True)
        assert_side(decision["figures"]["canary"], canary)
        assert_side(decision["figures"]["production"], production)
        analyses = [e for e in read_events(store, PIPELINE) if e["kind"] == "canary_analysis"]
        assert [(e["weight"], e["passed"]) for e in analyses] == [(25, True), (50, True)]

    def test_sensor_rolls_back_a_failing_canary(self, s3_root, aws_connection):
        store = conn_store(s3_root, aws_connection)
        registry = ModelRegistry(store, PIPELINE)
        for version in ("v1", "v2"):
            registry.register(version, status="blessed", metrics={}, lineage={}, reason="test")
        registry.set_alias("production", "v1")
        registry.set_alias("canary", "v2", weight=10, since=time.time())
        log_rows(store, "v1", 40)
        canary = log_rows(store, "v2", 20, errors=5)
        sensor = CanaryAnalysisSensor(
            task_id="canary",
            artifact_root=s3_root,
            aws_conn_id=aws_connection,
            steps=[10, 50],
            bake_minutes=60,
            deferrable=False,
            **CANARY,
        )
        done = sensor.poke({})
        assert done.is_done is True and done.xcom_value["decision"] == "rollback"
        assert "error rate 0.250" in done.xcom_value["reason"]
        assert_side(done.xcom_value["figures"]["canary"], canary)
        assert registry.load()["aliases"]["canary"]["weight"] == 10, "a failed step never moves on"


DAG_FILE = """from airflow.sdk import DAG

from airflow_mlops.sensors.drift import DriftDataSensor

with DAG({dag_id!r}, schedule=None) as dag:
    DriftDataSensor(
        task_id="wait_for_predictions", pipeline={pipeline!r}, artifact_root={root!r}, aws_conn_id={conn!r},
        min_rows={rows}, poke_interval=0.1, timeout=120, deferrable=True,
    )
"""


class TestDeferredDriftWaitInADagRun:
    def test_deferred_sensor_resumes_from_the_trigger_event(self, airflow_db, s3_root, aws_connection):
        from airflow.models import import_all_models
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        dag_id = "mlops_store_connection_drift"
        dag_file = DAGS / f"test_{dag_id}.py"
        dag_file.write_text(DAG_FILE.format(dag_id=dag_id, pipeline=PIPELINE, root=s3_root, conn=aws_connection, rows=40))
        store = conn_store(s3_root, aws_connection)
        deferred = threading.Event()

        def deferred_ti() -> TaskInstance | None:
            with create_session() as session:
                query = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id="wait_for_predictions")
                return query.filter(TaskInstance.next_method == "execute_complete").one_or_none()

        def write_once_deferred() -> None:
            # Rows arrive only after the sensor has handed its wait to the trigger.
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline and not deferred.is_set():
                    if deferred_ti() is not None:
                        deferred.set()
                    time.sleep(0.1)
            finally:
                log_rows(store, "v1", 40)

        # Import and map every model here first: the thread's first query would otherwise import them while
        # dag.test() imports them too, and the two deadlock on the import and mapper locks.
        import_all_models()
        assert deferred_ti() is None

        writer = threading.Thread(target=write_once_deferred, daemon=True)
        try:
            dag = runpy.run_path(str(dag_file))["dag"]
            writer.start()
            run, states = run_dag(dag, "2026-11-01")
        finally:
            dag_file.unlink(missing_ok=True)
            writer.join(timeout=70)
        assert run.state == "success", states
        assert deferred.is_set(), "the sensor deferred before the rows existed"
        assert xcom(run, "wait_for_predictions") == 40, "execute_complete returns the trigger event's row count"


class TestSourceWait:
    def test_an_s3_prefix_is_waited_for_through_the_connection(self, s3_root, aws_connection):
        from airflow_mlops.sensors.data import SourceWaitSensor

        prefix = f"{s3_root.rsplit('/', 1)[0]}/exports/2026-11-03/"
        wait = SourceWaitSensor(
            task_id="wait_for_source",
            pipeline=PIPELINE,
            artifact_root=s3_root,
            source_uri=prefix,
            source_aws_conn_id=aws_connection,
            deferrable=True,
            poke_interval=0.05,
        )
        with pytest.raises(TaskDeferred) as deferred:
            wait.execute({})
        assert deferred.value.trigger.aws_conn_id == aws_connection

        def land() -> None:
            bucket, _, key = prefix.removeprefix("s3://").partition("/")
            conn_store(s3_root, aws_connection).client.put_object(Bucket=bucket, Key=f"{key}part-0.csv", Body=b"a\n1\n")

        event = asyncio.run(first_event_after(deferred.value.trigger, land))
        assert event.payload["status"] == TriggerStatus.SUCCESS and event.payload["files"] == 1, event.payload
        assert wait.execute_complete({}, event.payload) == {"source": prefix, "files": 1}
