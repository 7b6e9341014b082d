"""The monitor DAG's tasks: the drift path, and with ``monitor.labels`` (or ``monitor.performance``) the labels and
performance path, both deciding one retrain request. Imported at DAG parse time: nothing heavy here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_mlops.ml.metrics import DEFAULT_METRIC
from airflow_mlops.operators.monitoring import (
    DriftBranchOperator,
    DriftCheckOperator,
    DriftReportOperator,
    LogCompactionOperator,
)
from airflow_mlops.operators.retraining import RetrainBranchOperator, RetrainRequestOperator
from airflow_mlops.sensors.drift import DriftDataSensor

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig
    from airflow_mlops.operators.performance import PerformanceCheckOperator


def monitor_tasks(config: PipelineConfig, common: dict[str, Any], *, notifiers: Callable[[str], list[Any]]) -> None:
    """Inside the monitor DAG: wait_for_predictions -> drift_check -> [branch, drift_report, compact_log];
    branch -> request_retrain | no_drift. With performance: ingest_labels -> performance_check, and the branch and
    the request decide on both results (no_retrain when neither asks): one request per run, whatever triggered it.

    :param notifiers: the pipeline's notifier callbacks for an event (``operations.notify``).
    """
    monitor = config.monitor
    wait = DriftDataSensor(
        task_id="wait_for_predictions", min_rows=monitor.min_rows, poke_interval=monitor.check_seconds, **common
    )
    check = DriftCheckOperator(
        task_id="drift_check",
        method=monitor.drift.method,
        column_threshold=monitor.drift.column_threshold,
        share_threshold=monitor.drift.share_threshold,
        validation=dict(config.validation),
        **common,
    )
    performance = None
    if monitor.performance_check is not None:
        performance = performance_tasks(config, common, notify=notifiers("performance_drop"))
        branch = RetrainBranchOperator(
            task_id="branch",
            drift=check.output,
            performance=performance.output,
            true_task_id="request_retrain",
            false_task_id="no_retrain",
        )
    else:
        branch = DriftBranchOperator(
            task_id="branch", result=check.output, true_task_id="request_retrain", false_task_id="no_drift"
        )
    request = RetrainRequestOperator(
        task_id="request_retrain",
        drift=check.output,
        performance=performance.output if performance else None,
        cooldown_hours=monitor.cooldown_hours,
        max_open_hours=monitor.request_max_open_hours,
        approval=monitor.approval,
        on_success_callback=notifiers("retrain_request") or None,
        # With performance, a drift check that never ran (no new predictions) leaves the decision to the other check.
        trigger_rule="all_done" if performance else "all_success",
        **common,
    )
    from airflow.providers.standard.operators.empty import EmptyOperator

    done = EmptyOperator(task_id="no_retrain" if performance else "no_drift")
    report = DriftReportOperator(task_id="drift_report", **common)
    compact = LogCompactionOperator(task_id="compact_log", **common)
    wait >> check >> [branch, report, compact]
    branch >> [request, done]


def performance_tasks(config: PipelineConfig, common: dict[str, Any], *, notify: list[Any]) -> PerformanceCheckOperator:
    """ingest_labels (label files and the /feedback log, joined to the prediction log) -> performance_check; returns
    the check. ``notify``: the pipeline's ``performance_drop`` notifiers (sent when the check found a drop)."""
    from airflow_mlops.operators.performance import LabelIngestOperator, PerformanceCheckOperator  # with labels only

    monitor = config.monitor
    performance, labels, gate = monitor.performance_check, monitor.labels, config.evaluation
    slices = list(gate.slices) if gate else []
    source: dict[str, Any] = {"label_column": config.label}
    if labels is not None:
        source |= {
            "labels_uri": labels.uri,
            "labels_sql": labels.sql,
            "labels_conn_id": labels.conn_id,
            "labels_format": labels.format,
            "labels_aws_conn_id": labels.aws_conn_id,
            "id_column": labels.id_column,
            "label_column": labels.label_column or config.label,
            "event_time_column": labels.event_time_column,
            "max_delay_days": labels.max_delay_days,
        }
    ingest = LabelIngestOperator(task_id="ingest_labels", slices=slices, **source, **common)
    return PerformanceCheckOperator(
        task_id="performance_check",
        ingest=ingest.output,
        problem_type=config.task,
        metric=performance.metric or (gate.metric if gate else DEFAULT_METRIC[config.task]),
        max_drop=performance.max_drop,
        min_labels=performance.min_labels,
        confidence=performance.confidence,
        window_hours=performance.window_hours,
        estimated=performance.estimated,
        slices=slices,
        on_success_callback=notify or None,
        **common,
    )
