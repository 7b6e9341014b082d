"""The whole loop with Airflow's own services: `make demo`'s script under a scheduler, a triggerer and
the REST API, with the model server taking real traffic. Asserts what each step left behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_drift_in_served_traffic_retrains_and_the_new_model_goes_through_the_canary(tmp_path):
    home = tmp_path / "airflow"  # what the run writes is its own (the team test may run beside it): home and exports
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_", "DEMO_"))}
    env |= {"AIRFLOW_HOME": str(home), "DEMO_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]

    with sqlite3.connect(home / "airflow.db") as db:
        runs = dict(db.execute("select run_type, state from dag_run where dag_id = 'mlops_churn_training'").fetchall())
    assert runs == {"scheduled": "success", "asset_triggered": "success"}, "v1 from the cron, v2 from the retrain Asset"

    store = ArtifactStore.from_uri(f"file://{home / 'mlops'}")
    events = read_events(store, "churn")
    kinds = [e["kind"] for e in events]
    checks = [e for e in events if e["kind"] == "drift_check"]
    drifted = [c["drifted"] for c in checks]
    # More checks run when the demo crosses the top of an hour (the monitor is hourly): two of the calm traffic when
    # two hourly runs wait for it, or one more of the drifting traffic.
    assert True in drifted and drifted == sorted(drifted) and drifted[0] is False, f"calm traffic, then drift: {drifted}"
    assert kinds.count("retrain_request") == 1, "one request, however many checks see drift"
    request = next(e for e in events if e["kind"] == "retrain_request")
    assert set(request["details"]["columns"]) >= {"monthly_charges", "tenure_months"}

    doc = ModelRegistry(store, "churn").load()
    v1 = next(v for v, e in doc["versions"].items() if "retrain_request" not in e["lineage"])
    v2 = next(v for v, e in doc["versions"].items() if "retrain_request" in e["lineage"])
    assert doc["versions"][v2]["lineage"]["retrain_request"]["reason"] == request["reason"], "the reason is in v2's lineage"
    # v2 learned from the shifted population, which churns for reasons v1 never saw (ml/synthetic.py): on the
    # drifting traffic with its labels it must beat v1 (label quality ratio 1.10 to 1.12 measured), so the canary promotes.
    decision = next(e for e in reversed(events) if e["kind"] in ("promote", "rollback"))
    assert decision["kind"] == "promote" and decision["version"] == v2, decision["reason"]
    assert decision["figures"]["label_quality_ratio"] > 1.0, "v2 scores the shifted population's labels better than v1"
    assert [e["weight"] for e in events if e["kind"] == "canary_step"] == [20, 50], "the canary goes through every step"
    closed = next(e for e in events if e["kind"] == "retrain_done")
    assert closed["request_id"] == request["event_id"] and closed["model_version"] == v2
    assert closed["status"] == "promoted", "the request is closed with the canary's outcome"
    assert doc["aliases"]["production"]["version"] == v2 and doc["previous_production"] == v1
    assert "canary" not in doc["aliases"], "the canary alias is cleared after the decision"
    assert "summary" in done.stdout and "v2 promoted" in done.stdout
