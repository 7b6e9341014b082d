"""Notifications from the pipeline config: a fixed set of kinds (email, Slack, webhook), sent on task failures and
retries, on a successful run, on a run that misses its deadline, and on the lifecycle's decisions (a retrain request,
a rejected candidate, a canary rolled back, a promotion reverted, a performance drop).

Built at DAG parse time (this module imports only Airflow's notifier base); the provider notifiers that send are
imported when a notification goes out.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

DECISIONS = {
    "retrain_request": "Retraining requested",
    "gate_rejected": "Candidate rejected by the evaluation gate",
    "rollback": "Canary rolled back",
    "revert": "Promotion reverted by the post-promotion watch",
    "performance_drop": "Model performance dropped below its reference",
}
"""The lifecycle events a notification may be sent on, each with its headline; the task's result gives the why."""


class PipelineNotifier(BaseNotifier):
    """Send one message about ``event`` to each of ``targets`` (``operations.notify`` entries as mappings).

    :param event: ``failure``, ``retry``, ``success`` or one of :data:`DECISIONS`.
    :param targets: ``{"kind", "connection", "to", "endpoint"}`` per target.
    """

    def __init__(self, *, event: str, targets: list[dict[str, Any]]) -> None:
        super().__init__()
        self.event = event
        self.targets = targets

    def notify(self, context: Any) -> None:
        message = self.message(context)
        if message is None:
            return
        for target in self.targets:
            try:
                _send(target, message, context)
            except Exception:  # one target down must not keep the message from the others
                self.log.exception("Could not send the %s notification through %s", self.event, target["connection"])

    def message(self, context: Any) -> dict[str, Any] | None:
        """What is sent (None: nothing to say, e.g. a watch that kept its model)."""
        dag_run, ti = context.get("dag_run"), context.get("ti")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "")
        run_id = getattr(dag_run, "run_id", "")
        body: dict[str, Any] = {"event": self.event, "dag_id": dag_id, "run_id": run_id}
        if self.event in ("failure", "retry"):
            body |= {"task_id": ti.task_id, "try_number": ti.try_number, "error": str(context.get("exception") or "")[:2000]}
            body["title"] = f"{dag_id}: task {ti.task_id} {'failed' if self.event == 'failure' else 'will be retried'}"
        elif self.event == "success":
            body["title"] = f"{dag_id}: run {run_id} succeeded"
        else:
            result = ti.xcom_pull(task_ids=ti.task_id) or {}
            if self.event == "revert" and result.get("decision") != "reverted":
                return None
            if self.event == "performance_drop" and not result.get("dropped"):
                return None  # a check that found no drop
            body |= {"task_id": ti.task_id, "result": result}
            body["reason"] = result.get("why") or result.get("reason") or ""
            body["title"] = f"{dag_id}: {DECISIONS[self.event]}"
        return body


async def deadline_missed(*, targets: list[dict[str, Any]], minutes: float, context: dict[str, Any] | None = None) -> None:
    """The ``operations.deadline_minutes`` alert, run by the triggerer when a run is still going that long after it
    was queued (Airflow's deadline alerts pass a small ``context``: the run and the deadline)."""
    import asyncio

    run = (context or {}).get("dag_run") or {}
    dag_id, run_id = run.get("dag_id", ""), run.get("dag_run_id") or run.get("run_id", "")
    body = {
        "event": "deadline",
        "dag_id": dag_id,
        "run_id": run_id,
        "title": f"{dag_id}: run {run_id} not finished {minutes:g} minutes after it was queued",
        "deadline_time": str(((context or {}).get("deadline") or {}).get("deadline_time", "")),
    }
    for target in targets:
        try:
            await asyncio.to_thread(_send, target, body, {})
        except Exception:  # one target down must not keep the message from the others
            log.exception("Could not send the deadline notification through %s", target["connection"])


def _send(target: dict[str, Any], body: dict[str, Any], context: Any) -> None:
    text = f"{body['title']}\n{body.get('reason') or body.get('error') or ''}".strip()
    if target["kind"] == "webhook":
        from airflow.providers.http.notifications.http import HttpNotifier

        HttpNotifier(http_conn_id=target["connection"], endpoint=target["endpoint"], json=body).notify(context)
    elif target["kind"] == "email":
        from html import escape

        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        html = f"<h3>{escape(body['title'])}</h3><pre>{escape(text)}</pre>"
        SmtpNotifier(to=target["to"], subject=body["title"], html_content=html, smtp_conn_id=target["connection"]).notify(context)
    else:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        SlackWebhookNotifier(slack_webhook_conn_id=target["connection"], text=text).notify(context)
