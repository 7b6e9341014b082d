"""The scoring runs of a pipeline's events log: each ``batch_scored`` event (the record ``stages.scoring.publish``
also writes as ``scores/<pipeline>/<scoring id>/scoring.json``) as the page lists it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_mlops.plugins.readers.events import event_time
from airflow_mlops.store.layout import report_prefix

SCORING_RUNS_SHOWN = 20
"""Newest scoring runs listed on a pipeline's page."""


@dataclass(frozen=True)
class ScoringRun:
    """One published scoring run: its input, rows, model version, output and what validation found."""

    run_id: str | None
    time: datetime
    source: str | None
    dataset_id: str | None
    rows: int
    skipped_rows: int
    anomalies: int | None
    report_key: str | None
    """The store key of the run's serving-mode validation report, where it recorded one."""
    model_version: str | None
    output_uri: str | None
    scoring_id: str | None
    logged_rows: int | None


def scoring_runs(pipeline: str, events: list[dict[str, Any]], shown: int = SCORING_RUNS_SHOWN) -> list[ScoringRun]:
    """The newest ``shown`` scoring runs, newest first."""
    scored = [e for e in events if e["kind"] == "batch_scored"][-shown:]
    return [scoring_run(pipeline, e) for e in reversed(scored)]


def scoring_run(pipeline: str, event: dict[str, Any]) -> ScoringRun:
    """A ``batch_scored`` event as the page shows it."""
    run_id = _text(event.get("run_id"))
    return ScoringRun(
        run_id=run_id,
        time=event_time(event["time"]),
        source=_text(event.get("source")),
        dataset_id=_text(event.get("dataset_id")),
        rows=_count(event.get("rows")) or 0,
        skipped_rows=_count(event.get("skipped_rows")) or 0,
        anomalies=_count(event.get("anomalies")),
        report_key=f"{report_prefix(pipeline, run_id)}/scoring_validation.html" if run_id and event.get("report_uri") else None,
        model_version=_text(event.get("model_version")),
        output_uri=_text(event.get("output_uri")),
        scoring_id=_text(event.get("scoring_id")),
        logged_rows=_count(event.get("logged_rows")),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
