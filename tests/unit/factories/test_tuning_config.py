"""``model.tuning``: its schema, its errors (named by key path) and the trials a valid section gives."""

import copy
import json

import pytest
from pydantic import ValidationError

from airflow_mlops.config.pipeline import PipelineConfig
from airflow_mlops.config.tuning import TuningConfig
from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.loader import config_errors, construct, load_pipeline_config

MINIMAL = {
    "pipeline": "churn",
    "source": {"uri": "/data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract"]},
}
PARAMS = {"min_data_in_leaf": 5, "learning_rate": 0.2, "num_leaves": 31}
RANDOM = {
    "search": "random",
    "trials": 5,
    "space": {"num_leaves": {"low": 4, "high": 64, "log": True}, "feature_fraction": [0.7, 0.85, 1.0]},
}


def config_with(tuning, **model) -> dict:
    data = copy.deepcopy(MINIMAL)
    data["model"] = {"tuning": tuning, **model}
    return data


def write(tmp_path, data) -> str:
    import yaml

    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


class TestTuningConfig:
    def test_defaults_and_no_tuning_by_default(self):
        assert PipelineConfig.model_validate(MINIMAL).model.tuning is None
        assert PipelineConfig.model_validate(MINIMAL).model.trial_params() == []
        tuning = TuningConfig.model_validate({"space": {"num_leaves": [7, 15]}, "trials": 2})
        assert (tuning.search, tuning.parallelism, tuning.metric) == ("random", 4, None)

    def test_trials_merge_over_params_and_follow_the_seed(self):
        config = PipelineConfig.model_validate(config_with(RANDOM, params=PARAMS, seed=7))
        trials = config.model.trial_params()
        assert len(trials) == 5 and all(t == {**PARAMS, **{k: t[k] for k in RANDOM["space"]}} for t in trials)
        assert trials == PipelineConfig.model_validate(config_with(RANDOM, params=PARAMS, seed=7)).model.trial_params()
        other = PipelineConfig.model_validate(config_with(RANDOM, params=PARAMS, seed=8)).model.trial_params()
        assert other != trials

    def test_grid_runs_every_combination(self):
        grid = {"search": "grid", "space": {"num_leaves": [7, 15, 31], "learning_rate": [0.1, 0.3]}}
        trials = PipelineConfig.model_validate(config_with(grid)).model.trial_params()
        assert len(trials) == 6 and len({json.dumps(t, sort_keys=True) for t in trials}) == 6

    def test_the_parse_time_cache_gives_the_same_trials(self, tmp_path, monkeypatch):
        """A config rebuilt from the cache (no validation) holds the ranges as models and gives the same trials."""
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        path = write(tmp_path, config_with(RANDOM))
        first = load_pipeline_config(path)
        rebuilt = construct(PipelineConfig, json.loads(first.model_dump_json()))
        assert rebuilt.model.trial_params() == first.model.trial_params()
        assert load_pipeline_config(path).model.trial_params() == first.model.trial_params()


