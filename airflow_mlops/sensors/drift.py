"""Waits for enough newly logged predictions to make a drift check meaningful."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.factories.schema import DEFAULT_AWS_CONN_ID, MonitorConfig, field_default
from airflow_mlops.operators.base import ArtifactStoreMixin
from airflow_mlops.triggers import TriggerStatus


class DriftDataSensor(ArtifactStoreMixin, BaseSensorOperator):
    """Succeed once ``min_rows`` predictions were logged since the last drift check.

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated).
    :param min_rows: new logged rows needed.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots, used by the trigger as well.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param check_seconds: time between counts, in either mode.
    """

    template_fields: Sequence[str] = ("artifact_root",)

    def __init__(
        self,
        *,
        pipeline: str,
        artifact_root: str,
        min_rows: int = field_default(MonitorConfig, "min_rows"),
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        deferrable: bool = True,
        check_seconds: float = field_default(MonitorConfig, "check_seconds"),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", check_seconds)
        kwargs.setdefault("timeout", timedelta(hours=1))
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.artifact_root = artifact_root
        self.min_rows = min_rows
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable
        self.check_seconds = check_seconds

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_mlops.triggers.drift import PredictionRowsTrigger  # not at DAG parse time

        trigger = PredictionRowsTrigger(
            artifact_root=self.artifact_root,
            aws_conn_id=self.aws_conn_id,
            pipeline=self.pipeline,
            min_rows=self.min_rows,
            poll_seconds=self.check_seconds,
        )
        timeout = timedelta(seconds=self.timeout) if isinstance(self.timeout, int | float) else self.timeout
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        if not event or event.get("status") != TriggerStatus.SUCCESS:
            raise MlopsError(
                f"Waiting for logged predictions failed: {(event or {}).get('message')}\n{(event or {}).get('traceback', '')}"
            )
        self.log.info("%s", event["message"])
        return event["rows"]

    def poke(self, context: Context) -> bool:
        from airflow_mlops.stages.monitoring import new_logged_rows

        rows = new_logged_rows(self.store, self.pipeline)
        self.log.info("%d/%d new logged predictions", rows, self.min_rows)
        return rows >= self.min_rows
