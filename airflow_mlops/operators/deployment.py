"""Canary deployment on the local model server: deploy, decide, promote or roll back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_mlops.operators.base import MlopsBaseOperator, ResultBranchOperator


class CanaryDeployOperator(MlopsBaseOperator):
    """Put a blessed candidate on the canary alias with the first traffic share (the server picks it up).

    A pipeline's first model has nothing to be compared with and goes straight to production.

    :param model_version: the blessed candidate (templated).
    :param percent: traffic share of the first canary step.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "model_version")

    def __init__(self, *, model_version: str, percent: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version
        self.percent = percent

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.deployment import canary_deploy

        result = canary_deploy(self.store, self.pipeline, self.model_version, self.percent)
        self.log.info("Deployed %s: %s", self.model_version, result)
        return result


class CanaryBranchOperator(ResultBranchOperator):
    """``true_task_id`` (promote) when the canary analysis decided to promote, else ``false_task_id`` (rollback)."""

    def decide(self, result: dict[str, Any]) -> bool:
        return result["decision"] == "promote"


class CanaryResolveOperator(MlopsBaseOperator):
    """Promote the canary (it becomes production; the old production stays in the registry as the
    previous one) or roll it back (canary removed); the decision goes to ``events/<pipeline>.jsonl``.

    :param decision: ``promote`` or ``rollback``.
    :param analysis: the analysis result with reason and figures (templated).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "analysis")

    def __init__(self, *, decision: str, analysis: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision
        self.analysis = analysis

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.deployment import canary_resolve

        result = canary_resolve(self.store, self.pipeline, self.decision, self.analysis)
        self.log.info("Canary %s: %s; production is %s", result["version"], self.decision, result["production"])
        return result
