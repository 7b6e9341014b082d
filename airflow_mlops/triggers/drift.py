"""Waits, in the triggerer, until enough new predictions are logged for a drift check."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.triggers import TriggerStatus


class PredictionRowsTrigger(BaseTrigger):
    """Fire once at least ``min_rows`` predictions were logged since the last drift check.

    :param artifact_root: the artifact store.
    :param pipeline: pipeline name.
    :param min_rows: new rows needed.
    :param poll_seconds: time between counts.
    """

    def __init__(self, *, artifact_root: str, pipeline: str, min_rows: int, poll_seconds: float = 30.0) -> None:
        super().__init__()
        self.artifact_root = artifact_root
        self.pipeline = pipeline
        self.min_rows = min_rows
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"artifact_root": self.artifact_root, "pipeline": self.pipeline, "min_rows": self.min_rows, "poll_seconds": self.poll_seconds},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops import stages
        from airflow_mlops.store.artifacts import ArtifactStore

        try:
            store = ArtifactStore.from_uri(self.artifact_root)
            while True:
                rows = await asyncio.to_thread(stages.new_logged_rows, store, self.pipeline)
                if rows >= self.min_rows:
                    yield TriggerEvent({"status": TriggerStatus.SUCCESS, "message": f"{rows} new logged predictions", "rows": rows})
                    return
                self.log.info("%d/%d new logged predictions for %s", rows, self.min_rows, self.pipeline)
                await asyncio.sleep(self.poll_seconds)
        except Exception as err:
            yield TriggerEvent({"status": TriggerStatus.ERROR, "message": str(err), "traceback": traceback.format_exc()})
