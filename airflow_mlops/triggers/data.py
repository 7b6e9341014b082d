"""Waits, in the triggerer, until the pipeline's source has data."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.triggers import TriggerStatus


def found_files(uri: str, s3_client: Any) -> list[str]:
    """The source's files or objects now; none yet is an empty list, not an error."""
    from airflow_mlops.exceptions import ArtifactNotFound
    from airflow_mlops.store.datasets import source_files

    try:
        return source_files(uri, s3_client)
    except ArtifactNotFound:
        return []


class SourceFilesTrigger(BaseTrigger):
    """Fire once ``source_uri`` (a local path or glob, or an ``s3://`` prefix) has a file or object.

    :param source_uri: the rendered source.
    :param aws_conn_id: Airflow AWS connection for an ``s3://`` source.
    :param poll_seconds: time between looks.
    """

    def __init__(self, *, source_uri: str, aws_conn_id: str | None, poll_seconds: float) -> None:
        super().__init__()
        self.source_uri = source_uri
        self.aws_conn_id = aws_conn_id
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"source_uri": self.source_uri, "aws_conn_id": self.aws_conn_id, "poll_seconds": self.poll_seconds},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.operators.base import source_client

        try:
            client = await asyncio.to_thread(source_client, self.source_uri, self.aws_conn_id)  # may look the connection up
            while True:
                files = await asyncio.to_thread(found_files, self.source_uri, client)
                if files:
                    message = f"{self.source_uri}: {len(files)} file(s)"
                    yield TriggerEvent({"status": TriggerStatus.SUCCESS, "message": message, "files": len(files)})
                    return
                self.log.info("Waiting for %s", self.source_uri)
                await asyncio.sleep(self.poll_seconds)
        except Exception as err:
            yield TriggerEvent({"status": TriggerStatus.ERROR, "message": str(err), "traceback": traceback.format_exc()})
