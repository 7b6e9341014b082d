"""The monitor DAG on real logged traffic: drift found and named, one governed retrain request."""

from __future__ import annotations

import pytest
from conftest import run_dag
from test_training_dag import churn_config, store_of, write_day, xcom

from airflow_mlops.ml.synthetic import as_requests, make_churn
from airflow_mlops.stages.monitoring import new_logged_rows
from airflow_mlops.stages.retraining import close_retrain_request, request_retrain
from airflow_mlops.store.events import read_events

pytestmark = pytest.mark.slow


def send(client, rows: int, *, drift: float, seed: int) -> None:
    records = as_requests(make_churn(rows, seed=seed, drift=drift))
    for i in range(0, len(records), 100):
        assert client.post("/predict", json={"instances": records[i : i + 100]}).status_code == 200


def wait_logged(store, pipeline: str, rows: int) -> None:
    import time

    deadline = time.monotonic() + 20
    while new_logged_rows(store, pipeline) < rows:
        assert time.monotonic() < deadline, "predictions were not logged"
        time.sleep(0.3)


def recorded_requests(store) -> list[dict]:
    return [e for e in read_events(store, "churn_monitor") if e["kind"] == "retrain_request"]


class TestMonitorDag:
    def test_drift_requests_retraining_once_with_its_reason(self, pipeline, tmp_path, model_server):
        from airflow.models.asset import AssetEvent
        from airflow.utils.session import create_session

        config, training = pipeline(
            churn_config(
                "churn_monitor",
                tmp_path,
                schedule="@daily",
                monitor={
                    "min_rows": 300,
                    "cooldown_hours": 1,
                    "check_seconds": 0.5,
                    "drift": {"column_threshold": 0.2, "share_threshold": 0.3},
                },
            )
        )
        monitor = pipeline.monitor
        assert type(training.timetable).__name__ == "AssetOrTimeSchedule", "cron OR the retrain Asset"
        write_day(tmp_path, "2026-11-01", make_churn(2500, seed=1))
        run, train_states = run_dag(training, "2026-11-01")
        assert run.state == "success"
        assert train_states["outcome.close_request"] == "success", "closes triggering requests however the run ends"
        store = store_of(config)
        client = model_server(store.root_uri, "churn_monitor")

        # Traffic like the training data: no drift.
        send(client, 400, drift=0.0, seed=11)
        wait_logged(store, "churn_monitor", 400)
        calm, states = run_dag(monitor, "2026-11-02")
        assert calm.state == "success" and states["no_drift"] == "success" and states["request_retrain"] == "skipped", states
        assert xcom(calm, "drift_check")["drifted"] is False

        # A request recorded by a task killed before Airflow emitted its Asset event: it must not block the next.
        request_retrain(store, "churn_monitor", reason="drift: lost", details={}, cooldown_hours=1, run_id="killed")

        # Drifting traffic: drift found, the columns named, one request recorded and an Asset event emitted.
        send(client, 400, drift=1.0, seed=12)
        wait_logged(store, "churn_monitor", 400)
        drifted, states = run_dag(monitor, "2026-11-03")
        assert states["request_retrain"] == "success", states
        [lost] = [e for e in read_events(store, "churn_monitor") if e["kind"] == "retrain_done"]
        assert (lost["request_id"], lost["status"]) == ("retrain-killed", "lost"), "closed: its event was never emitted"
        check = xcom(drifted, "drift_check")
        assert check["drifted"] and {"monthly_charges", "contract"} <= set(check["drifted_columns"])
        assert check["rows"] == 400, "only rows logged since the last check"
        html = store.read_text(check["report_uri"].split("/artifacts/", 1)[1])
        assert "monthly_charges" in html and "root_metric" in html, "the evidently report renders the columns"
        requests = [r for r in recorded_requests(store) if r["event_id"] != "retrain-killed"]
        assert len(requests) == 1 and "monthly_charges" in requests[0]["reason"]
        with create_session() as session:
            events = session.query(AssetEvent).all()
            mine = [e for e in events if (e.extra or {}).get("request_id") == requests[0]["event_id"]]
        assert mine and "drift" in mine[0].extra["reason"]

        # More drift while the request is open: no second request.
        send(client, 400, drift=1.0, seed=13)
        wait_logged(store, "churn_monitor", 400)
        _, states = run_dag(monitor, "2026-11-04")
        assert states["request_retrain"] == "skipped", states
        assert len(recorded_requests(store)) == 2

        # The training run closes it; the cooldown still holds back a new one.
        close_retrain_request(store, "churn_monitor", requests[0]["event_id"], model_version="x", status="blessed")
        send(client, 400, drift=1.0, seed=14)
        wait_logged(store, "churn_monitor", 400)
        _, states = run_dag(monitor, "2026-11-05")
        assert states["request_retrain"] == "skipped", states
        assert len(recorded_requests(store)) == 2
