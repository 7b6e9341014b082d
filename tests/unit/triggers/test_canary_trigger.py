import asyncio
import time

import pytest

from airflow_mlops.config.deployment import CanaryAnalysisConfig
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry
from airflow_mlops.triggers.canary import DeploymentCheckTrigger, TriggerStatus

KWARGS = {
    "artifact_root": "file:///tmp/x",
    "aws_conn_id": None,
    "mlops_conn_id": "mlops_default",
    "pipeline": "churn",
    "check": "canary_check",
    "arguments": {
        "task": "classification",
        "min_requests": 10,
        "bake_seconds": 60.0,
        "criteria": CanaryAnalysisConfig(max_prediction_divergence=0.3).model_dump(),
    },
    "poll_seconds": 0.1,
}


class TestDeploymentCheckTrigger:
    def test_serialize_round_trip(self):
        path, kwargs = DeploymentCheckTrigger(**KWARGS).serialize()
        assert path == "airflow_mlops.triggers.canary.DeploymentCheckTrigger"
        assert kwargs == KWARGS
        assert DeploymentCheckTrigger(**kwargs).serialize() == (path, kwargs)

    def test_only_the_deployment_checks_can_be_polled(self):
        with pytest.raises(MlopsError, match="Unknown deployment check 'read_log'"):
            DeploymentCheckTrigger(**{**KWARGS, "check": "read_log"})

    def test_the_watch_fires_when_the_promoted_model_is_no_longer_production(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        registry = ModelRegistry(store, "churn")
        for v in ("prod", "cand"):
            registry.register(v, status="blessed", metrics={}, lineage={}, reason="")
        registry.set_alias("production", "prod")
        arguments = {"task": "classification", "version": "cand", "watch_seconds": 60.0, "min_requests": 10}
        arguments["criteria"] = KWARGS["arguments"]["criteria"]
        trigger = DeploymentCheckTrigger(
            **{**KWARGS, "artifact_root": store.root_uri, "check": "promotion_watch_check", "arguments": arguments}
        )

        async def first():
            return await anext(trigger.run())

        verdict = asyncio.run(first()).payload["verdict"]
        assert verdict["passed"] and verdict["reason"] == "cand is no longer production (prod is): nothing to watch"

    def test_run_yields_a_failed_verdict_when_the_bake_time_passes_without_traffic(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        registry = ModelRegistry(store, "churn")
        for v in ("prod", "cand"):
            registry.register(v, status="blessed", metrics={}, lineage={}, reason="")
        registry.set_alias("production", "prod")
        registry.set_alias("canary", "cand", weight=10, since=time.time() - 120)
        trigger = DeploymentCheckTrigger(**{**KWARGS, "artifact_root": store.root_uri})

        async def first():
            return await anext(trigger.run())

        event = asyncio.run(first())
        assert event.payload["status"] == TriggerStatus.SUCCESS
        assert event.payload["verdict"]["passed"] is False
        assert "no traffic" in event.payload["verdict"]["reason"]

    def test_run_reports_errors_with_a_traceback(self):
        trigger = DeploymentCheckTrigger(**{**KWARGS, "artifact_root": "gs://unsupported"})

        async def first():
            return await anext(trigger.run())

        event = asyncio.run(first())
        assert event.payload["status"] == TriggerStatus.ERROR and "Traceback" in event.payload["traceback"]


class TestPredictionRowsTrigger:
    def test_serialize_round_trip_and_fires_on_enough_rows(self, tmp_path):
        import io

        import pandas as pd

        from airflow_mlops.triggers.drift import PredictionRowsTrigger

        store = ArtifactStore.from_uri(str(tmp_path))
        kwargs = {"artifact_root": store.root_uri, "aws_conn_id": None, "mlops_conn_id": None, "pipeline": "churn", "min_rows": 3}
        kwargs["poll_seconds"] = 0.05
        path, data = PredictionRowsTrigger(**kwargs).serialize()
        assert path == "airflow_mlops.triggers.drift.PredictionRowsTrigger" and data == kwargs
        buffer = io.BytesIO()
        pd.DataFrame({"_ts": [time.time()] * 3, "_id": ["a", "b", "c"], "_version": ["v"] * 3}).to_parquet(buffer)
        store.write_bytes(f"predictions/churn/{time.strftime('%Y-%m-%d', time.gmtime())}/part-1.parquet", buffer.getvalue())

        async def first():
            return await anext(PredictionRowsTrigger(**data).run())

        event = asyncio.run(first())
        assert event.payload["status"] == TriggerStatus.SUCCESS and event.payload["rows"] == 3
