"""Labels in and realized performance: ingest the label exports (and the /feedback log) joined to the prediction
log, then judge the production model's performance against its reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID, field_default
from airflow_mlops.config.monitoring import LabelsConfig, PerformanceConfig
from airflow_mlops.ml.metrics import DEFAULT_METRIC
from airflow_mlops.operators.base import MlopsBaseOperator, source_client
from airflow_mlops.operators.data import SQL_CHUNK_ROWS


class LabelIngestOperator(MlopsBaseOperator):
    """Read the labels that arrived since the last run (new label files, new rows of the ``/feedback`` log), keep
    the first label of each id, join them to the prediction log by id and store the joined rows; returns the counts
    (read, invalid, duplicates, already labelled, unknown ids, joined) and the prediction days they fall on.

    :param labels_uri: label files: a path or glob, or ``s3://bucket/prefix`` (optionally with a glob); None: only
        the ``/feedback`` log (templated).
    :param labels_sql: instead of files, a query on ``labels_conn_id`` (templated); its result is stored by content
        under ``labels/<pipeline>/queries/`` and read as a label export, once.
    :param labels_conn_id: the Airflow connection of ``labels_sql`` (a common-sql ``DbApiHook``).
    :param labels_format: ``auto``, ``csv`` or ``parquet``.
    :param labels_aws_conn_id: Airflow AWS connection for ``s3://`` label files.
    :param id_column: the column holding the prediction id.
    :param label_column: the column holding the label.
    :param event_time_column: optional column of when the outcome happened.
    :param max_delay_days: labels are joined to predictions logged at most this long ago.
    :param slices: slice columns kept with each joined label (the pipeline's ``evaluation.slices``).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "labels_uri", "labels_sql")

    def __init__(
        self,
        *,
        labels_uri: str | None = None,
        labels_sql: str | None = None,
        labels_conn_id: str | None = None,
        labels_format: str = field_default(LabelsConfig, "format"),
        labels_aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        id_column: str = field_default(LabelsConfig, "id_column"),
        label_column: str = "label",
        event_time_column: str | None = None,
        max_delay_days: float = field_default(LabelsConfig, "max_delay_days"),
        slices: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.labels_uri = labels_uri
        self.labels_sql = labels_sql
        self.labels_conn_id = labels_conn_id
        self.labels_format = labels_format
        self.labels_aws_conn_id = labels_aws_conn_id
        self.id_column = id_column
        self.label_column = label_column
        self.event_time_column = event_time_column
        self.max_delay_days = max_delay_days
        self.slices = slices or []

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.labels import LabelSource, ingest_labels

        uri = self.labels_uri or None
        client = source_client(uri, self.labels_aws_conn_id) if uri else None
        if self.labels_sql:
            from airflow_mlops.operators.data import query_batches
            from airflow_mlops.stages.label_exports import store_label_query

            self.log.info("Reading labels by a query on connection %s: %s", self.labels_conn_id, self.labels_sql)
            batches = query_batches(self.labels_conn_id, self.labels_sql, SQL_CHUNK_ROWS, name=f"mlops_{self.task_id}")
            uri, client = store_label_query(self.store, self.pipeline, batches), getattr(self.store, "client", None)
        source = LabelSource(
            uri=uri,
            fmt=self.labels_format,
            id_column=self.id_column,
            label_column=self.label_column,
            event_time_column=self.event_time_column,
            max_delay_days=self.max_delay_days,
        )
        result = ingest_labels(
            self.store, self.pipeline, source, slices=list(self.slices), run_id=context["run_id"], s3_client=client
        )
        self.log.info(
            "%d new label(s) joined from %d file(s) and the feedback log; %d duplicate(s), %d already labelled, "
            "%d for unknown ids (e.g. %s)",
            result["joined"],
            result["files"],
            result["duplicates"],
            result["already_labelled"],
            result["unknown"],
            result["unknown_examples"],
        )
        return result


class PerformanceCheckOperator(MlopsBaseOperator):
    """Judge the production model's realized performance in each window this run's labels fell in (per model
    version and slice, with bootstrap intervals) against its reference from training, and estimate it before labels
    (binary classification); records the check and returns whether performance dropped, and why.

    :param ingest: the :class:`LabelIngestOperator` result (an XComArg, templated).
    :param problem_type: ``classification`` or ``regression``.
    :param metric: the metric judged; None: the task's default.
    :param max_drop: a drop whose whole interval is above this counts.
    :param min_labels: labelled predictions a window needs to be judged.
    :param confidence: of the bootstrap intervals.
    :param window_hours: length of a window (UTC-aligned).
    :param estimated: ``off``, ``warn`` (record and log) or ``request`` (an estimated drop counts).
    :param slices: slice columns reported per value.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "ingest")

    def __init__(
        self,
        *,
        ingest: Any = None,
        problem_type: str,
        metric: str | None = None,
        max_drop: float = field_default(PerformanceConfig, "max_drop"),
        min_labels: int = field_default(PerformanceConfig, "min_labels"),
        confidence: float = field_default(PerformanceConfig, "confidence"),
        window_hours: float = field_default(PerformanceConfig, "window_hours"),
        estimated: str = field_default(PerformanceConfig, "estimated"),
        slices: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ingest = ingest
        self.problem_type = problem_type
        self.metric = metric
        self.max_drop = max_drop
        self.min_labels = min_labels
        self.confidence = confidence
        self.window_hours = window_hours
        self.estimated = estimated
        self.slices = slices or []

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.performance import PerformanceSettings, performance_check

        settings = PerformanceSettings(
            task=self.problem_type,
            metric=self.metric or DEFAULT_METRIC[self.problem_type],
            max_drop=self.max_drop,
            min_labels=self.min_labels,
            confidence=self.confidence,
            window_hours=self.window_hours,
            estimated=self.estimated,
            slices=list(self.slices),
        )
        result = performance_check(self.store, self.pipeline, settings, run_id=context["run_id"], ingest=self.ingest)
        self.log.info("%s: %s", "PERFORMANCE DROP" if result["dropped"] else "no performance drop", result["reason"])
        return result
