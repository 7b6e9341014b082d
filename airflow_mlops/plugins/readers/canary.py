"""A candidate's way through the canary, from the events log: traffic steps, analyses with their figures, decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_mlops.plugins.readers.events import event_time

CANARY_EVENTS = (
    "canary_step",
    "canary_analysis",
    "canary_pause",
    "canary_resume",
    "promote",
    "rollback",
    "revert",
    "watch_passed",
    "watch_breached",
)
"""Events of one candidate's way through the canary, in the order they happen."""


@dataclass(frozen=True)
class CanaryStep:
    """One event of a candidate's canary: a traffic step, an analysis with its figures, or the decision."""

    time: datetime
    kind: str
    version: str | None
    weight: float | None
    passed: bool | None
    reason: str
    requests: int | None = None
    production_requests: int | None = None
    error_rate: float | None = None
    production_error_rate: float | None = None
    p95_ms: float | None = None
    production_p95_ms: float | None = None
    ks: float | None = None
    label_quality_ratio: float | None = None


def canary_version(canary: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """The version on canary (the registry's ``canary`` alias), else the last one that was: the page shows its way."""
    return canary.get("version") or next(
        (e.get("version") for e in reversed(events) if e["kind"] in ("canary_step", "canary_analysis") and e.get("version")),
        None,
    )


def canary_steps(events: list[dict[str, Any]], version: str | None) -> list[CanaryStep]:
    """The canary events of ``version``, oldest first."""
    return [_canary_step(e) for e in events if e["kind"] in CANARY_EVENTS and e.get("version") == version]


def paused(canary: dict[str, Any]) -> str | None:
    """Who paused the canary, when and why; None when it is not paused."""
    pause = canary.get("paused")
    if not pause:
        return None
    return f"paused by {pause.get('user', '')} at {pause.get('at', '')}: {pause.get('reason', '')}"


def _canary_step(event: dict[str, Any]) -> CanaryStep:
    figures = event.get("figures") or {}
    side, other = figures.get("canary") or figures.get("now") or {}, figures.get("production") or {}
    return CanaryStep(
        time=event_time(event["time"]),
        kind=event["kind"],
        version=event.get("version"),
        weight=event.get("weight"),
        passed=event.get("passed"),
        reason=str(event.get("reason", "")),
        requests=side.get("requests"),
        production_requests=other.get("requests"),
        error_rate=side.get("error_rate"),
        production_error_rate=other.get("error_rate"),
        p95_ms=side.get("p95_latency_ms"),
        production_p95_ms=other.get("p95_latency_ms"),
        ks=figures.get("prediction_divergence"),
        label_quality_ratio=figures.get("label_quality_ratio"),
    )
