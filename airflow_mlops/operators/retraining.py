"""Governed retraining: the request a drift check files (an Asset event that starts the training DAG),
and the close that records how the retraining it started ended."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import Asset, Context
from airflow.sdk.exceptions import AirflowSkipException

from airflow_mlops.config.base import field_default
from airflow_mlops.config.monitoring import MonitorConfig
from airflow_mlops.operators.base import MlopsBaseOperator


def retrain_asset(pipeline: str) -> Asset:
    """The Asset whose events start a pipeline's training DAG."""
    # Name only: a URI with a scheme makes Airflow load every provider's URI handlers (boto3 among them) at parse time.
    return Asset(name=f"mlops_{pipeline}_retrain_request")


def retrain_reasons(drift: Mapping[str, Any] | None, performance: Mapping[str, Any] | None) -> list[str]:
    """Why to retrain, from the drift check's and the performance check's results (either may be None: its task did
    not run); empty when neither found anything. A drift result without ``drifted`` counts (a hand-written DAG's)."""
    reasons = []
    if drift and drift.get("drifted", True):
        reasons.append(f"drift: {drift['reason']}")
    if performance and performance.get("dropped"):
        reasons.append(f"performance: {performance['reason']}")
    return reasons


PERFORMANCE_DETAILS = ("trigger", "metric", "realized", "reference", "drop", "estimated", "labels", "window", "report_uri")
"""What a retrain request records of the performance check that filed it."""


