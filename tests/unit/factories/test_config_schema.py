"""The config models on their own: fields, defaults, cross-field rules and their error locations."""

import copy
import datetime as dt
import subprocess
import sys
import typing

import pytest
from pydantic import BaseModel, ValidationError

from airflow_mlops.config.base import Issue, check_schedule
from airflow_mlops.config.evaluation import EvaluationConfig
from airflow_mlops.config.pipeline import PipelineConfig, cross_field_issues
from airflow_mlops.config.training import ComputeConfig

MINIMAL = {
    "pipeline": "churn",
    "source": {"uri": "/data/{{ ds }}.csv"},
    "label": "churned",
    "task": "classification",
    "features": {"numeric": ["tenure"], "categorical": ["contract"]},
}
HEAVY = ("airflow", "pandas", "pyarrow", "numpy", "apache_beam", "lightgbm", "evidently", "kubernetes")


def with_keys(**changes):
    data = copy.deepcopy(MINIMAL)
    data.update(changes)
    return data


def error_locs(data) -> list[tuple]:
    """Every error location, cross-field issues expanded to their full path."""
    with pytest.raises(ValidationError) as err:
        PipelineConfig.model_validate(data)
    locs = []
    for error in err.value.errors():
        issues = (error.get("ctx") or {}).get("issues")
        locs += [tuple(error["loc"]) + tuple(i.loc) for i in issues] if issues else [tuple(error["loc"])]
    return locs


def all_models(model: type[BaseModel], seen=None) -> set[type[BaseModel]]:
    seen = set() if seen is None else seen
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
                all_models(annotation, seen)
            stack += typing.get_args(annotation)
    return seen


class TestPipelineConfig:
    def test_minimal_config_gets_defaults(self):
        config = PipelineConfig.model_validate(MINIMAL)
        assert config.schedule == "@daily" and config.start_date == dt.date(2026, 11, 1) and config.owner == "mlops"
        assert config.preprocess.runner == "DirectRunner" and config.model.seed == 42 and config.compute.target == "local"
        assert config.evaluation is None and config.canary is None and config.monitor is None
        assert config.artifacts.root is None, "the loader, not the model, resolves the default root"

    @pytest.mark.parametrize(
        ("preprocess", "options"),
        [
            pytest.param({}, {}, id="direct"),
            pytest.param(
                {"runner": "dask", "dask": {"scheduler_address": "tcp://dask-scheduler:8786", "npartitions": 16}},
                {"dask_client_address": "tcp://dask-scheduler:8786", "dask_npartitions": 16},
                id="dask-section",
            ),
            pytest.param(
                {"runner": "dask", "pipeline_options": {"dask_client_address": "tls://dask:8786"}},
                {"dask_client_address": "tls://dask:8786"},
                id="dask-in-options",
            ),
        ],
    )
    def test_beam_options_name_the_dask_cluster(self, preprocess, options):
        assert PipelineConfig.model_validate(with_keys(preprocess=preprocess)).preprocess.beam_options() == options

    def test_convenience_properties(self):
        config = PipelineConfig.model_validate(with_keys(evaluation={"metric": "log_loss", "threshold": 0.5}))
        assert config.feature_columns == ["tenure", "contract"]
        assert config.training_dag_id == "mlops_churn_training" and config.monitor_dag_id == "mlops_churn_monitor"
        assert config.config_path == "<memory>"
        assert config.evaluation.higher_is_better is False

    @pytest.mark.parametrize(
        ("metric", "higher"),
        [
            pytest.param(m, h, id=m)
            for m, h in [("roc_auc", True), ("accuracy", True), ("log_loss", False), ("rmse", False), ("mae", False)]
        ],
    )
    def test_higher_is_better(self, metric, higher):
        assert EvaluationConfig(metric=metric, threshold=0.5).higher_is_better is higher

    @pytest.mark.parametrize(
        "value", [pytest.param("2026-12-24", id="iso-string"), pytest.param(dt.date(2026, 12, 24), id="date")]
    )
    def test_start_date_accepts_date_or_iso_string(self, value):
        assert PipelineConfig.model_validate(with_keys(start_date=value)).start_date == dt.date(2026, 12, 24)

    def test_every_model_forbids_unknown_keys_and_documents_every_field(self):
        models = all_models(PipelineConfig)
        assert len(models) >= 14
        for model in models:
            assert model.model_config.get("extra") == "forbid", model.__name__
            for name, field in model.model_fields.items():
                assert field.description, f"{model.__name__}.{name} has no description"

    def test_json_schema_is_exportable(self):
        props = PipelineConfig.model_json_schema()["properties"]
        assert {"pipeline", "source", "evaluation", "canary", "monitor"} <= set(props)

    def test_model_params_accept_scalars(self):
        params = {"num_leaves": 7, "learning_rate": 0.1, "boosting": "dart", "extra_trees": True}
        config = PipelineConfig.model_validate(with_keys(model={"params": params}))
        assert config.model.params == params
        assert type(config.model.params["extra_trees"]) is bool and type(config.model.params["num_leaves"]) is int

    def test_kubernetes_training_needs_an_s3_root(self):
        compute = {"target": "kubernetes", "kubernetes": {"image": "trainer:1", "gpus": 2}}
        section = ComputeConfig.model_validate(compute)
        assert section.kubernetes.gpus == 2 and section.kubernetes.namespace == "default"
        assert error_locs(with_keys(compute=compute)) == [("artifacts", "root")]
        on_s3 = PipelineConfig.model_validate(with_keys(compute=compute, artifacts={"root": "s3://b/p"}))
        assert on_s3.compute.target == "kubernetes"