class TestTuningErrors:
    @pytest.mark.parametrize(
        ("tuning", "task", "expected"),
        [
            pytest.param(
                {"search": "random", "trials": 2, "space": {"seed": [1, 2], "num_leaves": [7, 15]}},
                "classification",
                ["model.tuning.space.seed: reserved: the pipeline sets it"],
                id="reserved-param",
            ),
            pytest.param(
                {"search": "grid", "trials": 3, "space": {"num_leaves": [7, 15]}},
                "classification",
                ["model.tuning.trials: grid search runs every one of its 2 combinations: omit trials or set it to 2. Got 3"],
                id="grid-size-vs-trials",
            ),
            pytest.param(
                {"search": "grid", "space": {"num_leaves": {"low": 2, "high": 9}}},
                "classification",
                ["model.tuning.space.num_leaves: grid search needs a list of values"],
                id="grid-with-range",
            ),
            pytest.param(
                {"search": "grid", "space": {f"p{i}": [1, 2] for i in range(9)}},
                "classification",
                ["model.tuning.space: the grid has 512 combinations; at most 256"],
                id="grid-too-large",
            ),
            pytest.param(
                {"search": "random", "space": {"num_leaves": [7, 15]}},
                "classification",
                ["model.tuning.trials: random search needs a trial count"],
                id="random-without-trials",
            ),
            pytest.param(
                {"search": "random", "trials": 5, "space": {"num_leaves": [7, 15], "max_depth": {"low": 3, "high": 4}}},
                "classification",
                ["model.tuning.trials: the space holds only 4 distinct combinations. Got 5"],
                id="space-too-small",
            ),
            pytest.param(
                {
                    "search": "random",
                    "trials": 2,
                    "space": {
                        "num_leaves": {"low": 9, "high": 3},
                        "learning_rate": {"low": 0, "high": 0.3, "log": True},
                        "max_depth": [3, 3],
                        "max_bin": 255,
                        "bagging_fraction": {"low": 0.5},
                        "lambda_l1": {"values": [0.0, 1.0], "low": 0, "high": 1},
                    },
                },
                "classification",
                [
                    "model.tuning.space.num_leaves.high: must be greater than low (9). Got 3",
                    "model.tuning.space.learning_rate.low: must be > 0 for a log range. Got 0",
                    "model.tuning.space.max_depth.values[1]: repeats an earlier value. Got 3",
                    "model.tuning.space.max_bin: give a list of values, or a range {low, high, log}. Got 255",
                    "model.tuning.space.bagging_fraction.high: a range needs low and high",
                    "model.tuning.space.lambda_l1: give a list of values or a range {low, high, log}, not both",
                ],
                id="bad-space-entries",
            ),
            pytest.param(
                {"search": "random", "trials": 2, "space": {"num_leaves": [7, 15]}, "metric": "roc_auc"},
                "regression",
                ["model.tuning.metric: does not apply to regression; use one of rmse, mae. Got 'roc_auc'"],
                id="metric-of-another-task",
            ),
            pytest.param(
                {"search": "bayes", "trials": 2, "space": {}, "parallelism": 0, "shards": 2},
                "classification",
                [
                    "model.tuning.search: Input should be 'grid' or 'random'",
                    "model.tuning.space: Dictionary should have at least 1 item",
                    "model.tuning.parallelism: Input should be greater than 0",
                    "model.tuning.shards: unknown key",
                ],
                id="fields",
            ),
        ],
    )
    def test_each_error_names_its_key(self, tmp_path, tuning, task, expected):
        data = config_with(tuning)
        data["task"] = task
        path = write(tmp_path, data)
        errors = config_errors(path)
        for line in expected:
            assert any(e.startswith(f"{path}: {line}") for e in errors), (line, errors)
        assert len(errors) == len(expected), errors
        with pytest.raises(ConfigError):
            load_pipeline_config(path)

    def test_the_model_alone_reports_the_same_locations(self):
        with pytest.raises(ValidationError) as err:
            TuningConfig.model_validate({"search": "grid", "space": {"objective": ["binary"]}})
        ((issue,),) = [e["ctx"]["issues"] for e in err.value.errors()]
        assert issue.loc == ("space", "objective")


class TestTuningDag:
    """The training DAG a tuning section builds (its runs: tests/integration/test_tuning_dag.py)."""

    @pytest.mark.parametrize(
        ("compute", "artifacts", "operator"),
        [
            pytest.param({}, {"root": "/tmp/mlops"}, "ModelTrainingOperator", id="local"),
            pytest.param(
                {"target": "kubernetes", "kubernetes": {"image": "trainer:1"}},
                {"root": "s3://bucket/mlops"},
                "KubernetesTrainingOperator",
                id="kubernetes",
            ),
        ],
    )
    def test_mapped_trials_then_select_feed_the_rest(self, compute, artifacts, operator):
        from airflow.serialization.serialized_objects import DagSerialization

        from airflow_mlops.factories.builders import build_training_dag

        tuning = {"search": "grid", "space": {"num_leaves": [7, 15, 31]}, "parallelism": 2}
        data = config_with(tuning) | {
            "compute": compute,
            "artifacts": artifacts,
            "evaluation": {"metric": "log_loss", "threshold": 0.7},
        }
        config = PipelineConfig.model_validate(data)
        dag = build_training_dag(config)
        assert "training.train" not in dag.task_dict
        trial, select = dag.task_dict["training.trial"], dag.task_dict["training.select"]
        assert trial.operator_class.__name__ == operator and trial.max_active_tis_per_dagrun == 2
        assert trial.expand_input.value == {"model_params": config.model.trial_params()}
        assert "model_params" not in trial.partial_kwargs
        assert select.trial_params == config.model.trial_params() and select.metric == "log_loss", "the gate's metric"
        assert select.trials.operator is trial
        evaluate, bless = dag.task_dict["evaluation.evaluate"], dag.task_dict["registry.bless"]
        assert evaluate.model_version.operator is select and evaluate.tuning.operator is select
        assert bless.lineage["params"].operator is select and bless.lineage["tuning"].operator is select
        assert "training.select" in evaluate.upstream_task_ids
        serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))  # what the DAG processor stores
        assert serialized.task_dict["training.trial"].expand_input.value == {"model_params": config.model.trial_params()}

    def test_without_tuning_the_dag_trains_once(self):
        from airflow_mlops.factories.builders import build_training_dag

        data = copy.deepcopy(MINIMAL) | {"artifacts": {"root": "/tmp/mlops"}}
        dag = build_training_dag(PipelineConfig.model_validate(data))
        assert "training.train" in dag.task_dict and not {"training.trial", "training.select"} & set(dag.task_dict)
        evaluate, bless = dag.task_dict["evaluation.evaluate"], dag.task_dict["registry.bless"]
        assert evaluate.model_version.operator is dag.task_dict["training.train"] and evaluate.tuning is None
        assert bless.lineage["params"] == PipelineConfig.model_validate(data).model.params and "tuning" not in bless.lineage
