"""Canary deployment on the model server (local, or a KServe InferenceService): deploy, decide, promote or roll back."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.operators.base import MlopsBaseOperator, ResultBranchOperator

if TYPE_CHECKING:
    from airflow_mlops.serving.targets import ServingTarget
    from airflow_mlops.store.artifacts import ArtifactStore


class ServingTargetMixin:
    """The serving target of a task with ``target`` (``local`` | ``kserve``) and ``kserve`` (the config's
    ``canary.kserve`` as a dict, its connection included), both taken by its ``__init__``: None for the local model
    server (it follows the registry by itself), else a :class:`~airflow_mlops.hooks.kserve.KServeHook` on the
    pipeline's InferenceService. Built on first use, never at parse time; pass it to the stage functions as
    ``target=``."""

    pipeline: str
    store: ArtifactStore

    def __init__(self, *, target: str = "local", kserve: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.kserve = kserve

    @cached_property
    def serving_target(self) -> ServingTarget | None:
        if self.target == "local":
            return None
        if self.target != "kserve" or not self.kserve:
            raise MlopsError(f"{self.pipeline}: target {self.target!r} needs 'local', or 'kserve' with a kserve dict.")
        from airflow_mlops.config.deployment import KServeConfig
        from airflow_mlops.hooks.kserve import KServeHook
        from airflow_mlops.serving.kserve import InferenceServiceSpec

        config = KServeConfig.model_validate(self.kserve).model_dump()  # the defaults of keys not given
        spec = InferenceServiceSpec.from_config(self.pipeline, self.store.root_uri, config)
        return KServeHook(spec, kubernetes_conn_id=config["kubernetes_conn_id"])


class CanaryDeployOperator(ServingTargetMixin, MlopsBaseOperator):
    """Put a blessed candidate on the canary alias with the first traffic share (the local server picks it up; on
    KServe the InferenceService gets a canary revision with that ``canaryTrafficPercent``).

    A pipeline's first model has nothing to be compared with and goes straight to production.

    :param model_version: the blessed candidate (templated).
    :param percent: traffic share of the first canary step.
    :param target: ``local`` (the model server on this machine) or ``kserve``.
    :param kserve: with ``kserve``, the config's ``canary.kserve`` fields (image, namespace, kubernetes_conn_id, ...).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "model_version")

    def __init__(self, *, model_version: str, percent: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version
        self.percent = percent

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.deployment.canary import canary_deploy

        result = canary_deploy(self.store, self.pipeline, self.model_version, self.percent, target=self.serving_target)
        self.log.info("Deployed %s: %s", self.model_version, result)
        return result


class CanaryBranchOperator(ResultBranchOperator):
    """``true_task_id`` (promote) when the canary analysis decided to promote, else ``false_task_id`` (rollback)."""

    def decide(self, result: dict[str, Any]) -> bool:
        return result["decision"] == "promote"


class CanaryResolveOperator(ServingTargetMixin, MlopsBaseOperator):
    """Promote the canary (it becomes production; the old production stays in the registry as the
    previous one) or roll it back (canary removed); the decision goes to ``events/<pipeline>.jsonl``.
    On KServe the promoted canary takes all traffic (but the holdback), or production alone again.

    :param decision: ``promote`` or ``rollback``.
    :param analysis: the analysis result with reason and figures (templated).
    :param holdback_percent: with ``promote``, the traffic percent kept on the replaced model until the
        post-promotion watch (:class:`~airflow_mlops.sensors.canary.PromotionWatchSensor`) ends it; 0: none. Only
        with a watch downstream: nothing else ends a holdback but the next canary.
    :param target: ``local`` (the model server on this machine) or ``kserve``.
    :param kserve: with ``kserve``, the config's ``canary.kserve`` fields (image, namespace, kubernetes_conn_id, ...).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "analysis")

    def __init__(self, *, decision: str, analysis: Any, holdback_percent: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision
        self.analysis = analysis
        self.holdback_percent = holdback_percent

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.deployment.canary import canary_resolve

        result = canary_resolve(
            self.store,
            self.pipeline,
            self.decision,
            self.analysis,
            target=self.serving_target,
            holdback_percent=self.holdback_percent,
        )
        self.log.info("Canary %s: %s; production is %s", result["version"], self.decision, result["production"])
        return result
