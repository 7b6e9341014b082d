"""Constructors only store; templated fields render; every argument keeps its name."""

import pytest

from airflow_mlops.operators.data import DataAcquisitionOperator, DataValidationOperator
from airflow_mlops.operators.deployment import CanaryBranchOperator, CanaryDeployOperator, CanaryResolveOperator
from airflow_mlops.operators.evaluation import EvaluationGateOperator, ModelEvaluationOperator, ModelRegistrationOperator
from airflow_mlops.operators.monitoring import (
    DriftBranchOperator,
    DriftCheckOperator,
    DriftReportOperator,
    LogCompactionOperator,
)
from airflow_mlops.operators.performance import LabelIngestOperator, PerformanceCheckOperator
from airflow_mlops.operators.preprocessing import BeamPreprocessOperator
from airflow_mlops.operators.retraining import RetrainBranchOperator, RetrainRequestCloseOperator, RetrainRequestOperator
from airflow_mlops.operators.training import ModelTrainingOperator
from airflow_mlops.operators.tuning import TrialSelectionOperator
from airflow_mlops.sensors.canary import CanaryAnalysisSensor
from airflow_mlops.sensors.drift import DriftDataSensor

COMMON = {"pipeline": "churn", "artifact_root": "/tmp/{{ ds }}"}
COLUMNS = {"label_column": "y", "problem_type": "classification", "numeric": ["a"], "categorical": ["b"]}

CASES = [
    pytest.param(
        DataAcquisitionOperator,
        {**COMMON, "source_uri": "data/{{ ds }}.csv", "source_sql": "select * from t where day = '{{ ds }}'"},
        {"artifact_root", "source_uri", "source_sql"},
        id="acquire",
    ),
    pytest.param(
        DataValidationOperator, {**COMMON, **COLUMNS, "dataset_id": "{{ ds }}"}, {"artifact_root", "dataset_id"}, id="validate"
    ),
    pytest.param(
        BeamPreprocessOperator,
        {**COMMON, **COLUMNS, "dataset_id": "{{ ds }}", "runner": "{{ ds }}", "pipeline_options": {"job_name": "j-{{ ds }}"}},
        {"artifact_root", "dataset_id", "runner", "pipeline_options"},
        id="preprocess",
    ),
    pytest.param(ModelTrainingOperator, {**COMMON, "features_id": "{{ ds }}"}, {"artifact_root", "features_id"}, id="train"),
    pytest.param(
        ModelEvaluationOperator,
        {
            **COMMON,
            "model_version": "{{ ds }}",
            "features_id": "{{ ds }}",
            "metric": "roc_auc",
            "threshold": 0.7,
            "tuning": {"t": "{{ ds }}"},
        },
        {"artifact_root", "model_version", "features_id", "tuning"},
        id="evaluate",
    ),
    pytest.param(
        TrialSelectionOperator,
        {
            **COMMON,
            "trials": [{"v": "{{ ds }}"}],
            "trial_params": [{"num_leaves": 7}],
            "features_id": "{{ ds }}",
            "metric": "roc_auc",
        },
        {"artifact_root", "trials", "features_id"},
        id="select-trial",
    ),
    pytest.param(
        ModelRegistrationOperator,
        {**COMMON, "evaluation": {"v": "{{ ds }}"}, "lineage": {"d": "{{ ds }}"}},
        {"artifact_root", "evaluation", "lineage"},
        id="register",
    ),
    pytest.param(
        CanaryDeployOperator,
        {**COMMON, "model_version": "{{ ds }}", "percent": 10},
        {"artifact_root", "model_version"},
        id="canary-deploy",
    ),
    pytest.param(
        CanaryBranchOperator,
        {"result": {"d": "{{ ds }}"}, "true_task_id": "p", "false_task_id": "r"},
        {"result"},
        id="canary-branch",
    ),
    pytest.param(
        CanaryResolveOperator,
        {**COMMON, "decision": "promote", "analysis": {"d": "{{ ds }}"}},
        {"artifact_root", "analysis"},
        id="canary-resolve",
    ),
    pytest.param(DriftCheckOperator, {**COMMON, "method": "psi"}, {"artifact_root"}, id="drift-check"),
    pytest.param(DriftReportOperator, COMMON, {"artifact_root"}, id="drift-report"),
    pytest.param(LogCompactionOperator, COMMON, {"artifact_root"}, id="log-compaction"),
    pytest.param(
        DriftBranchOperator,
        {"result": {"r": "{{ ds }}"}, "true_task_id": "a", "false_task_id": "b"},
        {"result"},
        id="drift-branch",
    ),
    pytest.param(
        RetrainRequestOperator,
        {**COMMON, "drift": {"r": "{{ ds }}"}, "performance": {"p": "{{ ds }}"}},
        {"artifact_root", "drift", "performance"},
        id="retrain-request",
    ),
    pytest.param(
        RetrainBranchOperator,
        {"drift": {"r": "{{ ds }}"}, "performance": {"p": "{{ ds }}"}, "true_task_id": "a", "false_task_id": "b"},
        {"drift", "performance"},
        id="retrain-branch",
    ),
    pytest.param(
        LabelIngestOperator,
        {
            **COMMON,
            "labels_uri": "labels/{{ ds }}/*.csv",
            "labels_sql": "select * from l where day = '{{ ds }}'",
            "labels_conn_id": "wh",
            "id_column": "cid",
            "slices": ["contract"],
        },
        {"artifact_root", "labels_uri", "labels_sql"},
        id="label-ingest",
    ),
    pytest.param(
        PerformanceCheckOperator,
        {**COMMON, "ingest": {"i": "{{ ds }}"}, "problem_type": "classification", "max_drop": 0.1},
        {"artifact_root", "ingest"},
        id="performance-check",
    ),
    pytest.param(DriftDataSensor, {**COMMON, "min_rows": 10}, {"artifact_root"}, id="drift-sensor"),
    pytest.param(
        CanaryAnalysisSensor, {**COMMON, "steps": [10, 50], "problem_type": "regression"}, {"artifact_root"}, id="canary-sensor"
    ),
    pytest.param(
        EvaluationGateOperator, {"result": {"x": "{{ ds }}"}, "true_task_id": "b", "false_task_id": "r"}, {"result"}, id="gate"
    ),
]


