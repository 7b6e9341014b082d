"""Drift check against the production model's reference profile, and its branch."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from airflow_mlops.config.base import field_default
from airflow_mlops.config.data import ValidationConfig
from airflow_mlops.config.monitoring import DriftConfig
from airflow_mlops.links.report import ReportLink
from airflow_mlops.operators.base import MlopsBaseOperator, ResultBranchOperator


class DriftCheckOperator(MlopsBaseOperator):
    """Compare predictions logged since the last check with the production model's reference profile.

    Records the check and returns the per-column scores, the drifted columns, whether the data drifted, and
    where :class:`DriftReportOperator` renders the evidently report (linked from the task).

    :param method: ``psi`` or ``ks``.
    :param column_threshold: a column drifts when its score passes this.
    :param share_threshold: the data drifts when this share of columns drifts.
    :param validation: the pipeline's ``validation`` thresholds (defaults where not given): the same rows get
        validation's request checks against the accepted schema, reported beside the drift verdict.
    """

    operator_extra_links = (ReportLink(),)

    def __init__(
        self,
        *,
        method: str = field_default(DriftConfig, "method"),
        column_threshold: float = field_default(DriftConfig, "column_threshold"),
        share_threshold: float = field_default(DriftConfig, "share_threshold"),
        validation: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.validation = validation or {}
        self.method = method
        self.column_threshold = column_threshold
        self.share_threshold = share_threshold

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.monitoring import drift_check

        result = drift_check(
            self.store,
            self.pipeline,
            method=self.method,
            column_threshold=self.column_threshold,
            share_threshold=self.share_threshold,
            run_id=context["run_id"],
            quality=ValidationConfig.model_validate(self.validation).model_dump(),
        )
        ReportLink.persist(context, result["report_uri"])
        self.log.info(
            "%s over %d rows: %s; report %s",
            "DRIFT" if result["drifted"] else "no drift",
            result["rows"],
            result["reason"],
            result["report_uri"],
        )
        return result


class DriftReportOperator(MlopsBaseOperator):
    """Render evidently's drift report for this run's drift check (linked from the task), on a bounded sample
    of the new rows; each column is tested with the check's own score, so the report agrees with the decision."""

    operator_extra_links = (ReportLink(),)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.monitoring import drift_report

        result = drift_report(self.store, self.pipeline, run_id=context["run_id"])
        ReportLink.persist(context, result["report_uri"])
        self.log.info("Drift report over %d new rows: %s", result["rows"], result["report_uri"])
        return result


class LogCompactionOperator(MlopsBaseOperator):
    """Merge the prediction and feedback log parts of each past hour into one file per hour, without losing or
    duplicating a row (see :func:`airflow_mlops.serving.predlog_compaction.compact_log`); returns the counts per log."""

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.serving.predlog_compaction import compact_log

        return {kind: compact_log(self.store, self.pipeline, kind) for kind in ("predictions", "feedback")}


class DriftBranchOperator(ResultBranchOperator):
    """``true_task_id`` (request retraining) when the drift check found drift, else ``false_task_id``."""

    def decide(self, result: dict[str, Any]) -> bool:
        return bool(result["drifted"])