class RetrainBranchOperator(BaseBranchOperator):
    """``true_task_id`` (the one retrain request) when the drift check found drift or the performance check a drop,
    else ``false_task_id``; runs however its upstream tasks ended (a drift check that never ran leaves the decision
    to the performance check).

    :param drift: the drift check result (an XComArg, templated; None when it did not run).
    :param performance: the performance check result (an XComArg, templated; None when it did not run).
    :param true_task_id: the retrain request task.
    :param false_task_id: the task followed otherwise.
    """

    template_fields: Sequence[str] = ("drift", "performance")

    def __init__(self, *, drift: Any, performance: Any, true_task_id: str, false_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.drift = drift
        self.performance = performance
        self.true_task_id = true_task_id
        self.false_task_id = false_task_id

    def choose_branch(self, context: Context) -> str:
        reasons = retrain_reasons(self.drift, self.performance)
        chosen = self.true_task_id if reasons else self.false_task_id
        self.log.info("Following %s (%s)", chosen, "; ".join(reasons) or "no drift, no performance drop")
        return chosen


class RetrainRequestOperator(MlopsBaseOperator):
    """Request retraining with its reason (drift, a performance drop, or both): emits the pipeline's retrain Asset
    event, at most one open request per pipeline and none within the cooldown (the task is skipped then, with why).
    A request recorded by an earlier run whose event was never emitted (the task was killed in between) is closed as
    ``lost``.

    :param drift: the drift check result (an XComArg, templated).
    :param performance: the performance check result (an XComArg, templated), when the monitor judges performance.
    :param cooldown_hours: minimum time between two requests.
    :param max_open_hours: an open request older than this is closed as expired first (its run was lost).
    :param approval: ``auto`` emits the Asset event at once; ``manual`` records the request as pending and emits
        nothing (the task has no outlet): an operator approves it in the ops UI, which emits the event then.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "drift", "performance")

    def __init__(
        self,
        *,
        drift: Any = None,
        performance: Any = None,
        cooldown_hours: float = field_default(MonitorConfig, "cooldown_hours"),
        max_open_hours: float = field_default(MonitorConfig, "request_max_open_hours"),
        approval: str = field_default(MonitorConfig, "approval"),
        **kwargs: Any,
    ) -> None:
        if approval == "auto":  # a successful task emits its outlets' events: a pending request must not
            kwargs.setdefault("outlets", [retrain_asset(kwargs["pipeline"])])
        kwargs.setdefault("inlets", [retrain_asset(kwargs["pipeline"])])  # its past events: which requests were emitted
        super().__init__(**kwargs)
        self.drift = drift
        self.performance = performance
        self.cooldown_hours = cooldown_hours
        self.max_open_hours = max_open_hours
        self.approval = approval

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.retraining import request_retrain

        reasons = retrain_reasons(self.drift, self.performance)
        if not reasons:
            raise AirflowSkipException("No retrain request: no drift and no performance drop")
        details: dict[str, Any] = {}
        if self.drift and self.drift.get("drifted", True):
            details |= {k: self.drift[v] for k, v in (("columns", "drifted_columns"), ("scores", "scores"))}
            details["report_uri"] = self.drift["report_uri"]
        if self.performance and self.performance.get("dropped"):
            details["performance"] = {k: self.performance.get(k) for k in PERFORMANCE_DETAILS}
        result = request_retrain(
            self.store,
            self.pipeline,
            reason="; ".join(reasons),
            details=details,
            cooldown_hours=self.cooldown_hours,
            run_id=context["run_id"],
            max_open_hours=self.max_open_hours,
            emitted=self._emitted(context),
            approval=self.approval,
        )
        if not result["requested"]:
            raise AirflowSkipException(f"No retrain request: {result['why']}")
        if self.approval == "manual":  # the ops UI emits the Asset event once an operator approves
            self.log.info("Retrain request %s of %s waits for approval: %s", result["request_id"], self.pipeline, result["why"])
            return result
        context["outlet_events"][retrain_asset(self.pipeline)].extra = {
            "request_id": result["request_id"],
            "reason": result["why"],
        }
        self.log.info("Requested retraining of %s (%s): %s", self.pipeline, result["request_id"], result["why"])
        return result

    def _emitted(self, context: Context) -> set[str]:
        """Request ids in the retrain Asset's latest events (newest first; an open request is among the last)."""
        events = context["inlet_events"][retrain_asset(self.pipeline)].ascending(False).limit(EMITTED_LOOKBACK)
        return {str(e.extra["request_id"]) for e in events if e.extra and "request_id" in e.extra}


EMITTED_LOOKBACK = 100
"""Latest retrain Asset events a request looks through for the ids of requests that were emitted."""


def retrain_requests(context: Context) -> list[dict[str, Any]]:
    """The retrain requests (Asset event extras) that triggered this run, oldest first."""
    return [
        dict(event.extra)
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if event.extra and "request_id" in event.extra
    ]


DECIDED = {"promote": "promoted", "rollback": "rolled_back", "kept": "promoted", "reverted": "reverted", "breached": "breached"}
"""A retrain request's outcome from the last deploy decision: the canary's, then the post-promotion watch's."""


class RetrainRequestCloseOperator(MlopsBaseOperator):
    """Close the retrain requests that triggered this run, however the run ended (run it with
    ``trigger_rule="all_done"``), so a failed retraining never blocks the next request.

    :param registration_task_ids: the registration tasks whose result names the model and its status.
    :param decision_task_ids: the post-promotion watch and the canary promote/rollback tasks, when the run has a
        canary, the last to decide first: the first decision found is the request's outcome once the candidate
        was blessed.
    """

    def __init__(self, *, registration_task_ids: list[str], decision_task_ids: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.registration_task_ids = registration_task_ids
        self.decision_task_ids = decision_task_ids or []

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.retraining import close_retrain_request

        def first(task_ids: list[str]) -> dict[str, Any] | None:
            return next((r for r in (context["ti"].xcom_pull(task_ids=t) for t in task_ids) if r), None)

        registered, decided = first(self.registration_task_ids), first(self.decision_task_ids)
        version, status = (registered["model_version"], registered["status"]) if registered else (None, "failed")
        if decided:
            status = DECIDED[decided["decision"]]
        elif status == "blessed" and self.decision_task_ids:
            status = "canary_unfinished"  # blessed, but the canary ended without a decision
        closed = []
        for request in retrain_requests(context):
            close_retrain_request(self.store, self.pipeline, request["request_id"], model_version=version, status=status)
            self.log.info("Closed retrain request %s: model %s %s", request["request_id"], version, status)
            closed.append(request["request_id"])
        return {"closed": closed}
