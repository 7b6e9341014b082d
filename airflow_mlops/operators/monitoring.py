"""Drift check against the production model's reference profile, and governed retrain requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, Context
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops.links.report import ReportLink
from airflow_mlops.operators.base import MlopsBaseOperator, ResultBranchOperator


def retrain_asset(pipeline: str) -> Asset:
    """The Asset whose events start a pipeline's training DAG."""
    # Name only: a URI with a scheme makes Airflow load every provider's URI handlers (boto3 among them) at parse time.
    return Asset(name=f"mlops_{pipeline}_retrain_request")


class DriftCheckOperator(MlopsBaseOperator):
    """Compare predictions logged since the last check with the production model's reference profile.

    Saves an evidently drift report (linked from the task) and returns the per-column scores, the
    drifted columns and whether the data drifted.

    :param method: ``psi`` or ``ks``.
    :param column_threshold: a column drifts when its score passes this.
    :param share_threshold: the data drifts when this share of columns drifts.
    """

    operator_extra_links = (ReportLink(),)

    def __init__(self, *, method: str = "psi", column_threshold: float = 0.2, share_threshold: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.column_threshold = column_threshold
        self.share_threshold = share_threshold

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops import stages

        result = stages.drift_check(
            self.store, self.pipeline, method=self.method, column_threshold=self.column_threshold,
            share_threshold=self.share_threshold, run_id=context["run_id"],
        )
        ReportLink.persist(context, result["report_uri"])
        self.log.info("%s over %d rows: %s; report %s", "DRIFT" if result["drifted"] else "no drift", result["rows"], result["reason"], result["report_uri"])
        return result


class DriftBranchOperator(ResultBranchOperator):
    """``true_task_id`` (request retraining) when the drift check found drift, else ``false_task_id``."""

    def decide(self, result: dict[str, Any]) -> bool:
        return bool(result["drifted"])


class RetrainRequestOperator(MlopsBaseOperator):
    """Request retraining with its reason: emits the pipeline's retrain Asset event, at most one open
    request per pipeline and none within the cooldown (the task is skipped then, with why).

    :param drift: the drift check result (an XComArg, templated).
    :param cooldown_hours: minimum time between two requests.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "drift")

    def __init__(self, *, drift: Any, cooldown_hours: float = 24, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [retrain_asset(kwargs["pipeline"])])
        super().__init__(**kwargs)
        self.drift = drift
        self.cooldown_hours = cooldown_hours

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops import stages

        details = {"columns": self.drift["drifted_columns"], "scores": self.drift["scores"], "report_uri": self.drift["report_uri"]}
        result = stages.request_retrain(
            self.store, self.pipeline, reason=f"drift: {self.drift['reason']}", details=details,
            cooldown_hours=self.cooldown_hours, run_id=context["run_id"],
        )
        if not result["requested"]:
            raise AirflowSkipException(f"No retrain request: {result['why']}")
        context["outlet_events"][retrain_asset(self.pipeline)].extra = {"request_id": result["request_id"], "reason": result["why"]}
        self.log.info("Requested retraining of %s (%s): %s", self.pipeline, result["request_id"], result["why"])
        return result