KSERVE = {"target": "kserve", "kserve": {"image": "server:1", "credentials_secret": "mlops-s3"}}
GATE = {"metric": "roc_auc", "threshold": 0.7}


class TestKServeConfig:
    def test_kserve_target_builds_with_an_s3_root(self):
        config = PipelineConfig.model_validate(with_keys(evaluation=GATE, canary=KSERVE, artifacts={"root": "s3://b/mlops"}))
        kserve = config.canary.kserve
        assert (kserve.image, kserve.namespace, kserve.name, kserve.kubernetes_conn_id) == (
            "server:1",
            "default",
            None,
            "kubernetes_default",
        )
        assert (kserve.min_replicas, kserve.workers, kserve.credentials_secret) == (1, 1, "mlops-s3")

    def test_a_root_in_a_connection_is_checked_when_opened(self):
        assert cross_field_issues(with_keys(evaluation=GATE, canary=KSERVE, artifacts={"conn_id": "mlops"})) == []

    def test_kserve_target_needs_its_section(self):
        data = with_keys(evaluation=GATE, canary={"target": "kserve"}, artifacts={"root": "s3://b/mlops"})
        assert error_locs(data) == [("canary", "kserve")]

    @pytest.mark.parametrize(
        "artifacts",
        [pytest.param({"root": "/srv/mlops"}, id="local-path"), pytest.param({}, id="default-root")],
    )
    def test_kserve_target_needs_an_s3_root(self, artifacts):
        [issue] = cross_field_issues(with_keys(evaluation=GATE, canary=KSERVE, artifacts=artifacts))
        assert issue.loc == ("artifacts", "root") and "needs an s3:// artifact root" in issue.message

    @pytest.mark.parametrize(
        ("kserve", "loc"),
        [
            pytest.param({}, ("canary", "kserve", "image"), id="no-image"),
            pytest.param({"image": "s:1", "name": "Churn_Model"}, ("canary", "kserve", "name"), id="not-a-dns-label"),
            pytest.param({"image": "s:1", "min_replicas": -1}, ("canary", "kserve", "min_replicas"), id="negative-replicas"),
            pytest.param({"image": "s:1", "secret": "x"}, ("canary", "kserve", "secret"), id="unknown-key"),
        ],
    )
    def test_kserve_section_errors(self, kserve, loc):
        data = with_keys(evaluation=GATE, canary={"target": "kserve", "kserve": kserve}, artifacts={"root": "s3://b/m"})
        assert error_locs(data) == [loc]


