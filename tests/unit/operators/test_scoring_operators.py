"""The scoring operators: constructors only store, templated fields render, the publish task's outlet."""

import pytest

from airflow_mlops.operators.scoring import (
    BatchScoringOperator,
    ScoresPublishOperator,
    ScoresTableWriteOperator,
    ScoringModelResolveOperator,
    ScoringValidationOperator,
    scores_asset,
)

COMMON = {"pipeline": "churn", "artifact_root": "/tmp/{{ ds }}"}

CASES = [
    pytest.param(ScoringModelResolveOperator, {**COMMON, "model": "{{ ds }}"}, {"artifact_root", "model"}, id="resolve"),
    pytest.param(
        ScoringValidationOperator,
        {**COMMON, "dataset_id": "{{ ds }}", "on_anomaly": "skip_rows"},
        {"artifact_root", "dataset_id"},
        id="validate",
    ),
    pytest.param(
        BatchScoringOperator,
        {
            **COMMON,
            "dataset_id": "{{ ds }}",
            "model_version": "{{ ds }}",
            "destination": "s3://b/{{ ds }}",
            "skip": {"a": "{{ ds }}"},
        },
        {"artifact_root", "dataset_id", "model_version", "destination", "skip"},
        id="score",
    ),
    pytest.param(
        ScoresTableWriteOperator,
        {**COMMON, "scores": {"s": "{{ ds }}"}, "conn_id": "wh", "table": "a.b", "destination": "/o/{{ ds }}"},
        {"artifact_root", "scores", "destination"},
        id="table",
    ),
    pytest.param(
        ScoresPublishOperator,
        {
            **COMMON,
            "scores": {"s": "{{ ds }}"},
            "validation": {"v": "{{ ds }}"},
            "source": "{{ ds }}",
            "destination": "/o/{{ ds }}",
        },
        {"artifact_root", "scores", "validation", "source", "destination"},
        id="publish",
    ),
]


class TestScoringOperators:
    @pytest.mark.parametrize(("cls", "kwargs", "templated"), CASES)
    def test_template_fields(self, cls, kwargs, templated):
        assert set(cls.template_fields) == templated
        op = cls(task_id="t", **kwargs)
        for name, value in kwargs.items():
            assert getattr(op, name) == value, f"{name} must be stored as given"
        op.render_template_fields({"ds": "2026-11-01"})
        for name in templated:
            assert "{{" not in repr(getattr(op, name)) and "2026-11-01" in repr(getattr(op, name)), name

    def test_defaults_come_from_the_config_and_publish_emits_the_scores_asset(self, tmp_path):
        root = tmp_path / "never-created"
        score = BatchScoringOperator(task_id="s", pipeline="churn", artifact_root=str(root), dataset_id="d", model_version="v")
        assert (score.batch_rows, score.log_sample, score.destination, score.multiple_outputs) == (131_072, 0.05, None, True)
        assert (score.engine, score.runner, score.pipeline_options) == ("local", "DirectRunner", None)
        assert ScoringModelResolveOperator(task_id="r", pipeline="churn", artifact_root=str(root)).model == "production"
        publish = ScoresPublishOperator(task_id="p", pipeline="churn", artifact_root=str(root), scores={})
        assert publish.outlets == [scores_asset("churn")] and scores_asset("churn").name == "mlops_churn_scores"
        assert not root.exists()
