"""The monitor DAG with labels, run for real: concept drift (inputs as in training, labels changed for a segment)
is found by realized performance alone and files exactly one governed retrain request naming performance; the
training DAG that request starts retrains on the newer labelled export and its canary promotes the new model."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import run_dag
from test_canary import Traffic
from test_monitor_dag import send, wait_logged
from test_training_dag import churn_config, store_of, write_day, xcom

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.operators.retraining import retrain_asset
from airflow_mlops.store.events import read_events
from airflow_mlops.store.layout import report_prefix
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow
PIPELINE = "churn_perf"


def new_world(frame: pd.DataFrame) -> pd.Series:
    """Who churns since a new policy: the outcome of ``make_churn``'s rows flipped for month-to-month contracts."""
    return frame["churned"].where(frame["contract"] != "month-to-month", 1 - frame["churned"])


def export_labels(tmp_path, name: str, rows: int, seed: int) -> None:
    """The labels of the traffic ``send`` made from ``make_churn(rows, seed=seed)`` in the new world, plus a few ids
    never served."""
    frame = make_churn(rows, seed=seed)
    labels = pd.DataFrame({"customer_id": frame["customer_id"], "churned": new_world(frame)})
    unknown = pd.DataFrame({"customer_id": [f"never-served-{i}" for i in range(3)], "churned": 1})
    (tmp_path / "labels").mkdir(exist_ok=True)
    pd.concat([labels, unknown]).to_csv(tmp_path / "labels" / name, index=False)


def run_on_retrain_asset(dag, ds: str, request_id: str, monkeypatch):
    """Run ``dag`` as the scheduler starts it on a retrain Asset event: an asset-triggered run without a logical
    date, queued for ``ds``, that consumed the event of ``request_id``; returns (run, {task_id: state})."""
    from datetime import UTC, datetime

    import airflow.models.dagrun as dagrun
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    create = dagrun.get_or_create_dagrun  # what dag.test() calls to make its run

    def asset_triggered(**kwargs):
        run, session = create(**kwargs), kwargs["session"]
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        events = session.scalars(query.where(AssetModel.name == retrain_asset(PIPELINE).name)).all()
        mine = [e for e in events if (e.extra or {}).get("request_id") == request_id]
        run.run_type, run.consumed_asset_events = DagRunType.ASSET_TRIGGERED, mine[-1:]  # a kept DB: the newest
        session.commit()
        return run

    monkeypatch.setattr(dagrun, "get_or_create_dagrun", asset_triggered)
    run = dag.test(logical_date=None, run_after=datetime.fromisoformat(ds).replace(tzinfo=UTC))
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


class TestPerformanceMonitor:
    def test_concept_drift_files_one_retrain_request_naming_performance_and_the_retrain_is_promoted(
        self, pipeline, tmp_path, model_server, monkeypatch
    ):
        config, training = pipeline(
            churn_config(
                PIPELINE,
                tmp_path,
                schedule="@daily",
                monitor={
                    "min_rows": 300,
                    "cooldown_hours": 1,
                    "check_seconds": 0.5,
                    "labels": {"uri": "labels/*.csv", "id_column": "customer_id"},  # relative to the YAML file
                    "performance": {"min_labels": 200, "max_drop": 0.05},
                },
                canary={"steps": [50], "min_requests": 60, "bake_minutes": 2, "check_seconds": 0.5, "watch": {"minutes": 0}},
            )
        )
        monitor = pipeline.monitor
        write_day(tmp_path, "2026-11-01", make_churn(2500, seed=1))
        run, _ = run_dag(training, "2026-11-01")
        assert run.state == "success"
        v1 = xcom(run, "training.train")["model_version"]
        store = store_of(config)
        client = model_server(store.root_uri, PIPELINE)

        requests = []
        for runs, (day, seed) in enumerate((("2026-11-02", 11), ("2026-11-03", 12)), start=1):  # each with new labels
            send(client, 400, drift=0.0, seed=seed)
            wait_logged(store, PIPELINE, 400)
            export_labels(tmp_path, f"{day}.csv", 400, seed)
            monitored, states = run_dag(monitor, day)
            assert not xcom(monitored, "drift_check")["drifted"], "the inputs did not move"
            ingest = xcom(monitored, "ingest_labels")
            assert (ingest["files"], ingest["joined"], ingest["unknown"]) == (1, 400, 3), ingest
            check = xcom(monitored, "performance_check")
            assert check["dropped"] and check["trigger"] == "realized", check["reason"]
            assert check["labels"] in {400, 400 * runs}, "the window's labels so far (a new window after UTC midnight)"
            assert check["drop"]["interval"][0] > 0.05
            requests.append(states["request_retrain"])
            assert states["no_retrain"] == "skipped" and states["performance_check"] == "success", states

        assert requests == ["success", "skipped"], "the second drop finds the first request still open"
        [request] = [e for e in read_events(store, PIPELINE) if e["kind"] == "retrain_request"]
        assert request["reason"].startswith("performance: roc_auc ") and "realized vs reference" in request["reason"]
        assert "400 labels" in request["reason"] and "interval" in request["reason"] and "window" in request["reason"]
        assert request["details"]["performance"]["metric"] == "roc_auc"
        checks = [e for e in read_events(store, PIPELINE) if e["kind"] == "performance_check"]
        assert len(checks) == 2 and all(e["dropped"] for e in checks), "every check is recorded"

        # The request starts the training DAG (its retrain Asset): it retrains on the newer labelled export, which
        # passes validation as configured (defaults), and its canary on the live server, fed the new world's labels,
        # promotes the new model: it scores them better than the production model it replaces.
        fresh = make_churn(2500, seed=13)
        write_day(tmp_path, "2026-11-04", fresh.assign(churned=new_world(fresh)))
        with Traffic(client, seed=21, labels=True, outcome=new_world) as traffic:
            retrain, states = run_on_retrain_asset(training, "2026-11-04", request["event_id"], monkeypatch)
        assert retrain.state == "success", states
        assert set(traffic.statuses) == {200}
        assert states["data.validate"] == "success" and states["registry.bless"] == "success", states
        report = store.read_json(f"{report_prefix(PIPELINE, retrain.run_id)}/validation.json")
        assert not report["anomalies"] and {w["kind"] for w in report["warnings"]} == {"label_association"}, report
        assert any("performance drop (concept drift)" in n for n in report["notes"]), "the new relation is expected"
        assert states["deploy.promote"] == "success" and states["deploy.rollback"] == "skipped", states
        v2 = xcom(retrain, "training.train")["model_version"]
        assert v2 != v1
        registry = ModelRegistry(store, PIPELINE)
        lineage = registry.get(v2)["lineage"]
        assert lineage["source"].endswith("2026-11-04.csv"), "the run queued for the 4th read that day's export"
        assert lineage["retrain_request"]["request_id"] == request["event_id"], "why v2 was trained"
        assert lineage["retrain_request"]["reason"] == request["reason"]
        assert registry.production() == v2

        events = read_events(store, PIPELINE)
        [promoted] = [e for e in events if e["kind"] == "promote" and e["version"] == v2]
        assert promoted["previous_production"] == v1
        assert promoted["figures"]["label_quality_ratio"] > 1.0, "v2 scores the new world's labels better than v1"
        assert promoted["figures"]["label_quality"]["ratio_interval"][0] > 1.0, "with 95% confidence"
        assert not [e for e in events if e["kind"] == "rollback"]
        [closed] = [e for e in events if e["kind"] == "retrain_done"]
        assert closed["request_id"] == request["event_id"] and closed["model_version"] == v2
        assert closed["status"] == "promoted", "the request is closed with the canary's outcome"
