"""``operations``: retries and timeouts per pipeline and per stage, deadlines and notifications."""

import datetime as dt
import importlib.util
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from airflow_mlops.config.base import NO_INPUT, Issue, Strict, config_issues

STAGES = ("data", "features", "training", "evaluation", "registry", "deploy", "monitor")
"""The task groups of the training DAG, and the monitor DAG: what ``operations.stages`` may set apart."""
EVENTS = (
    "failure",
    "retry",
    "success",
    "deadline",
    "retrain_request",
    "gate_rejected",
    "rollback",
    "revert",
    "performance_drop",
)
"""What a notification may be sent on: a task failing or retried, a run succeeding or missing its deadline, and
the lifecycle's decisions."""
NOTIFY_CONN = {"email": "smtp_default", "slack": "slack_default", "webhook": "http_default"}
"""Each notification kind's default Airflow connection."""


class TaskDefaultsConfig(Strict):
    retries: int | None = Field(None, ge=0, le=100, description="Retries of a failed task (Airflow's default: 0).")
    retry_delay_minutes: float | None = Field(None, gt=0, description="Wait before a retry.")
    retry_exponential_backoff: bool | None = Field(None, description="Double the wait before each further retry.")
    execution_timeout_minutes: float | None = Field(None, gt=0, description="A task running longer fails (and may retry).")


class NotifyConfig(Strict):
    kind: Literal["email", "slack", "webhook"] = Field(
        ..., description="email (SMTP connection), slack (the Slack provider's webhook connection), webhook (HTTP POST of JSON)."
    )
    conn_id: str | None = Field(None, description="Airflow connection (default: smtp_default, slack_default, http_default).")
    to: list[str] = Field(default_factory=list, description="email: the recipients.")
    endpoint: str = Field("", description="webhook: the path on the connection's host the JSON is posted to.")
    on: list[Literal[EVENTS]] = Field(["failure"], min_length=1, description=f"When to notify: {', '.join(EVENTS)}.")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind == "email" and not self.to:
            raise config_issues([Issue(("to",), "an email notification needs at least one recipient", NO_INPUT)])
        if self.kind == "slack" and importlib.util.find_spec("airflow.providers.slack") is None:
            message = "needs apache-airflow-providers-slack, which is not installed; use email or webhook"
            raise config_issues([Issue(("kind",), message, self.kind)])
        return self

    @property
    def connection(self) -> str:
        return self.conn_id or NOTIFY_CONN[self.kind]


class OperationsConfig(TaskDefaultsConfig):
    stages: dict[Literal[STAGES], TaskDefaultsConfig] = Field(  # type: ignore[valid-type]
        default_factory=dict, description=f"Per stage ({', '.join(STAGES)}), over the pipeline's: e.g. training: {{retries: 2}}."
    )
    notify: list[NotifyConfig] = Field(default_factory=list, description="Notifications, each with its kind, target and events.")
    deadline_minutes: float | None = Field(
        None,
        gt=0,
        description="A run still going this long after it was queued notifies the 'deadline' targets (Airflow's deadline alerts).",
    )

    @model_validator(mode="after")
    def _deadline_has_targets(self) -> Self:
        if self.deadline_minutes is not None and not any("deadline" in n.on for n in self.notify):
            message = "a deadline needs a notify entry with 'deadline' in its 'on' (nobody would hear of it)"
            raise config_issues([Issue(("deadline_minutes",), message, self.deadline_minutes)])
        return self

    def task_defaults(self, stage: str | None = None) -> dict[str, Any]:
        """Airflow ``default_args`` for the pipeline's tasks (``stage``: of one stage, over the pipeline's)."""
        layers = [self, *([self.stages[stage]] if stage in self.stages else [])]
        out: dict[str, Any] = {}
        for layer in layers:
            for name, value in ((n, getattr(layer, n)) for n in TaskDefaultsConfig.model_fields):
                if value is None:
                    continue
                if name.endswith("_minutes"):
                    out[name.removesuffix("_minutes")] = dt.timedelta(minutes=value)
                else:
                    out[name] = value
        return out
