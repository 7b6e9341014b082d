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
