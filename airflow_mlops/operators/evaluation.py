"""Evaluation, the gate's branch, and registration of the decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

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
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "model_version", "features_id")
    operator_extra_links = (ReportLink(),)

    def __init__(
        self,
        *,
        model_version: str,
        features_id: str,
        metric: str,
        threshold: float,
        must_beat_production_by: float = 0.0,
        slices: list[str] | None = None,
        fairness_column: str | None = None,
        fairness_max_gap: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version
        self.features_id = features_id
        self.metric = metric
        self.threshold = threshold
        self.must_beat_production_by = must_beat_production_by
        self.slices = slices or []
        self.fairness_column = fairness_column
        self.fairness_max_gap = fairness_max_gap

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops import stages

        settings = stages.GateSettings(
            self.metric, self.threshold, self.must_beat_production_by, list(self.slices), self.fairness_column, self.fairness_max_gap
        )
        result = stages.evaluate(self.store, self.pipeline, self.model_version, self.features_id, settings, run_id=context["run_id"])
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
        from airflow_mlops import stages

        lineage = {**self.lineage, "dag_id": context["dag"].dag_id, "run_id": context["run_id"]}
        requests = retrain_requests(context)
        if requests:
            lineage["retrain_request"] = requests[-1]  # why this model was trained
        result = stages.register(self.store, self.pipeline, self.evaluation, lineage=lineage, promote=self.promote)
        self.log.info(
            "Registered %s %s as %s (registry revision %d, production %s)",
            self.pipeline,
            result["model_version"],
            result["status"],
            result["revision"],
            result["production"],
        )
        return result


def retrain_requests(context: Context) -> list[dict[str, Any]]:
    """The retrain requests (Asset event extras) that triggered this run, oldest first."""
    return [
        dict(event.extra)
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if event.extra and "request_id" in event.extra
    ]


class RetrainRequestCloseOperator(MlopsBaseOperator):
    """Close the retrain requests that triggered this run, however the run ended (run it with
    ``trigger_rule="all_done"``), so a failed retraining never blocks the next request.

    :param registration_task_ids: the registration tasks whose result names the model and its status.
    :param decision_task_ids: the canary promote/rollback tasks, when the run has a canary: their
        decision is the request's outcome once the candidate was blessed.
    """

    def __init__(self, *, registration_task_ids: list[str], decision_task_ids: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.registration_task_ids = registration_task_ids
        self.decision_task_ids = decision_task_ids or []

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops import stages

        def first(task_ids: list[str]) -> dict[str, Any] | None:
            return next((r for r in (context["ti"].xcom_pull(task_ids=t) for t in task_ids) if r), None)

        registered, decided = first(self.registration_task_ids), first(self.decision_task_ids)
        version, status = (registered["model_version"], registered["status"]) if registered else (None, "failed")
        if decided:
            status = {"promote": "promoted", "rollback": "rolled_back"}[decided["decision"]]
        elif status == "blessed" and self.decision_task_ids:
            status = "canary_unfinished"  # blessed, but the canary ended without a decision
        closed = []
        for request in retrain_requests(context):
            stages.close_retrain_request(self.store, self.pipeline, request["request_id"], model_version=version, status=status)
            self.log.info("Closed retrain request %s: model %s %s", request["request_id"], version, status)
            closed.append(request["request_id"])
        return {"closed": closed}
