"""Steps a canary through its traffic shares, judging each step against production; then watches the promoted model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.base import field_default
from airflow_mlops.config.deployment import CanaryAnalysisConfig, CanaryConfig, PromotionWatchConfig
from airflow_mlops.operators.deployment import ServingTargetMixin
from airflow_mlops.sensors.base import MlopsSensor

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger


class DeploymentCheckSensor(MlopsSensor):
    """Poll a check of the deployment stage (:data:`airflow_mlops.triggers.canary.CHECKS`) and act on each verdict
    (:meth:`on_verdict`) until that gives the task's result."""

    check_name: str

    def arguments(self) -> dict[str, Any]:
        """The check's keyword arguments, but for the store, the pipeline and ``now``."""
        raise NotImplementedError

    def on_verdict(self, verdict: dict[str, Any]) -> dict[str, Any] | None:
        """The task's result, or None to wait for the next verdict."""
        raise NotImplementedError

    def check(self) -> tuple[bool, Any]:
        from airflow_mlops.triggers.canary import deployment_check

        verdict = deployment_check(self.check_name)(self.store, self.pipeline, **self.arguments(), now=time.time())
        result = None if verdict is None else self.on_verdict(verdict)
        return result is not None, result

    def trigger(self) -> BaseTrigger:
        from airflow_mlops.triggers.canary import DeploymentCheckTrigger  # not at DAG parse time

        return DeploymentCheckTrigger(
            artifact_root=self.artifact_root,
            aws_conn_id=self.aws_conn_id,
            mlops_conn_id=self.mlops_conn_id,
            pipeline=self.pipeline,
            check=self.check_name,
            arguments=self.arguments(),
            poll_seconds=self.poke_interval,
        )

    def on_event(self, event: dict[str, Any]) -> tuple[bool, Any]:
        result = self.on_verdict(event["verdict"])
        return result is not None, result


class CanaryAnalysisSensor(ServingTargetMixin, DeploymentCheckSensor):
    """Wait for each canary step's bake time or minimum requests, compare canary and production over
    the same window (error rate, p95 latency, prediction divergence, label quality where feedback
    exists), move to the next share when it passes, and finish with ``{"decision": "promote" | "rollback"}``.

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated).
    :param steps: canary traffic percent at each step; the deploy operator set the first.
    :param problem_type: ``classification``, ``multiclass`` or ``regression`` (for label quality).
    :param min_requests: canary requests that end a step's wait.
    :param bake_minutes: time that ends a step's wait.
    :param criteria: :class:`airflow_mlops.ml.canary.Criteria` fields; those not given take the config's
        defaults (``canary.analysis``).
    :param target: ``local`` or ``kserve`` (each next step then also moves the InferenceService's canary share).
    :param kserve: with ``kserve``, the config's ``canary.kserve`` fields.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots, used by the trigger as well.
    :param deferrable: wait in the triggerer instead of a worker slot (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between checks, in either mode.
    """

    check_name = "canary_check"

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
        kwargs.setdefault("poke_interval", field_default(CanaryConfig, "check_seconds"))
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
        from airflow_mlops.stages.deployment.canary import canary_deploy
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
        canary_deploy(self.store, self.pipeline, verdict["version"], later[0], target=self.serving_target)
        return None


class PromotionWatchSensor(ServingTargetMixin, DeploymentCheckSensor):
    """Watch a promoted model for ``watch_minutes`` against the holdback its promotion kept on the replaced model
    (``CanaryResolveOperator(holdback_percent=...)``), both over the same window as the canary analysis compares
    (error rate, p95 latency over the SLO floor, label quality); without a holdback, its rows since promotion
    against the figures of its last canary step. On a breach, production goes back to the replaced model at
    once (one compare-and-swap on the alias) with the reason recorded; otherwise the model is kept; either way the
    holdback ends. Finishes with ``{"decision": "kept" | "reverted" | "breached", ...}``; it files no retrain request.

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated).
    :param promotion: the promote task's result (templated): its ``version`` is watched; a run that did not
        promote has nothing to watch.
    :param problem_type: ``classification``, ``multiclass`` or ``regression`` (for label quality).
    :param watch_minutes: how long the model is watched.
    :param min_requests: requests each side (the promoted model, the holdback) needs since promotion before the
        watch judges.
    :param criteria: :class:`airflow_mlops.ml.canary.Criteria` fields (the config's ``canary.analysis``).
    :param target: ``local`` or ``kserve`` (the end of the watch then sets the InferenceService's traffic: the
        kept model alone, or the replaced model back).
    :param kserve: with ``kserve``, the config's ``canary.kserve`` fields.
    """

    template_fields: Sequence[str] = (*MlopsSensor.template_fields, "promotion")
    check_name = "promotion_watch_check"

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
        kwargs.setdefault("poke_interval", field_default(CanaryConfig, "check_seconds"))
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
        from airflow_mlops.stages.deployment.promotion_watch import resolve_watch

        return resolve_watch(self.store, self.pipeline, verdict, target=self.serving_target)
