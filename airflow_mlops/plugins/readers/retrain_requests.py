"""The retrain requests still open, from the events log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_mlops.plugins.readers.events import event_time


@dataclass(frozen=True)
class RetrainRequest:
    """A retrain request that no outcome has closed yet."""

    request_id: str
    time: datetime
    reason: str
    status: str
    pending: bool
    columns: list[str]


def open_requests(events: list[dict[str, Any]]) -> list[RetrainRequest]:
    """Retrain requests no outcome (``retrain_done``) closed yet, oldest first, with where each stands: waiting for
    an operator's approval (``monitor.approval: manual``), approved, or training."""
    done = {e.get("request_id") for e in events if e["kind"] == "retrain_done"}
    decided = {e.get("request_id"): e for e in events if e["kind"] == "retrain_decision"}
    requests = []
    for e in events:
        if e["kind"] != "retrain_request" or not e.get("event_id") or e["event_id"] in done:
            continue
        decision = decided.get(e["event_id"])
        pending = e.get("approval") == "pending" and decision is None
        if decision is not None:
            status = f"{decision.get('decision', '')}d by {decision.get('user', '')}: {decision.get('reason', '')}"
        else:
            status = "waiting for approval" if pending else "training"
        requests.append(
            RetrainRequest(
                request_id=e["event_id"],
                time=event_time(e["time"]),
                reason=str(e.get("reason", "")),
                status=status,
                pending=pending,
                columns=list((e.get("details") or {}).get("columns") or []),
            )
        )
    return requests
