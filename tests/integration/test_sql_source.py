"""A SQL source (``source: {sql, conn_id}``) read through the common-sql DbApiHook of an Airflow connection, for real
on the machine's PostgreSQL, in a database of the test's own."""

from __future__ import annotations

import io
import os
import subprocess

import pytest
from conftest import run_dag

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import load_dataset

pytestmark = pytest.mark.slow

PASSWORD = "pw-n0t-in-any-log"
COLUMNS = {
    "customer_id": "text",
    "tenure_months": "double precision",
    "monthly_charges": "double precision",
    "support_calls": "bigint",
    "data_usage_gb": "double precision",
    "contract": "text",
    "payment_method": "text",
    "region": "text",
    "churned": "bigint",
    "day": "text",
}
QUERY = "select * from churn where day = '{{ ds }}' order by customer_id"


@pytest.fixture
def database():
    """A PostgreSQL database of this test's own, dropped afterwards, passed or not."""
    db = f"mlops_sql_{os.getpid()}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc"]
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=True, capture_output=True)
    subprocess.run([*psql, f"CREATE DATABASE {db}"], check=True, capture_output=True)
    yield db
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=False, capture_output=True)


@pytest.fixture
def churn_table(database, monkeypatch):
    """``load(frame, day)`` adds churn rows to table ``churn``; returns the connection id (env var, URI form)."""
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database) as conn, conn.cursor() as cur:
        cur.execute("create table churn (" + ", ".join(f"{c} {t}" for c, t in COLUMNS.items()) + ")")

    def load(frame, day: str) -> None:
        buffer = io.StringIO()
        frame.assign(day=day)[list(COLUMNS)].to_csv(buffer, index=False)
        buffer.seek(0)
        with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database) as conn, conn.cursor() as cur:
            cur.copy_expert("copy churn from stdin with (format csv, header)", buffer)

    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_TEST_PG", f"postgres://postgres:{PASSWORD}@127.0.0.1:5432/{database}")
    load.conn_id = "mlops_test_pg"
    return load


def test_a_query_gives_the_rows_and_the_same_dataset_id_as_their_csv(churn_table, tmp_path):
    from airflow_mlops.operators.data import query_batches
    from airflow_mlops.stages.data import acquire, acquire_batches

    frame = make_churn(1500, seed=3).sort_values("customer_id", ignore_index=True)
    churn_table(frame, "2026-11-01")
    churn_table(make_churn(200, seed=4), "2026-11-02")
    store = ArtifactStore.from_uri(str(tmp_path / "artifacts"))
    query = QUERY.replace("{{ ds }}", "2026-11-01")

    def from_sql(name: str) -> dict:
        # 400-row chunks: four fetches and a batch across the row groups
        return acquire_batches(
            store, "churn", f"sql:{churn_table.conn_id}: {query}", query_batches(churn_table.conn_id, query, 400, name=name)
        )

    first, again = from_sql("a"), from_sql("b")
    assert first["created"] and not again["created"]
    assert first["dataset_id"] == again["dataset_id"] and first["rows"] == 1500
    stored = load_dataset(store, "churn", first["dataset_id"])
    expected = frame.assign(day="2026-11-01")
    assert stored[sorted(expected.columns)].equals(expected[sorted(expected.columns)])
    frame.assign(day="2026-11-01").to_csv(tmp_path / "day.csv", index=False)
    assert acquire(store, "csv", str(tmp_path / "day.csv"))["dataset_id"] == first["dataset_id"]
    assert PASSWORD not in str(first)


def test_the_training_dag_reads_a_query_and_no_log_holds_the_password(churn_table, pipeline, tmp_path, caplog, capfd):
    from test_training_dag import TRAINING_TASKS, churn_config

    churn_table(make_churn(1200, seed=5), "2026-11-01")
    churn_table(make_churn(300, seed=6), "2026-10-31")
    source = {"sql": QUERY, "conn_id": churn_table.conn_id}
    config, dag = pipeline(churn_config("sqlchurn", tmp_path, source=source))
    assert config.source.uri is None
    with caplog.at_level("INFO"):
        run, states = run_dag(dag, "2026-11-01")
    assert all(states[t] == "success" for t in TRAINING_TASKS), states
    acquired = run.get_task_instance("data.acquire").xcom_pull(task_ids="data.acquire")
    assert acquired["rows"] == 1200 and "2026-11-01" in acquired["source"]
    logs = caplog.text + "".join(capfd.readouterr())
    assert "mlops_test_pg" in logs
    for found in (logs, str(acquired), *(p.read_text(errors="replace") for p in (tmp_path / "artifacts").rglob("*.json"))):
        assert PASSWORD not in found


def test_labels_from_a_query_are_stored_by_content_and_read_once(churn_table, tmp_path, caplog, capfd):
    """``monitor.labels: {sql, conn_id}``: the ingest task runs the query through the connection, stores its result
    by content as a label export, and joins it to the prediction log; the same rows are not read twice."""
    from datetime import UTC, datetime, timedelta

    import numpy as np
    import pandas as pd

    from airflow_mlops.ml.synthetic import FEATURES
    from airflow_mlops.operators.performance import LabelIngestOperator
    from airflow_mlops.store.layout import labels_prefix, log_part_key

    store = ArtifactStore.from_uri(str(tmp_path / "artifacts"))
    served = make_churn(400, seed=12)
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    logged = pd.DataFrame(
        {
            "_ts": when.timestamp() + np.arange(len(served), dtype=float),
            "_id": served["customer_id"].to_numpy(),
            "_version": "v1",
            "_prediction": np.linspace(0.01, 0.99, len(served)),
            "_error": False,
            "_latency_ms": 2.0,
            "_request": [f"r{i}" for i in range(len(served))],
            **{k: served[k].to_numpy() for k in FEATURES},
        }
    )
    buffer = io.BytesIO()
    logged.to_parquet(buffer, index=False)
    store.write_bytes(log_part_key("predictions", "churn", when, "t"), buffer.getvalue())
    churn_table(served.iloc[:300], "2026-11-01")
    churn_table(make_churn(50, seed=13), "2026-10-31")  # another day: not this run's labels

    ingest = LabelIngestOperator(
        task_id="ingest_labels",
        pipeline="churn",
        artifact_root=str(tmp_path / "artifacts"),
        labels_sql="select customer_id as id, churned from churn where day = '{{ ds }}' order by customer_id",
        labels_conn_id=churn_table.conn_id,
        label_column="churned",
    )
    ingest.render_template_fields({"ds": "2026-11-01"})
    assert "2026-11-01" in ingest.labels_sql
    with caplog.at_level("INFO"):
        first = ingest.execute({"run_id": "labels-1"})
    assert (first["files"], first["file_labels"], first["joined"], first["unknown"]) == (1, 300, 300, 0)
    exports = store.list(f"{labels_prefix('churn')}/queries")
    assert len(exports) == 1 and exports[0].endswith(".parquet")

    again = ingest.execute({"run_id": "labels-2"})  # the same rows: the same export, not read again
    assert (again["files"], again["joined"]) == (0, 0) and store.list(f"{labels_prefix('churn')}/queries") == exports

    churn_table(served.iloc[300:], "2026-11-01")  # 100 more labels arrive for the day
    later = ingest.execute({"run_id": "labels-3"})
    assert (later["files"], later["file_labels"], later["already_labelled"], later["joined"]) == (1, 400, 300, 100)
    logs = caplog.text + "".join(capfd.readouterr())
    assert churn_table.conn_id in logs and PASSWORD not in logs
