"""Waits for enough newly logged predictions to make a drift check meaningful."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.config.base import field_default
from airflow_mlops.config.monitoring import MonitorConfig
from airflow_mlops.sensors.base import MlopsSensor

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger


class DriftDataSensor(MlopsSensor):
    """Succeed once ``min_rows`` predictions were logged since the last drift check; returns their count.

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated).
    :param min_rows: new logged rows needed.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots, used by the trigger as well.
    :param deferrable: wait in the triggerer instead of a worker slot (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between counts, in either mode.
    """

    def __init__(self, *, min_rows: int = field_default(MonitorConfig, "min_rows"), **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", field_default(MonitorConfig, "check_seconds"))
        kwargs.setdefault("timeout", 3600)
        super().__init__(**kwargs)
        self.min_rows = min_rows

    def check(self) -> tuple[bool, Any]:
        from airflow_mlops.stages.monitoring import new_logged_rows

        rows = new_logged_rows(self.store, self.pipeline)
        self.log.info("%d/%d new logged predictions", rows, self.min_rows)
        return rows >= self.min_rows, rows

    def trigger(self) -> BaseTrigger:
        from airflow_mlops.triggers.drift import PredictionRowsTrigger  # not at DAG parse time

        return PredictionRowsTrigger(
            artifact_root=self.artifact_root,
            aws_conn_id=self.aws_conn_id,
            mlops_conn_id=self.mlops_conn_id,
            pipeline=self.pipeline,
            min_rows=self.min_rows,
            poll_seconds=self.poke_interval,
        )

    def on_event(self, event: dict[str, Any]) -> tuple[bool, Any]:
        self.log.info("%s", event["message"])
        return True, event["rows"]
