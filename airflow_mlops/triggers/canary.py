"""Waits, in the triggerer, until the current canary step can be judged."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.operators.base import ArtifactStoreMixin
from airflow_mlops.triggers import TriggerStatus


class CanaryAnalysisTrigger(ArtifactStoreMixin, BaseTrigger):
    """Poll the prediction log until the canary step has its minimum requests or its bake time, then judge it.

    :param artifact_root: the artifact store.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots (as the operators use it).
    :param pipeline: pipeline name.
    :param problem_type: ``classification`` or ``regression``.
    :param min_requests: canary requests that end the wait.
    :param bake_seconds: time that ends the wait.
    :param criteria: :class:`airflow_mlops.ml.canary.Criteria` fields.
    :param poll_seconds: time between checks.
    """

    def __init__(
        self,
        *,
        artifact_root: str,
        aws_conn_id: str | None,
        pipeline: str,
        problem_type: str,
        min_requests: int,
        bake_seconds: float,
        criteria: dict[str, Any],
        poll_seconds: float,
    ) -> None:
        super().__init__()
        self.artifact_root = artifact_root
        self.aws_conn_id = aws_conn_id
        self.pipeline = pipeline
        self.problem_type = problem_type
        self.min_requests = min_requests
        self.bake_seconds = bake_seconds
        self.criteria = criteria
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "artifact_root": self.artifact_root,
                "aws_conn_id": self.aws_conn_id,
                "pipeline": self.pipeline,
                "problem_type": self.problem_type,
                "min_requests": self.min_requests,
                "bake_seconds": self.bake_seconds,
                "criteria": self.criteria,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.stages.deployment import canary_check

        try:
            store = await asyncio.to_thread(lambda: self.store)  # the hook may look the connection up
            while True:
                verdict = await asyncio.to_thread(
                    canary_check,
                    store,
                    self.pipeline,
                    task=self.problem_type,
                    min_requests=self.min_requests,
                    bake_seconds=self.bake_seconds,
                    criteria=self.criteria,
                    now=time.time(),
                )
                if verdict is not None:
                    yield TriggerEvent({"status": TriggerStatus.SUCCESS, "message": verdict["reason"], "verdict": verdict})
                    return
                await asyncio.sleep(self.poll_seconds)
        except Exception as err:
            yield TriggerEvent({"status": TriggerStatus.ERROR, "message": str(err), "traceback": traceback.format_exc()})