BAD = [
    pytest.param(with_keys(colour="blue"), ("colour",), id="unknown-top-level-key"),
    pytest.param(
        with_keys(canary={"steps": [10], "speed": 1}, evaluation={"metric": "roc_auc", "threshold": 0.7}),
        ("canary", "speed"),
        id="unknown-nested-key",
    ),
    pytest.param(with_keys(catchup="sometimes"), ("catchup",), id="wrong-type"),
    pytest.param(
        with_keys(operations={"stages": {"serving": {"retries": 1}}}),
        ("operations", "stages", "serving", "[key]"),
        id="unknown-stage",
    ),
    pytest.param(with_keys(operations={"retries": -1}), ("operations", "retries"), id="negative-retries"),
    pytest.param(with_keys(artifacts={"root": "s3://b/x", "conn_id": "team"}), ("artifacts", "conn_id"), id="root-and-conn-id"),
    pytest.param(
        with_keys(operations={"deadline_minutes": 60}), ("operations", "deadline_minutes"), id="deadline-without-target"
    ),
    pytest.param(with_keys(operations={"notify": [{"kind": "email"}]}), ("operations", "notify", 0, "to"), id="email-without-to"),
    pytest.param(
        with_keys(operations={"notify": [{"kind": "slack"}]}), ("operations", "notify", 0, "kind"), id="slack-not-installed"
    ),
    pytest.param(
        with_keys(operations={"notify": [{"kind": "webhook", "on": ["deploy"]}]}),
        ("operations", "notify", 0, "on", 0),
        id="unknown-event",
    ),
    pytest.param(
        with_keys(operations={"notify": [{"kind": "webhook", "class": "my.Notifier"}]}),
        ("operations", "notify", 0, "class"),
        id="no-notifier-by-import-path",
    ),
    pytest.param(
        with_keys(source={"uri": "x.csv", "wait": {"timeout_minutes": 0}}), ("source", "wait", "timeout_minutes"), id="wait-0"
    ),
    pytest.param(
        with_keys(validation={"max_null_ratio_increase": 1.5}), ("validation", "max_null_ratio_increase"), id="out-of-range"
    ),
    pytest.param({k: v for k, v in MINIMAL.items() if k != "label"}, ("label",), id="missing-label"),
    pytest.param(with_keys(source={"format": "csv"}), ("source", "uri"), id="missing-source-uri"),
    pytest.param(
        with_keys(source={"uri": "x.csv", "sql": "select 1", "conn_id": "pg"}), ("source", "uri"), id="both-uri-and-sql"
    ),
    pytest.param(with_keys(source={"sql": "select 1"}), ("source", "conn_id"), id="sql-without-conn-id"),
    pytest.param(with_keys(source={"uri": "x.csv", "conn_id": "pg"}), ("source", "conn_id"), id="conn-id-without-sql"),
    pytest.param(
        with_keys(source={"sql": "select 1", "conn_id": "pg", "wait": {}}), ("source", "wait"), id="wait-on-a-sql-source"
    ),
    pytest.param(with_keys(evaluation={"metric": "f1", "threshold": 0.7}), ("evaluation", "metric"), id="unknown-metric"),
    pytest.param(with_keys(evaluation={"metric": "mae", "threshold": 0.7}), ("evaluation", "metric"), id="metric-task-mismatch"),
    pytest.param(with_keys(canary={"steps": [10]}), ("canary",), id="canary-without-evaluation"),
    pytest.param(with_keys(compute={"target": "kubernetes"}), ("compute", "kubernetes"), id="kubernetes-without-section"),
    pytest.param(
        with_keys(compute={"target": "kubernetes", "kubernetes": {"gpus": 1}}),
        ("compute", "kubernetes", "image"),
        id="kubernetes-without-image",
    ),
    pytest.param(
        with_keys(compute={"kubernetes": {"image": "x", "gpus": 17}}), ("compute", "kubernetes", "gpus"), id="too-many-gpus"
    ),
    pytest.param(
        with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7}, canary={"steps": [10, 150]}),
        ("canary", "steps", 1),
        id="step-over-100",
    ),
    pytest.param(
        with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7}, canary={"steps": [50, 50]}),
        ("canary", "steps", 1),
        id="steps-not-increasing",
    ),
    pytest.param(
        with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7}, canary={"steps": []}), ("canary", "steps"), id="steps-empty"
    ),
    pytest.param(with_keys(features={"numeric": ["tenure", "churned"]}), ("label",), id="label-is-a-feature"),
    pytest.param(
        with_keys(features={"numeric": ["tenure"], "categorical": ["contract", "tenure"]}),
        ("features", "categorical", 1),
        id="duplicate-feature",
    ),
    pytest.param(with_keys(features={}), ("features",), id="no-features"),
    pytest.param(
        with_keys(model={"params": {"deterministic": False}}), ("model", "params", "deterministic"), id="reserved-model-param"
    ),
    pytest.param(with_keys(model={"params": {"metric": ["auc"]}}), ("model", "params", "metric"), id="non-scalar-model-param"),
    pytest.param(with_keys(pipeline="Churn-Model"), ("pipeline",), id="bad-pipeline-name"),
    pytest.param(with_keys(pipeline="x" * 64), ("pipeline",), id="pipeline-name-too-long"),
    pytest.param(
        with_keys(evaluation={"metric": "accuracy", "threshold": 1.2}),
        ("evaluation", "threshold"),
        id="accuracy-threshold-over-1",
    ),
    pytest.param(
        with_keys(evaluation={"metric": "log_loss", "threshold": -0.1}), ("evaluation", "threshold"), id="negative-loss-threshold"
    ),
    pytest.param(
        with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7, "must_beat_production_by": -0.1}),
        ("evaluation", "must_beat_production_by"),
        id="negative-margin",
    ),
    pytest.param(
        with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7, "slices": ["tenure"]}),
        ("evaluation", "slices", 0),
        id="slice-not-categorical",
    ),
    pytest.param(
        with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7, "fairness": {"column": "region", "max_gap": 0.1}}),
        ("evaluation", "fairness", "column"),
        id="fairness-column-not-categorical",
    ),
    pytest.param(with_keys(evaluation={"metric": "roc_auc"}), ("evaluation", "threshold"), id="threshold-missing"),
    pytest.param(with_keys(preprocess={"eval_fraction": 1.0}), ("preprocess", "eval_fraction"), id="eval-fraction-exclusive"),
    pytest.param(with_keys(preprocess={"runner": "LocalRunner"}), ("preprocess", "runner"), id="unknown-runner"),
    pytest.param(with_keys(preprocess={"histogram_bins": 101}), ("preprocess", "histogram_bins"), id="too-many-bins"),
    pytest.param(with_keys(preprocess={"runner": "dask"}), ("preprocess", "dask"), id="dask-without-cluster"),
    pytest.param(
        with_keys(preprocess={"dask": {"scheduler_address": "tcp://dask:8786"}}), ("preprocess", "dask"), id="dask-not-the-runner"
    ),
    pytest.param(
        with_keys(preprocess={"runner": "dask", "dask": {"scheduler_address": "dask:8786"}}),
        ("preprocess", "dask", "scheduler_address"),
        id="dask-address-without-scheme",
    ),
    pytest.param(
        with_keys(
            preprocess={
                "runner": "dask",
                "dask": {"scheduler_address": "tcp://dask:8786"},
                "pipeline_options": {"dask_client_address": "tcp://other:8786"},
            }
        ),
        ("preprocess", "pipeline_options", "dask_client_address"),
        id="dask-cluster-given-twice",
    ),
    pytest.param(with_keys(model={"type": "xgboost"}), ("model", "type"), id="unknown-model-type"),
    pytest.param(with_keys(model={"num_boost_round": 0}), ("model", "num_boost_round"), id="zero-rounds"),
    pytest.param(with_keys(schedule="@dayly"), ("schedule",), id="schedule-preset-typo"),
    pytest.param(with_keys(schedule="0 0 * *"), ("schedule",), id="cron-too-few-fields"),
    pytest.param(with_keys(schedule="@once", monitor={}), ("schedule",), id="once-with-monitor"),
    pytest.param(
        with_keys(monitor={"drift": {"method": "wasserstein"}}), ("monitor", "drift", "method"), id="unsupported-drift-method"
    ),
    pytest.param(with_keys(monitor={"cooldown_hours": -1}), ("monitor", "cooldown_hours"), id="negative-cooldown"),
    pytest.param(
        with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7}, canary={"analysis": {"max_p95_latency_ratio": 0.5}}),
        ("canary", "analysis", "max_p95_latency_ratio"),
        id="latency-ratio-under-1",
    ),
    pytest.param(with_keys(start_date="next tuesday"), ("start_date",), id="bad-start-date"),
]


