"""Waits, in the triggerer, until a deployment check has a verdict: a canary step, or a post-promotion watch."""

from __future__ import annotations

import asyncio
import importlib
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.operators.base import ArtifactStoreMixin
from airflow_mlops.triggers import TriggerStatus

CHECKS = {
    "canary_check": "airflow_mlops.stages.deployment.canary",
    "promotion_watch_check": "airflow_mlops.stages.deployment.promotion_watch",
}
"""The checks of the deployment stage a trigger may poll, by name, with the module that holds each: each returns a
verdict or None."""


def deployment_check(name: str) -> Callable[..., dict[str, Any] | None]:
    """The check called ``name`` (one of :data:`CHECKS`), imported from its stage module."""
    return getattr(importlib.import_module(CHECKS[name]), name)


class DeploymentCheckTrigger(ArtifactStoreMixin, BaseTrigger):
    """Poll ``check`` until it returns a verdict, then fire it.

    :param artifact_root: the artifact store.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots (as the operators use it).
    :param mlops_conn_id: the ``mlops_artifacts`` connection holding the root, when ``artifact_root`` is None.
    :param pipeline: pipeline name.
    :param check: one of :data:`CHECKS`.
    :param arguments: the check's keyword arguments, but for the store, the pipeline and ``now``.
    :param poll_seconds: time between checks.
    """

    def __init__(
        self,
        *,
        artifact_root: str | None,
        aws_conn_id: str | None,
        pipeline: str,
        check: str,
        arguments: dict[str, Any],
        poll_seconds: float,
        mlops_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        if check not in CHECKS:
            raise MlopsError(f"Unknown deployment check {check!r}; expected one of {tuple(CHECKS)}.")
        self.artifact_root = artifact_root
        self.aws_conn_id = aws_conn_id
        self.mlops_conn_id = mlops_conn_id
        self.pipeline = pipeline
        self.check = check
        self.arguments = arguments
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "artifact_root": self.artifact_root,
                "aws_conn_id": self.aws_conn_id,
                "mlops_conn_id": self.mlops_conn_id,
                "pipeline": self.pipeline,
                "check": self.check,
                "arguments": self.arguments,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        check = deployment_check(self.check)
        try:
            store = await asyncio.to_thread(lambda: self.store)  # the hook may look the connection up
            while True:
                verdict = await asyncio.to_thread(check, store, self.pipeline, **self.arguments, now=time.time())
                if verdict is not None:
                    yield TriggerEvent({"status": TriggerStatus.SUCCESS, "message": verdict["reason"], "verdict": verdict})
                    return
                await asyncio.sleep(self.poll_seconds)
        except Exception as err:
            yield TriggerEvent({"status": TriggerStatus.ERROR, "message": str(err), "traceback": traceback.format_exc()})
