"""The ``scoring`` section: defaults, paths relative to the YAML file, and errors named by file and key path."""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml

from airflow_mlops.config.scoring import BATCH_ROWS, ScoringConfig
from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.loader import load_pipeline_config

BASE = {
    "pipeline": "churn",
    "source": {"uri": "data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract"]},
    "scoring": {"input": {"uri": "tables/{{ ds }}.parquet"}},
}


def write(tmp_path, scoring: dict) -> str:
    config = copy.deepcopy(BASE)
    config["scoring"] = {**config["scoring"], **scoring}
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class TestScoringConfig:
    def test_defaults_and_paths_relative_to_the_yaml_file(self, tmp_path):
        config = load_pipeline_config(write(tmp_path, {"output": "scored"}))
        scoring = config.scoring
        assert scoring.input.uri == str(tmp_path / "tables" / "{{ ds }}.parquet"), "resolved like source.uri"
        assert scoring.output == str(tmp_path / "scored")
        assert (scoring.schedule, scoring.model, scoring.on_anomaly, scoring.id_columns) == (None, "production", "fail", None)
        assert (scoring.log_sample, scoring.log_max_rows, scoring.batch_rows, scoring.engine) == (
            0.05,
            100_000,
            BATCH_ROWS,
            "local",
        )
        assert (scoring.input.asset, scoring.input.wait, scoring.input.format) == (None, None, "auto")
        assert config.scoring_dag_id == "mlops_churn_scoring"
        relative = load_pipeline_config(write(tmp_path, {"input": {"uri": "in/x.csv"}, "output": "s3://b/scores"})).scoring
        assert (relative.input.uri, relative.output) == (str(tmp_path / "in" / "x.csv"), "s3://b/scores")
        assert load_pipeline_config(tmp_path / "churn.yaml").scoring == relative
        assert ScoringConfig.model_fields["model"].description

    @pytest.mark.parametrize(
        ("scoring", "expected"),
        [
            pytest.param(
                {"on_anomaly": "drop"}, "scoring.on_anomaly: Input should be 'fail', 'warn' or 'skip_rows'", id="on-anomaly"
            ),
            pytest.param({"log_sample": 2}, "scoring.log_sample: Input should be less than or equal to 1", id="sample"),
            pytest.param({"schedule": "@nightly"}, "scoring.schedule: unknown schedule preset", id="schedule"),
            pytest.param({"output": "gs://b/x"}, "scoring.output: use s3://bucket/prefix, a local path or null", id="output"),
            pytest.param({"id_columns": ["id", "tenure"]}, "scoring.id_columns[1]: is a feature", id="id-is-feature"),
            pytest.param({"batch_rows": 10}, "scoring.batch_rows: Input should be greater than or equal to 1024", id="batch"),
            pytest.param(
                {"engine": "beam", "batch_rows": 4096},
                "scoring.batch_rows: engine beam scores the snapshot's row groups",
                id="beam",
            ),
            pytest.param(
                {"output_table": {"conn_id": "wh", "table": "a; drop table b"}}, "scoring.output_table.table", id="table"
            ),
            pytest.param({"output_table": {"table": "s"}}, "scoring.output_table.conn_id: required key is missing", id="t-conn"),
            pytest.param({"input": {"sql": "select 1"}}, "scoring.input.conn_id: required with sql", id="sql-conn"),
            pytest.param({"engine": "spark"}, "scoring.engine: Input should be 'local' or 'beam'", id="engine"),
            pytest.param({"model": "prod uction"}, "scoring.model: String should match pattern", id="model"),
            pytest.param({"input": {"format": "csv"}}, "scoring.input.uri: required key is missing", id="input-uri"),
            pytest.param({"inptu": {}}, "scoring.inptu: unknown key (did you mean 'input'?)", id="typo"),
            pytest.param({"input": {"uri": "x", "wait": {"poke_seconds": 0}}}, "scoring.input.wait.poke_seconds", id="wait"),
        ],
    )
    def test_errors_name_the_file_and_key(self, tmp_path, scoring, expected):
        with pytest.raises(ConfigError) as err:
            load_pipeline_config(write(tmp_path, scoring))
        assert f"{tmp_path / 'churn.yaml'}: {expected}" in str(err.value)


