"""The scoring DAG built from YAML, run for real with dag.test() on a local root after a real training run, writing
to an s3:// destination on a moto server through an Airflow connection; its scores compared with a real
``airflow-mlops serve`` answering /predict for the same rows. Also with the root on S3, and with a query as the input
and a table as the output on PostgreSQL."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import test_sql_source
from conftest import DAGS, run_dag
from test_training_dag import asset_events, churn_config, store_of, write_day, xcom

from airflow_mlops.ml.synthetic import FEATURES, make_churn
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow

SCORING_DAG_FILE = """from airflow_mlops.factories import build_scoring_dag, load_pipeline_config

scoring = build_scoring_dag(load_pipeline_config({path!r}))
"""
database, churn_table = test_sql_source.database, test_sql_source.churn_table  # the SQL test's fixtures: PostgreSQL
SCORING_TASKS = ["resolve_model", "data.wait_for_input", "data.acquire", "data.validate", "scoring.score", "scoring.publish"]


@pytest.fixture
def scoring_dag_file():
    written = []

    def write(config) -> None:
        path = DAGS / f"test_{config.pipeline}_scoring.py"
        path.write_text(SCORING_DAG_FILE.format(path=str(config.config_path)))
        written.append(path)

    yield write
    for path in written:
        path.unlink(missing_ok=True)


class TestScoringDag:
    def test_train_then_score_a_table_to_s3_idempotently_and_equal_to_the_server(
        self, pipeline, scoring_dag_file, tmp_path, model_server, s3_bucket, aws_connection
    ):
        """The scores go to an s3:// destination on the moto server, reached only through the Airflow connection."""
        import boto3

        from airflow_mlops.factories import build_scoring_dag
        from airflow_mlops.store.artifacts import ArtifactStore

        endpoint, bucket = s3_bucket
        destination = ArtifactStore.from_uri(f"s3://{bucket}/scores", boto3.client("s3", endpoint_url=endpoint))

        scoring = {
            "input": {"uri": str(tmp_path / "tables" / "{{ ds }}.parquet"), "wait": {"timeout_minutes": 2, "poke_seconds": 0.5}},
            "id_columns": ["customer_id"],
            "log_sample": 0.1,
            "batch_rows": 1024,
            "output": f"s3://{bucket}/scores",
            "output_aws_conn_id": aws_connection,
        }
        overrides = {"model": {"num_boost_round": 30, "params": {"num_leaves": 7}}, "scoring": scoring}
        config, training = pipeline(churn_config("churn_batch", tmp_path, **overrides))
        write_day(tmp_path, "2026-11-01", make_churn(1200, seed=1))
        run, states = run_dag(training, "2026-11-01")
        assert run.state == "success", states
        store = store_of(config)
        version = ModelRegistry(store, "churn_batch").production()
        assert version == xcom(run, "training.train")["model_version"]

        table = make_churn(2500, seed=4).drop(columns=["churned"])
        (tmp_path / "tables").mkdir()
        table.to_parquet(tmp_path / "tables" / "2026-11-02.parquet", index=False)
        scoring_dag_file(config)
        dag = build_scoring_dag(config)
        assert dag.dag_id == "mlops_churn_batch_scoring" and {t.task_id for t in dag.tasks} == set(SCORING_TASKS)
        run, states = run_dag(dag, "2026-11-02")
        assert run.state == "success", states
        published = xcom(run, "scoring.publish")
        assert (published["rows"], published["model_version"], published["parts"]) == (2500, version, 3)
        event = asset_events(run)["mlops_churn_batch_scores"]
        assert (event["rows"], event["model_version"]) == (2500, version)
        assert event["dataset_id"] == xcom(run, "data.acquire")["dataset_id"]
        prefix = published["scoring_id"]
        assert event["output_uri"] == f"s3://{bucket}/scores/{prefix}" and destination.exists(f"{prefix}/_SUCCESS.json")
        assert store.exists(f"scores/churn_batch/{prefix}/scoring.json")
        parts = sorted(k for k in destination.list(prefix) if "/part-" in k)
        scored = pd.concat([pd.read_parquet(io.BytesIO(destination.read_bytes(k))) for k in parts], ignore_index=True)
        assert scored["customer_id"].tolist() == table["customer_id"].tolist()
        validation = xcom(run, "data.validate")
        assert (validation["anomalies"], validation["skipped_rows"]) == (0, 0)
        assert store.exists(validation["report_uri"].removeprefix(store.root_uri.rstrip("/") + "/"))
        logged = [k for k in store.list("predictions/churn_batch") if k.endswith(".parquet")]
        assert logged == [published["log_key"]]
        before = {k: destination.read_bytes(k) for k in parts}

        run2, states2 = run_dag(dag, "2026-11-02")  # the same run again: the same files, nothing appended
        assert run2.state == "success", states2
        assert sorted(k for k in destination.list(prefix) if "/part-" in k) == parts
        assert {k: destination.read_bytes(k) for k in parts} == before
        assert [k for k in store.list("predictions/churn_batch") if k.endswith(".parquet")] == logged

        client = model_server(store.root_uri, "churn_batch")
        rows = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items() if k in FEATURES}
            | {"id": r["customer_id"]}
            for r in table.to_dict("records")
        ]
        answer = [
            p
            for i in range(0, len(rows), 1000)
            for p in client.post("/predict", json={"instances": rows[i : i + 1000]}).json()["predictions"]
        ]
        assert [p["id"] for p in answer] == scored["customer_id"].tolist() and {p["version"] for p in answer} == {version}
        served = np.array([p["prediction"] for p in answer], dtype=float)
        assert served.tobytes() == scored["score"].to_numpy().tobytes(), "to the last bit of every float"


