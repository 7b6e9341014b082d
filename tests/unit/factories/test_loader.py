"""Loading pipeline YAML: safe YAML, defaults merged under the file, every error as one ``file: key.path: message`` line."""

import copy
from pathlib import Path

import pytest
import yaml

from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.loader import (
    check_pipeline_config,
    config_errors,
    default_config,
    key_path,
    load_pipeline_config,
    merge_defaults,
)

REPO = Path(__file__).resolve().parents[3]
DELETE = object()

VALID = {
    "pipeline": "churn",
    "source": {"uri": "data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract", "region"]},
    "evaluation": {"metric": "roc_auc", "threshold": 0.7},
}


def with_change(path: str, value, base=VALID):
    """``base`` with the key at dotted ``path`` set to ``value`` (``DELETE`` removes it)."""
    config = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(last)
    else:
        node[last] = value
    return config


def write(tmp_path, content, name="pipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


BAD = [
    pytest.param(with_change("colour", "blue"), "colour: unknown key", id="unknown-top-level-key"),
    pytest.param(
        with_change("model.learning_rate", 0.1),
        "model.learning_rate: unknown key (allowed here: type, params,",
        id="unknown-nested-key",
    ),
    pytest.param(
        with_change("model.num_boost_rounds", 5),
        "model.num_boost_rounds: unknown key (did you mean 'num_boost_round'?). Got 5 instead.",
        id="misspelt-key",
    ),
    pytest.param(
        with_change("model.num_boost_round", "many"), "model.num_boost_round: Input should be a valid integer", id="wrong-type"
    ),
    pytest.param(with_change("features", ["tenure"]), "features: Input should be a valid dictionary", id="section-not-a-mapping"),
    pytest.param(
        with_change("preprocess.eval_fraction", 1.5),
        "preprocess.eval_fraction: Input should be less than 1. Got 1.5 instead.",
        id="out-of-range",
    ),
    pytest.param(with_change("label", DELETE), "pipe.yaml: label: required key is missing.", id="missing-label"),
    pytest.param(with_change("source.uri", DELETE), "source.uri: required key is missing.", id="missing-source-uri"),
    pytest.param(
        with_change("source", {"asset": "mlops_other_dataset", "wait": {"poke_seconds": 5}}),
        "source.wait: only for a uri source",
        id="wait-on-an-asset",
    ),
    pytest.param(
        with_change("evaluation.metric", "f1"),
        "evaluation.metric: Input should be 'roc_auc', 'roc_auc_macro', 'roc_auc_weighted', 'log_loss', 'accuracy', 'rmse' or 'mae'. Got 'f1' instead.",
        id="unknown-metric",
    ),
    pytest.param(
        with_change("evaluation.metric", "rmse"),
        "evaluation.metric: does not apply to classification; use one of roc_auc, log_loss, accuracy. Got 'rmse' instead.",
        id="metric-task-mismatch",
    ),
    pytest.param(
        {**with_change("evaluation", DELETE), "canary": {"steps": [10]}},
        "canary: a deploy section needs an evaluation gate",
        id="canary-without-evaluation",
    ),
    pytest.param(
        with_change("compute.target", "kubernetes"),
        "compute.kubernetes: required when compute.target is 'kubernetes'",
        id="kubernetes-without-section",
    ),
    pytest.param(
        with_change("compute", {"target": "kubernetes", "kubernetes": {"namespace": "ml"}}),
        "compute.kubernetes.image: required key is missing.",
        id="kubernetes-without-image",
    ),
    pytest.param(
        {**VALID, "canary": {"steps": [10, 150]}},
        "canary.steps[1]: Input should be less than or equal to 100. Got 150 instead.",
        id="canary-step-over-100",
    ),
    pytest.param(
        {**VALID, "canary": {"steps": [50, 20]}},
        "canary.steps[1]: steps must increase; this one follows 50. Got 20 instead.",
        id="canary-steps-not-increasing",
    ),
    pytest.param(
        with_change("features.numeric", ["tenure", "churned"]),
        "label: the label is also listed as a feature. Got 'churned' instead.",
        id="label-is-a-feature",
    ),
    pytest.param(
        with_change("features.categorical", ["contract", "tenure"]),
        "features.categorical[1]: duplicate feature",
        id="duplicate-feature",
    ),
    pytest.param(
        with_change("features", {"numeric": [], "categorical": []}),
        "features: declare at least one numeric or categorical feature.",
        id="no-features",
    ),
    pytest.param(
        with_change("model.params", {"objective": "huber"}),
        "model.params.objective: reserved: the pipeline sets it",
        id="reserved-model-param",
    ),
    pytest.param(with_change("pipeline", "Churn-Model"), "pipeline: String should match pattern", id="bad-pipeline-name"),
    pytest.param(
        with_change("evaluation.threshold", 1.7),
        "evaluation.threshold: must be between 0 and 1 for roc_auc. Got 1.7 instead.",
        id="auc-threshold-over-1",
    ),
    pytest.param(
        with_change("evaluation.slices", ["tenure"]),
        "evaluation.slices[0]: not a categorical feature (declared: contract, region). Got 'tenure' instead.",
        id="slice-not-categorical",
    ),
    pytest.param(
        with_change("monitor", {"drift": {"share_threshold": 2}}),
        "monitor.drift.share_threshold: Input should be less than or equal to 1",
        id="drift-threshold",
    ),
    pytest.param(with_change("schedule", "@dayly"), "schedule: unknown schedule preset", id="schedule-typo"),
    pytest.param("pipeline: churn\nsource: [unclosed\n", "pipe.yaml: line 3, column 1: invalid YAML", id="yaml-syntax-error"),
    pytest.param(
        "pipeline: churn\nlabel: a\nlabel: b\n",
        "pipe.yaml: line 3, column 1: invalid YAML: duplicate key 'label'",
        id="yaml-duplicate-key",
    ),
    pytest.param(
        "- just\n- a list\n",
        "pipe.yaml: the top level must be a mapping of keys (pipeline, source, label, ...). Got list instead.",
        id="top-level-not-mapping",
    ),
    pytest.param("# nothing yet\n", "pipe.yaml: the file is empty", id="empty-file"),
    pytest.param(
        "pipeline: !!python/object/apply:os.system ['echo hacked']\n",
        "invalid YAML: could not determine a constructor",
        id="python-tag",
    ),
]


class TestLoadPipelineConfig:
    @pytest.mark.parametrize(("content", "expected"), BAD)
    def test_bad_config_names_file_and_key(self, tmp_path, content, expected):
        path = write(tmp_path, content)
        with pytest.raises(ConfigError) as err:
            load_pipeline_config(path)
        assert all(line.startswith(f"{path}: ") for line in str(err.value).splitlines())
        assert expected in str(err.value), str(err.value)

    def test_message_uses_the_path_as_given(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "configs").mkdir()
        write(tmp_path / "configs", {**VALID, "canary": {"steps": [10, 150]}})
        with pytest.raises(ConfigError) as err:
            load_pipeline_config("configs/pipe.yaml")
        assert str(err.value) == "configs/pipe.yaml: canary.steps[1]: Input should be less than or equal to 100. Got 150 instead."

    def test_missing_file(self, tmp_path):
        with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the file: No such file or directory\."):
            load_pipeline_config(tmp_path / "nope.yaml")

    def test_long_values_are_shortened(self, tmp_path):
        [line] = config_errors(write(tmp_path, with_change("label", list(range(100)))))
        assert line.endswith("... instead."), line
        assert len(line) < len(str(tmp_path)) + 200

    def test_every_error_reported_at_once(self, tmp_path):
        config = {
            **with_change("colour", "x"),
            "model": {"num_boost_round": 0, "params": {"seed": 1}},
            "preprocess": {"histogram_bins": 1},
            "canary": {"steps": [10, 150]},
        }
        errors = config_errors(write(tmp_path, config))
        paths = [line.split(": ")[1] for line in errors]
        assert sorted(paths) == sorted(
            ["colour", "model.num_boost_round", "model.params.seed", "preprocess.histogram_bins", "canary.steps[1]"]
        )

    def test_cross_field_errors_reported_with_field_errors(self, tmp_path):
        config = with_change("features.numeric", ["tenure", "churned", "tenure"])
        config = {**with_change("evaluation.metric", "rmse", base=config), "colour": "x", "validation": {"min_rows": 0}}
        paths = [line.split(": ")[1] for line in config_errors(write(tmp_path, config))]
        assert sorted(paths) == sorted(["colour", "validation.min_rows", "features.numeric[2]", "label", "evaluation.metric"])

    def test_cross_field_errors_alone_are_reported_once(self, tmp_path):
        config = with_change("label", "contract")
        config = with_change("compute", {"target": "kubernetes", "kubernetes": {"image": "trainer:1"}}, base=config)
        paths = [line.split(": ")[1] for line in config_errors(write(tmp_path, config))]
        assert sorted(paths) == ["artifacts.root", "label"]

    def test_cross_field_rule_skipped_where_the_value_has_its_own_error(self, tmp_path):
        errors = config_errors(write(tmp_path, with_change("evaluation.metric", "f1")))
        assert len(errors) == 1 and "evaluation.metric: Input should be" in errors[0]
        errors = config_errors(write(tmp_path, {**with_change("evaluation", "gate"), "canary": {"steps": [10]}}))
        assert [line.split(": ")[1] for line in errors] == ["evaluation"]

    def test_defaults_are_merged_under_the_file(self, tmp_path, monkeypatch):
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
        config = load_pipeline_config(write(tmp_path, with_change("model.params", {"num_leaves": 7})))
        assert config.model.params == {"num_leaves": 7, "learning_rate": 0.05, "min_data_in_leaf": 20}, "mappings merge"
        assert (
            config.model.num_boost_round == 200
            and config.validation.min_rows == 50
            and config.start_date.isoformat() == "2026-11-01"
        )
        assert config.artifacts.root == f"file://{tmp_path / 'home' / 'mlops'}"
        assert config.training_dag_id == "mlops_churn_training" and config.config_path == str(tmp_path / "pipe.yaml")

    def test_lists_replace_defaults(self):
        merged = merge_defaults({"model": {"params": {"num_leaves": 3}}, "tags": ["a"]})
        assert merged["model"]["params"]["num_leaves"] == 3 and merged["tags"] == ["a"]
        assert merge_defaults({"tags": ["b"]})["tags"] == ["b"]
        assert default_config()["model"]["params"]["num_leaves"] == 31, "merging never changes the defaults"

    def test_defaults_have_no_evaluation_canary_or_monitor(self):
        assert {"evaluation", "canary", "monitor"}.isdisjoint(default_config())

    def test_default_root_without_airflow_home(self, tmp_path, monkeypatch):
        monkeypatch.delenv("AIRFLOW_HOME", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        assert load_pipeline_config(write(tmp_path, VALID)).artifacts.root == f"file://{tmp_path / 'airflow' / 'mlops'}"

    @pytest.mark.parametrize(
        ("uri", "expected"),
        [
            pytest.param("data/{{ ds }}.csv", "TMP/data/{{ ds }}.csv", id="relative-to-yaml"),
            pytest.param("../shared/*.parquet", "PARENT/shared/*.parquet", id="parent-glob"),
            pytest.param("/abs/{{ ds }}.csv", "/abs/{{ ds }}.csv", id="absolute"),
            pytest.param("s3://bucket/churn/{{ ds }}/", "s3://bucket/churn/{{ ds }}/", id="s3"),
            pytest.param("{{ var.value.churn_source }}", "{{ var.value.churn_source }}", id="jinja-only"),
        ],
    )
    def test_source_uri_resolution(self, tmp_path, uri, expected):
        config = load_pipeline_config(write(tmp_path, with_change("source.uri", uri)))
        assert config.source.uri == expected.replace("TMP", str(tmp_path)).replace("PARENT", str(tmp_path.parent))

    @pytest.mark.parametrize(
        ("root", "expected"),
        [
            pytest.param("artifacts", "file://{cwd}/artifacts", id="relative-to-cwd"),
            pytest.param("/srv/mlops", "file:///srv/mlops", id="absolute"),
            pytest.param("file:///srv/mlops", "file:///srv/mlops", id="file-uri"),
            pytest.param("s3://team-bucket/mlops", "s3://team-bucket/mlops", id="s3"),
        ],
    )
    def test_artifact_root_resolution(self, tmp_path, monkeypatch, root, expected):
        monkeypatch.chdir(tmp_path)
        config = load_pipeline_config(write(tmp_path, with_change("artifacts.root", root)))
        assert config.artifacts.root == expected.format(cwd=tmp_path)

    def test_config_errors_is_empty_for_a_valid_file(self, tmp_path):
        path = write(tmp_path, VALID)
        assert config_errors(path) == []
        config, errors = check_pipeline_config(path)
        assert errors == [] and config.pipeline == "churn"

    def test_yaml_anchors_and_merge_keys(self, tmp_path):
        text = yaml.safe_dump(VALID) + "x-base: &base {num_leaves: 9}\n"
        assert "x-base: unknown key" in config_errors(write(tmp_path, text))[0]
        text = yaml.safe_dump(VALID) + "model:\n  params: {<<: {num_leaves: 9, max_bin: 63}, num_leaves: 11}\n"
        assert load_pipeline_config(write(tmp_path, text)).model.params["num_leaves"] == 11, "a merge key is not a duplicate key"

    def test_only_true_and_false_are_booleans(self, tmp_path):
        """YAML 1.1 would read the unquoted key ``on`` as True; here, as in YAML 1.2, only true and false are booleans."""
        text = yaml.safe_dump(VALID) + (
            "compute: {target: local}\nmodel: {allow_cpu_fallback: yes}\n"
            "operations:\n  notify:\n    - kind: webhook\n      on: [failure, revert]\n"
        )
        config = load_pipeline_config(write(tmp_path, text))
        assert config.operations.notify[0].on == ["failure", "revert"]
        assert config.model.allow_cpu_fallback is True, "a boolean field still reads yes"
        assert load_pipeline_config(write(tmp_path, yaml.safe_dump(VALID) + "catchup: True\n")).catchup is True


class TestExampleConfig:
    def test_churn_yaml_is_valid(self):
        assert config_errors(REPO / "dags" / "configs" / "churn.yaml") == []

    def test_churn_yaml_contents(self):
        config = load_pipeline_config(REPO / "dags" / "configs" / "churn.yaml")
        assert config.pipeline == "churn" and config.label == "churned" and config.task == "classification"
        assert config.features.numeric == ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"]
        assert config.features.categorical == ["contract", "payment_method", "region"]
        assert config.source.uri == str(REPO / "data" / "churn" / "{{ ds }}.csv")
        assert (
            config.evaluation.metric == "roc_auc"
            and config.evaluation.threshold == 0.7
            and config.evaluation.slices == ["contract"]
        )
        assert config.schedule == "@daily" and config.start_date.isoformat() == "2026-11-01"
        assert config.canary.target == "local" and config.canary.steps == [20, 50]
        assert config.monitor.min_rows == 500 and config.validation.max_out_of_range_share == 0.05


class TestKeyPath:
    @pytest.mark.parametrize(
        ("loc", "expected"),
        [
            pytest.param(("canary", "steps", 1), "canary.steps[1]", id="index"),
            pytest.param(("model", "params", "seed"), "model.params.seed", id="dict-key"),
            pytest.param((), "<top level>", id="empty"),
        ],
    )
    def test_key_path(self, loc, expected):
        assert key_path(loc) == expected


FULL = {
    **VALID,
    "source": {"uri": "data/{{ ds }}.csv", "wait": {"timeout_minutes": 30, "poke_seconds": 5}},
    "start_date": "2026-10-01",
    "evaluation": {"metric": "roc_auc", "threshold": 0.7, "fairness": {"column": "region", "max_gap": 0.1}},
    "canary": {"steps": [10, 50, 100], "analysis": {"min_labels": 50}, "watch": {"minutes": 5}},
    "monitor": {"min_rows": 100},
    "operations": {
        "retries": 1,
        "stages": {"training": {"retries": 2, "execution_timeout_minutes": 30}},
        "notify": [{"kind": "webhook", "endpoint": "/hook", "on": ["failure", "revert"]}],
    },
}


def test_a_connection_instead_of_a_root_gets_no_default_root(tmp_path):
    config = load_pipeline_config(write(tmp_path, {**VALID, "artifacts": {"conn_id": "team_artifacts"}}))
    assert config.artifacts.root is None and config.artifacts.conn_id == "team_artifacts"
    assert config.artifacts.location == "the root of connection 'team_artifacts'"


class TestParseTimeCache:
    def test_a_cached_config_equals_the_validated_one(self, tmp_path):
        from airflow_mlops.factories import loader

        path = write(tmp_path, yaml.safe_dump(FULL))
        validated, _ = check_pipeline_config(path)
        first = load_pipeline_config(path)  # validated and cached (or already cached by an earlier run)
        cached = loader._cache_dir() / f"{loader._cache_key(path)}.json"
        assert cached.is_file()
        again = load_pipeline_config(path)
        for config in (first, again):
            assert type(config) is type(validated) and config.model_dump() == validated.model_dump()
            assert config.start_date.isoformat() == "2026-10-01" and config.evaluation.fairness.max_gap == 0.1
            assert config.canary.watch.minutes == 5 and config.source.wait.poke_seconds == 5
            assert config.operations.task_defaults("training")["retries"] == 2 and config.operations.notify[0].on[1] == "revert"
            assert config.config_path == str(path)

    def test_a_cache_hit_does_not_validate(self, tmp_path, monkeypatch):
        from airflow_mlops.factories import loader

        path = write(tmp_path, yaml.safe_dump(FULL))
        load_pipeline_config(path)
        monkeypatch.setattr(loader, "check_pipeline_config", None)  # any validation would fail now
        assert load_pipeline_config(path).pipeline == "churn"

    def test_a_changed_file_is_validated_again(self, tmp_path):
        path = write(tmp_path, yaml.safe_dump(FULL))
        assert load_pipeline_config(path).monitor.min_rows == 100
        path.write_text(yaml.safe_dump({**FULL, "monitor": {"min_rows": 7}}))
        assert load_pipeline_config(path).monitor.min_rows == 7
        path.write_text(yaml.safe_dump({**FULL, "monitor": {"min_rows": -1}}))
        with pytest.raises(ConfigError, match=r"monitor\.min_rows"):
            load_pipeline_config(path)

    def test_an_unreadable_entry_is_ignored(self, tmp_path):
        from airflow_mlops.factories import loader

        path = write(tmp_path, yaml.safe_dump({**FULL, "description": "unreadable entry"}))
        (loader._cache_dir() / f"{loader._cache_key(path)}.json").write_text("{not json")
        assert load_pipeline_config(path).description == "unreadable entry"
