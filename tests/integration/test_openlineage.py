"""OpenLineage facets of acquire, train and register, sent through the openlineage provider's console transport
under a real DAG run (its own process: the provider reads its transport when Airflow starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import DAGS
from test_training_dag import churn_config, write_day

from airflow_mlops.ml.synthetic import make_churn

pytestmark = pytest.mark.slow

RUN = """
import runpy, sys
from datetime import datetime, timezone
dag = runpy.run_path(sys.argv[1])["training"]
run = dag.test(logical_date=datetime(2026, 11, 1, tzinfo=timezone.utc))
print("RUN STATE", run.state)
"""


def test_acquire_train_and_register_report_their_datasets(pipeline, tmp_path):
    pipeline(churn_config("churn_ol", tmp_path))  # writes the DAG file into the DAG folder (dag.test needs it there)
    write_day(tmp_path, "2026-11-01", make_churn(800, seed=1))
    env = {**os.environ, "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "console"}), "OPENLINEAGE_DISABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(DAGS / "test_churn_ol.py")], env=env, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert "RUN STATE success" in output, output[-5000:]
    decoder = json.JSONDecoder()  # each event is logged as one JSON object followed by the logger's own fields
    events = [decoder.raw_decode(line[line.index("{") :])[0] for line in output.splitlines() if '"eventType": "COMPLETE"' in line]
    by_task = {e["job"]["name"].rsplit(".", 2)[-1]: e for e in events}
    artifacts = f"{tmp_path / 'artifacts'}"

    def names(event, side):
        return [(d["namespace"], d["name"]) for d in event[side]]

    acquire, train, bless = by_task["acquire"], by_task["train"], by_task["bless"]
    assert names(acquire, "inputs") == [("file", str(tmp_path / "data" / "2026-11-01.csv"))]
    [(namespace, snapshot)] = names(acquire, "outputs")
    assert namespace == "file" and snapshot.startswith(f"{artifacts}/datasets/churn_ol/")
    [(_, features)] = names(train, "inputs")
    [(_, model)] = names(train, "outputs")
    assert features.startswith(f"{artifacts}/features/churn_ol/") and model.startswith(f"{artifacts}/models/churn_ol/")
    assert names(bless, "inputs") == [("file", model)] and names(bless, "outputs") == [
        ("file", f"{artifacts}/registry/churn_ol.json")
    ]
