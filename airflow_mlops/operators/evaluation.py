"""Evaluation, the gate's branch, and registration of the decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_mlops.config.base import field_default
from airflow_mlops.config.evaluation import EvaluationConfig
from airflow_mlops.links.report import ReportLink
from airflow_mlops.operators.base import MlopsBaseOperator, ResultBranchOperator


class ModelEvaluationOperator(MlopsBaseOperator):
    """Score the candidate and the current production model on the same holdout rows and apply the gate.

    The candidate is blessed when its metric meets ``threshold`` and is not worse than production by
    more than allowed (``must_beat_production_by``); the first model needs only the threshold.
    Writes ``evaluation.html`` (linked from the task) and returns metrics, decision and reason.

    :param model_version: the candidate (templated).
    :param features_id: the features it was trained on; their eval split is used (templated).
    :param metric: the gate metric (``roc_auc``, ``log_loss``, ``accuracy``, ``rmse``, ``mae``).
    :param threshold: minimum (higher-is-better metrics) or maximum (lower-is-better) acceptable value.
    :param must_beat_production_by: required improvement over production; 0 means "not worse".
    :param slices: categorical columns to report the metric for, value by value.
    :param fairness_column: a column whose slices' metric gap is limited by ``fairness_max_gap``.
    :param fairness_max_gap: the largest allowed gap of the metric between slices of ``fairness_column``.
    :param tuning: the tuning search the candidate won (``TrialSelectionOperator``'s ``tuning``, templated): its
        trials are listed in the report and the result.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "model_version", "features_id", "tuning")
    operator_extra_links = (ReportLink(),)

    def __init__(
        self,
        *,
        model_version: str,
        features_id: str,
        metric: str,
        threshold: float,
        must_beat_production_by: float = field_default(EvaluationConfig, "must_beat_production_by"),
        slices: list[str] | None = None,
        fairness_column: str | None = None,
        fairness_max_gap: float | None = None,
        tuning: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tuning = tuning
        self.model_version = model_version
        self.features_id = features_id
        self.metric = metric
        self.threshold = threshold
        self.must_beat_production_by = must_beat_production_by
        self.slices = slices or []
        self.fairness_column = fairness_column
        self.fairness_max_gap = fairness_max_gap

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.evaluation import GateSettings, evaluate

        settings = GateSettings(
            self.metric,
            self.threshold,
            self.must_beat_production_by,
            list(self.slices),
            self.fairness_column,
            self.fairness_max_gap,
        )
        result = evaluate(
            self.store,
            self.pipeline,
            self.model_version,
            self.features_id,
            settings,
            run_id=context["run_id"],
            tuning=self.tuning,
        )
        ReportLink.persist(context, result["report_uri"])
        self.log.info(
            "Candidate %s: %s=%.4f; production %s: %s. %s: %s",
            self.model_version,
            self.metric,
            result["metrics"][self.metric],
            result["production_version"] or "(none)",
            (result["production_metrics"] or {}).get(self.metric, "n/a"),
            "BLESSED" if result["blessed"] else "REJECTED",
            result["reason"],
        )
        return result


class EvaluationGateOperator(ResultBranchOperator):
    """The gate's branch: ``true_task_id`` (bless) when the evaluation blessed the candidate, else ``false_task_id``."""

    def decide(self, result: dict[str, Any]) -> bool:
        return bool(result["blessed"])


class ModelRegistrationOperator(MlopsBaseOperator):
    """Record a gate decision in the model registry, with lineage and a model card.

    Idempotent: registering the same version again changes nothing. With ``promote`` a blessed
    model goes straight to the production alias (for pipelines without a canary).

    :param evaluation: the evaluation result (an XComArg of :class:`ModelEvaluationOperator`, templated).
    :param lineage: what the model came from: dataset id, features id, params, ... (templated).
    :param promote: move a blessed model to the production alias.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "evaluation", "lineage")

    def __init__(self, *, evaluation: Any, lineage: dict[str, Any] | None = None, promote: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.lineage = lineage or {}
        self.promote = promote

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.operators.retraining import retrain_requests
        from airflow_mlops.stages.evaluation import register
        from airflow_mlops.store.layout import model_prefix, registry_key

        lineage = {**self.lineage, "dag_id": context["dag"].dag_id, "run_id": context["run_id"]}
        requests = retrain_requests(context)
        if requests:
            lineage["retrain_request"] = requests[-1]  # why this model was trained
        result = register(self.store, self.pipeline, self.evaluation, lineage=lineage, promote=self.promote)
        self.log.info(
            "Registered %s %s as %s (registry revision %d, production %s)",
            self.pipeline,
            result["model_version"],
            result["status"],
            result["revision"],
            result["production"],
        )
        model_uri = self.store.uri(model_prefix(self.pipeline, result["model_version"]))
        self.openlineage_io([model_uri], [self.store.uri(registry_key(self.pipeline))])
        if result["status"] == "blessed":
            extra = {"model_version": result["model_version"], "metrics": self.evaluation.get("metrics", {})}
            extra |= {k: lineage[k] for k in ("dataset_id", "features_id", "transform_hash") if k in lineage}
            self.record_lineage(context, "model", extra)
        return result
