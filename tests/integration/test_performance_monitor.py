"""The monitor DAG with labels, run for real: concept drift (inputs as in training, labels changed for a segment)
is found by realized performance alone and files exactly one governed retrain request naming performance."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import run_dag
from test_monitor_dag import send, wait_logged
from test_training_dag import churn_config, store_of, write_day, xcom

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.store.events import read_events

pytestmark = pytest.mark.slow
PIPELINE = "churn_perf"


def export_labels(tmp_path, name: str, rows: int, seed: int) -> None:
    """The labels of the traffic ``send`` made from ``make_churn(rows, seed=seed)``, with the outcome flipped for
    month-to-month contracts (a new policy changed who churns there), plus a few ids never served."""
    frame = make_churn(rows, seed=seed)
    churned = frame["churned"].where(frame["contract"] != "month-to-month", 1 - frame["churned"])
    labels = pd.DataFrame({"customer_id": frame["customer_id"], "churned": churned})
    unknown = pd.DataFrame({"customer_id": [f"never-served-{i}" for i in range(3)], "churned": 1})
    (tmp_path / "labels").mkdir(exist_ok=True)
    pd.concat([labels, unknown]).to_csv(tmp_path / "labels" / name, index=False)


class TestPerformanceMonitor:
    def test_concept_drift_files_one_retrain_request_naming_performance(self, pipeline, tmp_path, model_server):
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
            )
        )
        monitor = pipeline.monitor
        write_day(tmp_path, "2026-11-01", make_churn(2500, seed=1))
        run, _ = run_dag(training, "2026-11-01")
        assert run.state == "success"
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
