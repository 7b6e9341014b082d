"""The drift checks of a pipeline's events log, with their per-column scores, reports and threshold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.plugins.readers.events import event_time
from airflow_mlops.store.layout import is_report_key, report_prefix

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig
    from airflow_mlops.store.artifacts import ArtifactStore

DRIFT_CHECKS_SHOWN = 100
"""Latest drift checks in the drift chart."""


@dataclass(frozen=True)
class DriftPoint:
    """One drift check: its per-column scores and verdict."""

    time: datetime
    run_id: str | None
    drifted: bool
    reason: str
    rows: int | None
    scores: dict[str, float]
    report_key: str | None


def drift_checks(store: ArtifactStore, events: list[dict[str, Any]]) -> list[DriftPoint]:
    """The latest :data:`DRIFT_CHECKS_SHOWN` drift checks of ``events``, oldest first."""
    return [drift_point(store, e) for e in [e for e in events if e["kind"] == "drift_check"][-DRIFT_CHECKS_SHOWN:]]


def latest_drift_check(store: ArtifactStore, events: list[dict[str, Any]]) -> DriftPoint | None:
    """The newest drift check of ``events``; None before the first."""
    return next((drift_point(store, e) for e in reversed(events) if e["kind"] == "drift_check"), None)


def drift_point(store: ArtifactStore, event: dict[str, Any]) -> DriftPoint:
    """A ``drift_check`` event as the pages show it."""
    event_id = str(event.get("event_id") or "")
    return DriftPoint(
        time=event_time(event["time"]),
        run_id=event_id.removeprefix("drift-") or None,
        drifted=bool(event.get("drifted")),
        reason=str(event.get("reason", "")),
        rows=event.get("rows"),
        scores={k: float(v) for k, v in (event.get("scores") or {}).items() if isinstance(v, int | float)},
        report_key=report_key(store, event["pipeline"], event.get("report_uri")),
    )


def report_key(store: ArtifactStore, pipeline: str, uri: str | None) -> str | None:
    """The store key of a report URI when it is a report of ``pipeline`` (see ``layout.is_report_key``), else None."""
    if not uri:
        return None
    root = store.uri("x")[:-1]
    key = uri.removeprefix(root) if uri.startswith(root) else "/".join(uri.split("/")[-4:])
    return key if is_report_key(pipeline, key) else None


def drift_settings(store: ArtifactStore, config: PipelineConfig, drift: list[DriftPoint]) -> tuple[float | None, str | None]:
    """The column threshold and method of the latest check (its ``drift.json``), else the config's."""
    if drift and drift[-1].run_id:
        check = store.read_json_if_exists(f"{report_prefix(config.pipeline, drift[-1].run_id)}/drift.json") or {}
        if "column_threshold" in check:
            return float(check["column_threshold"]), check.get("method")
    if config.monitor:
        return config.monitor.drift.column_threshold, config.monitor.drift.method
    return None, None