class TestPipelineConfigErrors:
    @pytest.mark.parametrize(("data", "loc"), BAD)
    def test_error_location(self, data, loc):
        assert loc in error_locs(data)

    def test_cross_field_errors_are_all_reported(self):
        data = with_keys(
            features={"numeric": ["tenure", "churned", "tenure"], "categorical": ["contract"]},
            evaluation={"metric": "rmse", "threshold": 0.7, "slices": ["tenure", "contract", "region"]},
        )
        assert set(error_locs(data)) == {
            ("features", "numeric", 2),
            ("label",),
            ("evaluation", "metric"),
            ("evaluation", "slices", 0),
            ("evaluation", "slices", 2),
        }

    def test_one_error_per_bad_parameter_not_one_per_union_member(self):
        assert error_locs(with_keys(model={"params": {"metric": ["auc"], "num_leaves": None}})) == [
            ("model", "params", "metric"),
            ("model", "params", "num_leaves"),
        ]

    def test_issue_carries_the_offending_value(self):
        with pytest.raises(ValidationError) as err:
            PipelineConfig.model_validate(
                with_keys(evaluation={"metric": "roc_auc", "threshold": 0.7}, canary={"steps": [10, 60, 30, 20]})
            )
        [error] = err.value.errors()
        assert [(i.loc, i.value) for i in error["ctx"]["issues"]] == [((2,), 30), ((3,), 20)]


