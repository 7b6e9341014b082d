import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.loader import config_errors, load_pipeline_config

REPO = Path(__file__).resolve().parents[3]

VALID = {
    "pipeline": "churn",
    "source": {"uri": "data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract", "region"]},
    "evaluation": {"metric": "roc_auc", "threshold": 0.7},
}


def with_change(path: str, value):
    """VALID with the key at dotted ``path`` set to ``value`` (``...=DELETE`` removes it)."""
    import copy

    config = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value == "DELETE":
        node.pop(last)
    else:
        node[last] = value
    return config


def write(tmp_path, content) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


BAD = [
    pytest.param(with_change("colour", "blue"), "colour: unknown key", id="unknown-top-level-key"),
    pytest.param(with_change("model.learning_rate", 0.1), "model.learning_rate: unknown key", id="unknown-nested-key"),
    pytest.param(with_change("model.num_boost_round", "many"), "model.num_boost_round: Input should be a valid integer", id="wrong-type"),
    pytest.param(with_change("preprocess.eval_fraction", 1.5), "preprocess.eval_fraction: Input should be less than 1", id="out-of-range"),
    pytest.param(with_change("label", "DELETE"), "label: required key is missing", id="missing-label"),
    pytest.param(with_change("source.uri", "DELETE"), "source.uri: required key is missing", id="missing-source-uri"),
    pytest.param(with_change("evaluation.metric", "f1"), "evaluation.metric: Input should be", id="unknown-metric"),
    pytest.param(with_change("evaluation.metric", "rmse"), "evaluation.metric: rmse does not apply to classification", id="metric-task-mismatch"),
    pytest.param({**with_change("evaluation", "DELETE"), "canary": {"steps": [10]}}, "canary: a deploy section needs an evaluation gate", id="deploy-without-gate"),
    pytest.param(with_change("compute.target", "kubernetes"), "compute.kubernetes: required when compute.target", id="kubernetes-without-pod"),
    pytest.param(with_change("compute.kubernetes", {"namespace": "ml"}), "compute.kubernetes.image: required key is missing", id="kubernetes-without-image"),
    pytest.param({**VALID, "canary": {"steps": [10, 150]}}, "canary.steps[1]: Input should be less than or equal to 100. Got 150 instead", id="canary-step-over-100"),
    pytest.param({**VALID, "canary": {"steps": [50, 20]}}, "canary.steps[1]: steps must increase", id="canary-steps-not-increasing"),
    pytest.param(with_change("features.numeric", ["tenure", "churned"]), "label: label 'churned' is also listed as a feature", id="label-is-a-feature"),
    pytest.param(with_change("features.categorical", ["contract", "tenure"]), "features.categorical[1]: duplicate feature 'tenure'", id="duplicate-feature"),
    pytest.param(with_change("model.params", {"objective": "huber"}), "model.params.objective: 'objective' is set by the pipeline", id="reserved-model-param"),
    pytest.param(with_change("pipeline", "Churn-Model"), "pipeline: String should match pattern", id="bad-pipeline-name"),
    pytest.param(with_change("evaluation.threshold", 1.7), "evaluation.threshold: must be between 0 and 1", id="auc-threshold-over-1"),
    pytest.param(with_change("evaluation.slices", ["tenure"]), "evaluation.slices[0]: 'tenure' is not a categorical feature", id="slice-not-categorical"),
    pytest.param(with_change("features", {"numeric": [], "categorical": []}), "features: declare at least one", id="no-features"),
    pytest.param(with_change("monitor", {"drift": {"share_threshold": 2}}), "monitor.drift.share_threshold: Input should be less than or equal to 1", id="drift-threshold"),
    pytest.param("pipeline: churn\nsource: [unclosed\n", "line 3", id="yaml-syntax-error"),
    pytest.param("- just\n- a list\n", "the top level must be a mapping", id="top-level-not-mapping"),
]


class TestLoadPipelineConfig:
    @pytest.mark.parametrize(("content", "expected"), BAD)
    def test_bad_config_names_file_and_key(self, tmp_path, content, expected):
        path = write(tmp_path, content)
        with pytest.raises(ConfigError) as err:
            load_pipeline_config(path)
        assert str(path) in str(err.value)
        assert expected in str(err.value), str(err.value)

    def test_missing_file(self, tmp_path):
        with pytest.raises(ConfigError, match="nope.yaml: cannot read the file"):
            load_pipeline_config(tmp_path / "nope.yaml")

    def test_every_error_reported_at_once(self, tmp_path):
        config = {**with_change("colour", "x"), "model": {"num_boost_round": 0}, "preprocess": {"histogram_bins": 1}}
        errors = config_errors(write(tmp_path, config))
        assert len(errors) == 3
        assert any("colour" in e for e in errors) and any("model.num_boost_round" in e for e in errors)

    def test_all_cross_field_errors_at_once(self, tmp_path):
        config = with_change("features.numeric", ["tenure", "churned", "tenure"])
        errors = config_errors(write(tmp_path, config))
        assert any("features.numeric[2]: duplicate" in e for e in errors) and any(e.endswith("also listed as a feature.") for e in errors)

    def test_defaults_are_merged_under_the_file(self, tmp_path, monkeypatch):
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
        config = load_pipeline_config(write(tmp_path, with_change("model.params", {"num_leaves": 7})))
        assert config.model.params == {"num_leaves": 7, "learning_rate": 0.05, "min_data_in_leaf": 20}
        assert config.model.num_boost_round == 200 and config.validation.min_rows == 50
        assert config.artifacts.root == f"file://{tmp_path / 'home' / 'mlops'}"
        assert config.source.uri == str(tmp_path / "data" / "{{ ds }}.csv"), "relative sources resolve against the YAML file"
        assert config.training_dag_id == "mlops_churn_training" and config.config_path == str(tmp_path / "pipe.yaml")

    def test_yaml_code_is_not_executed(self, tmp_path):
        errors = config_errors(write(tmp_path, "pipeline: !!python/object/apply:os.system ['echo hacked']\n"))
        assert errors and "invalid YAML" in errors[0]

    def test_example_config_is_valid(self):
        assert config_errors(REPO / "dags" / "configs" / "churn.yaml") == []


class TestLintCommand:
    def test_exit_codes_and_output_without_airflow(self, tmp_path):
        good = tmp_path / "good.yaml"
        good.write_text(yaml.safe_dump(VALID))
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(with_change("evaluation.metric", "f1")))
        code = (
            "import sys; from airflow_mlops.cli import main; rc = main(sys.argv[1:]);"
            "sys.exit(rc * 10 + (1 if 'airflow' in sys.modules else 0))"
        )
        ok = subprocess.run([sys.executable, "-c", code, "lint", str(good)], capture_output=True, text=True)
        assert ok.returncode == 0 and f"OK {good}" in ok.stdout
        failed = subprocess.run([sys.executable, "-c", code, "lint", str(tmp_path)], capture_output=True, text=True)
        assert failed.returncode == 10, "exit 1 on any error, and Airflow never imported"
        assert f"{bad}: evaluation.metric:" in failed.stderr and f"OK {good}" in failed.stdout

    def test_console_script(self, tmp_path):
        bad = tmp_path / "bad.yaml"
        bad.write_text("pipeline: x\n")
        result = subprocess.run([str(Path(sys.executable).parent / "airflow-mlops"), "lint", str(bad)], capture_output=True, text=True)
        assert result.returncode == 1 and "label: required key is missing" in result.stderr