class TestOperators:
    @pytest.mark.parametrize(("cls", "kwargs", "templated"), CASES)
    def test_template_fields(self, cls, kwargs, templated):
        assert set(cls.template_fields) == templated
        op = cls(task_id="t", **kwargs)
        for name, value in kwargs.items():
            assert getattr(op, name) == value, f"{name} must be stored as given"
        op.render_template_fields({"ds": "2026-11-01"})
        for name in templated:
            assert "{{" not in repr(getattr(op, name)), name
            assert "2026-11-01" in repr(getattr(op, name)), name

    def test_constructor_does_no_io(self, tmp_path):
        root = tmp_path / "never-created"
        DataAcquisitionOperator(task_id="t", pipeline="p", artifact_root=str(root), source_uri="x.csv")
        assert not root.exists()

    def test_retrain_request_close_runs_however_the_run_ended(self):
        op = RetrainRequestCloseOperator(task_id="c", registration_task_ids=["registry.bless"], **COMMON)
        assert op.trigger_rule == "all_done"

    def test_lifecycle_operators_push_each_output_key(self):
        op = ModelTrainingOperator(task_id="t", features_id="f", **COMMON)
        assert op.multiple_outputs is True


class TestFollowedAsset:
    @pytest.mark.parametrize(
        ("extra", "uri"),
        [
            pytest.param(
                {"dataset_uri": "file:///r/datasets/p/abc", "rows": 3}, "file:///r/datasets/p/abc/data.parquet", id="dataset"
            ),
            pytest.param({"output_uri": "/out/s1/"}, "/out/s1/part-*.parquet", id="local-scores"),
            pytest.param({"output_uri": "s3://b/scores/p/s1"}, "s3://b/scores/p/s1/part-", id="s3-scores-prefix"),
            pytest.param({"uri": "s3://b/features/2026-11-01/"}, "s3://b/features/2026-11-01/", id="plain-uri"),
        ],
    )
    def test_the_data_an_asset_event_names(self, extra, uri):
        from airflow_mlops.operators.base import asset_data_uri

        assert asset_data_uri("a", extra) == uri

    def test_an_event_without_data_and_the_inlet(self):
        from airflow_mlops.exceptions import MlopsError
        from airflow_mlops.operators.base import asset_data_uri, followed_asset

        with pytest.raises(MlopsError, match="Asset 'mlops_x_scores' names no data"):
            asset_data_uri("mlops_x_scores", {"rows": 3})
        op = DataAcquisitionOperator(task_id="a", pipeline="p", artifact_root="/tmp/x", source_asset="mlops_x_scores")
        assert op.inlets == [followed_asset("mlops_x_scores")] and followed_asset("mlops_x_scores").group == "mlops"
        with_uri = DataAcquisitionOperator(
            task_id="b", pipeline="p", artifact_root="/tmp/x", source_uri="d.csv", source_asset="t"
        )
        assert with_uri.inlets == [], "with a uri the Asset only schedules the DAG"
