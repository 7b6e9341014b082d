"""Waits, in the triggerer, until enough new predictions are logged for a drift check."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.operators.base import ArtifactStoreMixin
from airflow_mlops.triggers import TriggerStatus


class PredictionRowsTrigger(ArtifactStoreMixin, BaseTrigger):
    """Fire once at least ``min_rows`` predictions were logged since the last drift check.

    :param artifact_root: the artifact store.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots (as the operators use it).
    :param mlops_conn_id: the ``mlops_artifacts`` connection holding the root, when ``artifact_root`` is None.
    :param pipeline: pipeline name.
    :param min_rows: new rows needed.
    :param poll_seconds: time between counts.
    """

    def __init__(
        self,
        *,
        artifact_root: str | None,
        aws_conn_id: str | None,
        pipeline: str,
        min_rows: int,
        poll_seconds: float,
        mlops_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.artifact_root = artifact_root
        self.aws_conn_id = aws_conn_id
        self.mlops_conn_id = mlops_conn_id
        self.pipeline = pipeline
        self.min_rows = min_rows
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "artifact_root": self.artifact_root,
                "aws_conn_id": self.aws_conn_id,
                "mlops_conn_id": self.mlops_conn_id,
                "pipeline": self.pipeline,
                "min_rows": self.min_rows,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.stages.monitoring import new_logged_rows

        try:
            store = await asyncio.to_thread(lambda: self.store)  # the hook may look the connection up
            while True:
                rows = await asyncio.to_thread(new_logged_rows, store, self.pipeline)
                if rows >= self.min_rows:
                    yield TriggerEvent(
                        {"status": TriggerStatus.SUCCESS, "message": f"{rows} new logged predictions", "rows": rows}
                    )
                    return
                self.log.info("%d/%d new logged predictions for %s", rows, self.min_rows, self.pipeline)
                await asyncio.sleep(self.poll_seconds)
        except Exception as err:
            yield TriggerEvent({"status": TriggerStatus.ERROR, "message": str(err), "traceback": traceback.format_exc()})