class TestScoringDag:
    def test_the_tasks_their_order_and_the_schedule(self, tmp_path):
        from airflow_mlops.factories import build_scoring_dag
        from airflow_mlops.factories.folder import pipeline_dags

        wait = {"uri": "t/{{ ds }}.csv", "wait": {"poke_seconds": 5}, "asset": "warehouse_churn_table"}
        config = load_pipeline_config(write(tmp_path, {"input": wait, "output": "s3://b/s", "on_anomaly": "skip_rows"}))
        dag = build_scoring_dag(config)
        assert dag.dag_id == "mlops_churn_scoring" and "scoring" in dag.tags
        order = ["resolve_model", "data.wait_for_input", "data.acquire", "data.validate", "scoring.score", "scoring.publish"]
        assert {t.task_id for t in dag.tasks} == set(order)
        for upstream, downstream in itertools.pairwise(order):
            assert upstream in dag.get_task(downstream).upstream_task_ids, (upstream, downstream)
        assert [a.name for a in dag.timetable.asset_condition.objects] == ["warehouse_churn_table"]
        score = dag.get_task("scoring.score")
        assert (score.destination, dag.get_task("data.validate").on_anomaly) == ("s3://b/s", "skip_rows")
        assert [d.dag_id for d in pipeline_dags(config)] == ["mlops_churn_training", "mlops_churn_scoring"]

        cron = load_pipeline_config(write(tmp_path, {"schedule": "0 3 * * *"}))
        dag = build_scoring_dag(cron)
        assert "data.wait_for_input" not in dag.task_dict and dag.get_task("data.acquire").upstream_task_ids == {"resolve_model"}
        assert dag.schedule == "0 3 * * *"

        sql = {"input": {"sql": "select * from t where day = '{{ ds }}'", "conn_id": "wh"}}
        sql |= {"output_table": {"conn_id": "wh", "table": "analytics.scores"}}
        dag = build_scoring_dag(load_pipeline_config(write(tmp_path, sql)))
        acquire = dag.get_task("data.acquire")
        assert (acquire.source_sql, acquire.source_conn_id, acquire.source_uri) == (sql["input"]["sql"], "wh", None)
        assert dag.get_task("scoring.write_table").table == "analytics.scores"
        assert {"scoring.score", "scoring.write_table"} <= dag.get_task("scoring.publish").upstream_task_ids

        beam = copy.deepcopy(BASE)
        beam["scoring"]["engine"] = "beam"
        beam["preprocess"] = {"runner": "dask", "dask": {"scheduler_address": "tcp://10.0.0.5:8786"}}
        (tmp_path / "beam.yaml").write_text(yaml.safe_dump(beam))
        score = build_scoring_dag(load_pipeline_config(tmp_path / "beam.yaml")).get_task("scoring.score")
        assert (score.engine, score.runner) == ("beam", "dask"), "beam scoring runs on the pipeline's preprocess runner"
        assert score.pipeline_options == {"dask_client_address": "tcp://10.0.0.5:8786"}

        without = copy.deepcopy(BASE)
        del without["scoring"]
        (tmp_path / "plain.yaml").write_text(yaml.safe_dump(without))
        plain = load_pipeline_config(tmp_path / "plain.yaml")
        assert [d.dag_id for d in pipeline_dags(plain)] == ["mlops_churn_training"]
        with pytest.raises(ConfigError, match="scoring: the pipeline has no 'scoring' section"):
            build_scoring_dag(plain)


def test_the_batch_default_is_the_stages_and_a_snapshot_row_group():
    from airflow_mlops.config.scoring import BATCH_ROWS
    from airflow_mlops.stages.scoring_input import BATCH_ROWS as STAGE_BATCH_ROWS
    from airflow_mlops.store.datasets import ROW_GROUP_ROWS

    assert BATCH_ROWS == STAGE_BATCH_ROWS == ROW_GROUP_ROWS
