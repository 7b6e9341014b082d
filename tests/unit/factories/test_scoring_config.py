"""The ``scoring`` section: defaults, paths relative to the YAML file, and errors named by file and key path."""

from __future__ import annotations

import copy

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
        assert (scoring.log_sample, scoring.log_max_rows, scoring.batch_rows) == (0.05, 100_000, BATCH_ROWS)
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