class TestScoringOnS3:
    def test_score_with_the_artifact_root_on_s3_through_the_connection(
        self, pipeline, scoring_dag_file, tmp_path, s3_bucket, aws_connection, monkeypatch
    ):
        """The root is an mlops_artifacts connection's s3:// root on the moto server: the model, the snapshot, the
        shards, the report and the logged rows all live there and nothing lands on the local disk."""
        import json

        import boto3

        from airflow_mlops.factories import build_scoring_dag
        from airflow_mlops.store.artifacts import ArtifactStore

        endpoint, bucket = s3_bucket
        extra = {"artifact_root": f"s3://{bucket}/mlops", "aws_conn_id": aws_connection}
        monkeypatch.setenv("AIRFLOW_CONN_TEAM_ARTIFACTS", json.dumps({"conn_type": "mlops_artifacts", "extra": extra}))
        store = ArtifactStore.from_uri(extra["artifact_root"], boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"))
        scoring = {"input": {"uri": str(tmp_path / "tables" / "{{ ds }}.parquet")}, "id_columns": ["customer_id"]}
        scoring |= {"log_sample": 0.1, "batch_rows": 1024}
        overrides = {"model": {"num_boost_round": 20, "params": {"num_leaves": 7}}, "scoring": scoring}
        config, training = pipeline(
            churn_config("churn_batch_s3", tmp_path, artifacts={"conn_id": "team_artifacts"}, **overrides)
        )
        write_day(tmp_path, "2026-11-01", make_churn(1200, seed=1))
        run, states = run_dag(training, "2026-11-01")
        assert run.state == "success", states
        version = ModelRegistry(store, "churn_batch_s3").production()
        assert version == xcom(run, "training.train")["model_version"]

        table = make_churn(2500, seed=4).drop(columns=["churned"])
        (tmp_path / "tables").mkdir()
        table.to_parquet(tmp_path / "tables" / "2026-11-02.parquet", index=False)
        scoring_dag_file(config)
        dag = build_scoring_dag(config)
        assert dag.get_task("data.acquire").mlops_conn_id == "team_artifacts"
        run, states = run_dag(dag, "2026-11-02")
        assert run.state == "success", states
        published = xcom(run, "scoring.publish")
        assert (published["rows"], published["model_version"], published["parts"]) == (2500, version, 3)
        event = asset_events(run)["mlops_churn_batch_s3_scores"]
        assert (event["rows"], event["model_version"]) == (2500, version)
        assert event["dataset_id"] == xcom(run, "data.acquire")["dataset_id"]
        prefix = f"scores/churn_batch_s3/{published['scoring_id']}"
        assert event["output_uri"] == f"s3://{bucket}/mlops/{prefix}" and store.exists(f"{prefix}/_SUCCESS.json")
        parts = sorted(k for k in store.list(prefix) if "/part-" in k)
        scored = pd.concat([pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in parts], ignore_index=True)
        assert scored["customer_id"].tolist() == table["customer_id"].tolist()
        assert set(scored["model_version"]) == {version} and scored["score"].between(0, 1).all()
        validation = xcom(run, "data.validate")
        assert (validation["anomalies"], validation["skipped_rows"]) == (0, 0)
        assert validation["report_uri"].startswith(f"s3://{bucket}/mlops/")
        logged = [k for k in store.list("predictions/churn_batch_s3") if k.endswith(".parquet")]
        assert logged == [published["log_key"]]
        before = {k: store.read_bytes(k) for k in parts}

        run2, states2 = run_dag(dag, "2026-11-02")  # the same run again: the same files, nothing appended
        assert run2.state == "success", states2
        assert sorted(k for k in store.list(prefix) if "/part-" in k) == parts
        assert {k: store.read_bytes(k) for k in parts} == before
        assert [k for k in store.list("predictions/churn_batch_s3") if k.endswith(".parquet")] == logged
        assert not (tmp_path / "artifacts").exists(), "nothing may land on the local disk"


class TestScoringSql:
    def test_a_query_in_and_a_table_out_through_connections_idempotently(
        self, pipeline, scoring_dag_file, tmp_path, churn_table, caplog, capfd
    ):
        """The input is a query on PostgreSQL (a database of the test's own), the scores also go into a table there
        through the same connection; a rerun replaces that run's rows, and no log holds the password."""
        import sqlalchemy as sa
        from test_sql_source import PASSWORD, QUERY

        from airflow_mlops.factories import build_scoring_dag
        from airflow_mlops.operators.data import dbapi_hook

        scoring = {
            "input": {"sql": QUERY, "conn_id": churn_table.conn_id},
            "id_columns": ["customer_id"],
            "batch_rows": 1024,
            "output_table": {"conn_id": churn_table.conn_id, "table": "public.churn_scores", "chunk_rows": 500},
        }
        overrides = {"model": {"num_boost_round": 20, "params": {"num_leaves": 7}}, "scoring": scoring}
        config, training = pipeline(churn_config("churn_sql_scoring", tmp_path, **overrides))
        write_day(tmp_path, "2026-11-01", make_churn(1200, seed=1))
        run, states = run_dag(training, "2026-11-01")
        assert run.state == "success", states
        version = ModelRegistry(store_of(config), "churn_sql_scoring").production()

        table = make_churn(2300, seed=8).sort_values("customer_id", ignore_index=True)
        churn_table(table, "2026-11-02")
        churn_table(make_churn(100, seed=9), "2026-11-03")  # another day: not in the query's rows
        scoring_dag_file(config)
        dag = build_scoring_dag(config)
        assert "data.wait_for_input" not in dag.task_dict
        assert dag.get_task("scoring.write_table").upstream_task_ids == {"scoring.score"}
        assert dag.get_task("scoring.publish").upstream_task_ids >= {"scoring.write_table"}
        with caplog.at_level("INFO"):
            run, states = run_dag(dag, "2026-11-02")
        assert run.state == "success", states
        written = xcom(run, "scoring.write_table")
        assert (written["table"], written["rows"], written["replaced_rows"]) == ("public.churn_scores", 2300, 0)
        published = xcom(run, "scoring.publish")
        assert (published["rows"], published["model_version"]) == (2300, version)

        engine = dbapi_hook(churn_table.conn_id).get_sqlalchemy_engine()

        def stored():
            with engine.connect() as conn:
                return pd.read_sql(sa.text("select * from churn_scores order by customer_id"), conn)

        rows = stored()
        assert rows["customer_id"].tolist() == table["customer_id"].tolist()
        assert set(rows["model_version"]) == {version} and set(rows["dataset_id"]) == {published["dataset_id"]}
        parts = sorted(k for k in store_of(config).list(f"scores/churn_sql_scoring/{published['scoring_id']}") if "/part-" in k)
        scored = pd.concat([pd.read_parquet(io.BytesIO(store_of(config).read_bytes(k))) for k in parts], ignore_index=True)
        assert rows["score"].to_numpy().tobytes() == scored.sort_values("customer_id")["score"].to_numpy().tobytes()

        run2, states2 = run_dag(dag, "2026-11-02")  # a rerun: the same rows, replaced, never appended
        assert run2.state == "success", states2
        assert xcom(run2, "scoring.write_table")["replaced_rows"] == 2300
        assert stored().equals(rows)
        logs = caplog.text + "".join(capfd.readouterr())
        assert churn_table.conn_id in logs and PASSWORD not in logs
