"""Steps a canary through its traffic shares, judging each step against production; then watches the promoted model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.factories.schema import (
    DEFAULT_AWS_CONN_ID,
    CanaryAnalysisConfig,
    CanaryConfig,
    PromotionWatchConfig,
    field_default,
)
from airflow_mlops.operators.base import ArtifactStoreMixin
from airflow_mlops.triggers import TriggerStatus


class DeploymentCheckSensor(ArtifactStoreMixin, BaseSensorOperator):
    """Poll a check of :mod:`airflow_mlops.stages.deployment` (in the triggerer when deferrable) and act on each
    verdict (:meth:`on_verdict`) until that gives the task's result.

    :param deferrable: wait in the triggerer instead of a worker slot.
    :param check_seconds: time between checks, in either mode.
    """

    template_fields: Sequence[str] = ("artifact_root",)
    check: str

    def __init__(
        self,
        *,
        pipeline: str,
        artifact_root: str,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        deferrable: bool = True,
        check_seconds: float = field_default(CanaryConfig, "check_seconds"),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", check_seconds)
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.artifact_root = artifact_root
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable
        self.check_seconds = check_seconds

    def arguments(self) -> dict[str, Any]:
        """The check's keyword arguments, but for the store, the pipeline and ``now``."""
        raise NotImplementedError

    def on_verdict(self, verdict: dict[str, Any]) -> dict[str, Any] | None:
        """The task's result, or None to wait for the next verdict."""
        raise NotImplementedError

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self._defer()

    def _defer(self) -> None:
        from airflow_mlops.triggers.canary import DeploymentCheckTrigger  # not at DAG parse time

        trigger = DeploymentCheckTrigger(
            artifact_root=self.artifact_root,
            aws_conn_id=self.aws_conn_id,
            pipeline=self.pipeline,
            check=self.check,
            arguments=self.arguments(),
            poll_seconds=self.check_seconds,
        )
        timeout = timedelta(seconds=self.timeout) if isinstance(self.timeout, int | float) else self.timeout
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if not event or event.get("status") != TriggerStatus.SUCCESS:
            raise MlopsError(f"{self.check} failed: {(event or {}).get('message')}\n{(event or {}).get('traceback', '')}")
        result = self.on_verdict(event["verdict"])
        if result is None:
            self._defer()
        return result

    def poke(self, context: Context) -> PokeReturnValue:
        from airflow_mlops.stages import deployment

        verdict = getattr(deployment, self.check)(self.store, self.pipeline, **self.arguments(), now=time.time())
        result = None if verdict is None else self.on_verdict(verdict)
        return PokeReturnValue(is_done=result is not None, xcom_value=result)


class CanaryAnalysisSensor(DeploymentCheckSensor):
    """Wait for each canary step's bake time or minimum requests, compare canary and production over
    the same window (error rate, p95 latency, prediction divergence, label quality where feedback
    exists), move to the next share when it passes, and finish with ``{"decision": "promote" | "rollback"}``.

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated).
    :param steps: canary traffic percent at each step; the deploy operator set the first.
    :param problem_type: ``classification`` or ``regression`` (for label quality).
    :param min_requests: canary requests that end a step's wait.
    :param bake_minutes: time that ends a step's wait.
    :param criteria: :class:`airflow_mlops.ml.canary.Criteria` fields; those not given take the config's
        defaults (``canary.analysis``).
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots, used by the trigger as well.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param check_seconds: time between checks, in either mode.
    """

    check = "canary_check"

    def __init__(
        self,
        *,
        steps: list[int],
        problem_type: str,
        min_requests: int = field_default(CanaryConfig, "min_requests"),
        bake_minutes: float = field_default(CanaryConfig, "bake_minutes"),
        criteria: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", (bake_minutes * 60 + 300) * (len(steps) + 1))
        super().__init__(**kwargs)
        self.steps = steps
        self.problem_type = problem_type
        self.min_requests = min_requests
        self.bake_minutes = bake_minutes
        self.criteria = criteria or {}

    def arguments(self) -> dict[str, Any]:
        return {
            "task": self.problem_type,
            "min_requests": self.min_requests,
            "bake_seconds": self.bake_minutes * 60,
            "criteria": CanaryAnalysisConfig.model_validate(self.criteria).model_dump(),
        }

    def on_verdict(self, verdict: dict[str, Any]) -> dict[str, Any] | None:
        """The decision once a step fails or the last step passes; otherwise move to the next share (None)."""
        from airflow_mlops.stages.deployment import canary_deploy
        from airflow_mlops.store.events import append_event

        append_event(
            self.store,
            self.pipeline,
            "canary_analysis",
            version=verdict.get("version"),
            weight=verdict.get("weight"),
            passed=verdict["passed"],
            reason=verdict["reason"],
            figures=verdict["figures"],
        )
        self.log.info(
            "Canary %s at %s%%: %s (%s)",
            verdict.get("version"),
            verdict.get("weight"),
            "PASSED" if verdict["passed"] else "FAILED",
            verdict["reason"],
        )
        if not verdict["passed"]:
            return {"decision": "rollback", **verdict}
        later = [s for s in self.steps if s > (verdict.get("weight") or 0)]
        if not later:
            return {"decision": "promote", **verdict}
        canary_deploy(self.store, self.pipeline, verdict["version"], later[0])
        return None


class PromotionWatchSensor(DeploymentCheckSensor):
    """Watch a promoted model for ``watch_minutes``: its rows since promotion against the figures of its last
    canary step (its own and the replaced model's). On a breach, production goes back to the replaced model at
    once (one compare-and-swap on the alias) with the reason recorded; otherwise the model is kept. Finishes
    with ``{"decision": "kept" | "reverted" | "breached", ...}``; it files no retrain request.

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated).
    :param promotion: the promote task's result (templated): its ``version`` is watched; a run that did not
        promote has nothing to watch.
    :param problem_type: ``classification`` or ``regression`` (for label quality).
    :param watch_minutes: how long the model is watched.
    :param min_requests: requests since promotion before the watch judges.
    :param criteria: :class:`airflow_mlops.ml.canary.Criteria` fields (the config's ``canary.analysis``).
    """

    template_fields: Sequence[str] = ("artifact_root", "promotion")
    check = "promotion_watch_check"

    def __init__(
        self,
        *,
        promotion: Any,
        problem_type: str,
        watch_minutes: float = field_default(PromotionWatchConfig, "minutes"),
        min_requests: int = field_default(PromotionWatchConfig, "min_requests"),
        criteria: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", watch_minutes * 60 + 600)
        super().__init__(**kwargs)
        self.promotion = promotion
        self.problem_type = problem_type
        self.watch_minutes = watch_minutes
        self.min_requests = min_requests
        self.criteria = criteria or {}

    def arguments(self) -> dict[str, Any]:
        return {
            "task": self.problem_type,
            "version": self.promotion["version"],
            "watch_seconds": self.watch_minutes * 60,
            "min_requests": self.min_requests,
            "criteria": CanaryAnalysisConfig.model_validate(self.criteria).model_dump(),
        }

    def on_verdict(self, verdict: dict[str, Any]) -> dict[str, Any]:
        from airflow_mlops.stages.deployment import resolve_watch

        return resolve_watch(self.store, self.pipeline, verdict)