class TestCrossFieldIssues:
    def test_skips_values_of_the_wrong_type(self):
        raw = {
            "label": 3,
            "task": "clustering",
            "features": {"numeric": "tenure", "categorical": [1, "contract", "contract"]},
            "evaluation": {"metric": "rmse", "slices": "contract", "fairness": "x"},
        }
        assert cross_field_issues(raw) == [
            Issue(("features", "categorical", 2), "duplicate feature (each column may be listed once)", "contract")
        ]

    def test_valid_mapping_has_no_issues(self):
        assert (
            cross_field_issues(with_keys(evaluation={"metric": "roc_auc", "slices": ["contract"]}, canary={"steps": [10]})) == []
        )


class TestCheckSchedule:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(v, id=repr(v))
            for v in (None, "@daily", "@hourly", "@once", "0 3 * * *", "*/15 0-6 * * MON-FRI", "0 0 1 */3 *", "0 0 0 * * * 2027")
        ],
    )
    def test_accepts(self, value):
        assert check_schedule(value) == value

    @pytest.mark.parametrize(
        "value", [pytest.param(v, id=v) for v in ("@sometimes", "daily", "0 0 * *", "0 0 * * * * * *", "0 0 * * ;rm")]
    )
    def test_rejects(self, value):
        with pytest.raises(ValueError):
            check_schedule(value)


class TestImports:
    def test_schema_and_loader_import_nothing_heavy(self):
        code = (
            "import sys; import airflow_mlops.factories.loader, airflow_mlops.config.pipeline, airflow_mlops.cli;"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})); print(heavy); sys.exit(1 if heavy else 0)"
        )
        result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_reserved_params_are_the_ones_training_sets(self):
        from airflow_mlops.ml.train import RESERVED_PARAMS, lgb_params

        fixed = lgb_params("classification", {}, seed=7)
        assert set(RESERVED_PARAMS) <= set(fixed) and fixed["seed"] == 7
        for name in RESERVED_PARAMS:
            assert error_locs(with_keys(model={"params": {name: 1}})) == [("model", "params", name)]


class TestMinVolumeHistory:
    """``validation.min_volume_history`` (issue 21): how many accepted datasets the volume check needs."""

    @pytest.mark.parametrize("value", [0, -1, 11, "three", 2.5])
    def test_a_bad_value_names_the_key(self, value, tmp_path):
        import yaml

        from airflow_mlops.exceptions import ConfigError
        from airflow_mlops.factories.loader import load_pipeline_config

        assert ("validation", "min_volume_history") in error_locs(with_keys(validation={"min_volume_history": value}))
        path = tmp_path / "churn.yaml"
        path.write_text(yaml.safe_dump(with_keys(validation={"min_volume_history": value})))
        with pytest.raises(ConfigError, match=r"churn\.yaml: validation\.min_volume_history: "):
            load_pipeline_config(str(path))

    def test_default_and_bound(self):
        from airflow_mlops.stages.data import VOLUME_HISTORY

        assert PipelineConfig.model_validate(MINIMAL).validation.min_volume_history == 3
        assert PipelineConfig.model_validate(with_keys(validation={"min_volume_history": 1})).validation.min_volume_history == 1
        bound = next(
            m.le
            for m in PipelineConfig.model_fields["validation"].annotation.model_fields["min_volume_history"].metadata
            if hasattr(m, "le")
        )
        assert bound == VOLUME_HISTORY, "a history longer than the kept one could never be reached"


def test_a_sql_source_with_its_connection():
    config = PipelineConfig.model_validate(with_keys(source={"sql": "select * from t where day = '{{ ds }}'", "conn_id": "pg"}))
    assert (config.source.uri, config.source.conn_id) == (None, "pg")
