"""Waits for late data: the pipeline's source before acquire."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.base import field_default
from airflow_mlops.config.data import SourceWaitConfig
from airflow_mlops.operators.base import SourceMixin
from airflow_mlops.sensors.base import MlopsSensor

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger


class SourceWaitSensor(SourceMixin, MlopsSensor):
    """Succeed once the source has at least one file (a local path or glob) or object (an ``s3://`` prefix);
    returns ``{"source", "files"}``. On timeout the task fails naming the path it waited for.

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated; not read, kept for the common signature).
    :param source_uri: what acquire will read (templated, as acquire renders it).
    :param source_aws_conn_id: AWS connection for an ``s3://`` source; defaults to ``aws_conn_id``.
    :param deferrable: wait in the triggerer instead of a worker slot (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between looks, in either mode (the config's ``source.wait.poke_seconds``).
    :param timeout: seconds before the task fails (the config's ``source.wait.timeout_minutes``).
    """

    template_fields: Sequence[str] = (*MlopsSensor.template_fields, "source_uri")

    def __init__(self, *, source_uri: str, source_aws_conn_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", field_default(SourceWaitConfig, "poke_seconds"))
        kwargs.setdefault("timeout", field_default(SourceWaitConfig, "timeout_minutes") * 60)
        super().__init__(**kwargs)
        self.source_uri = source_uri
        self.source_aws_conn_id = source_aws_conn_id or self.aws_conn_id

    def timeout_message(self) -> str:
        return (
            f"No source data at {self.source_uri} after {self.timeout / 60:g} minutes of waiting (source.wait.timeout_minutes)."
        )

    def check(self) -> tuple[bool, Any]:
        from airflow_mlops.triggers.data import found_files

        files = found_files(self.source_uri, self.source_client())
        self.log.info("%s: %d file(s)", self.source_uri, len(files))
        return bool(files), {"source": self.source_uri, "files": len(files)}

    def trigger(self) -> BaseTrigger:
        from airflow_mlops.triggers.data import SourceFilesTrigger  # not at DAG parse time

        return SourceFilesTrigger(
            source_uri=self.source_uri, aws_conn_id=self.source_aws_conn_id, poll_seconds=self.poke_interval
        )

    def on_event(self, event: dict[str, Any]) -> tuple[bool, Any]:
        self.log.info("%s", event["message"])
        return True, {"source": self.source_uri, "files": event["files"]}
