"""Everything one pipeline's page shows: its versions, the canary's timeline, the drift and performance checks, the
batch scoring runs, the events log and the runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.plugins.readers.canary import CanaryStep, canary_steps, canary_version, paused
from airflow_mlops.plugins.readers.drift import DriftPoint, drift_checks, drift_settings
from airflow_mlops.plugins.readers.events import read_events
from airflow_mlops.plugins.readers.performance import PerformanceView, performance_view
from airflow_mlops.plugins.readers.pipelines import RunState
from airflow_mlops.plugins.readers.retrain_requests import RetrainRequest, open_requests
from airflow_mlops.plugins.readers.scoring import ScoringRun, scoring_runs
from airflow_mlops.plugins.readers.versions import VersionRow, version_rows
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig
    from airflow_mlops.store.artifacts import ArtifactStore

EVENTS_SHOWN = 200
"""Newest events listed on a pipeline's page (the log itself keeps every one)."""


@dataclass(frozen=True)
class PipelineView:
    """Everything one pipeline's page shows."""

    pipeline: str
    config_path: str
    metric_name: str | None
    production: str | None
    production_since: str | None
    canary: str | None
    canary_weight: float | None
    canary_paused: str | None
    previous_production: str | None
    versions: list[VersionRow]
    canary_version: str | None
    canary_steps: list[CanaryStep]
    drift: list[DriftPoint]
    drift_threshold: float | None
    drift_method: str | None
    performance: PerformanceView
    scoring: list[ScoringRun]
    scoring_dag_id: str
    scoring_configured: bool
    """Whether the config has a ``scoring`` section (runs published before it was removed are listed all the same)."""
    events: list[dict[str, Any]]
    events_total: int
    open_requests: list[RetrainRequest]
    runs: list[RunState]


def pipeline_view(
    store: ArtifactStore, config: PipelineConfig, runs: list[RunState], *, events_shown: int = EVENTS_SHOWN
) -> PipelineView:
    """One pipeline's page: versions, the canary's timeline, the drift and performance checks, the events log and the runs.

    :param runs: the pipeline's latest DAG runs (Airflow's DB), newest first.
    :param events_shown: newest events listed.
    """
    pipeline = config.pipeline
    doc = ModelRegistry(store, pipeline).load()
    events = read_events(store, pipeline)
    production, canary = doc["aliases"].get("production") or {}, doc["aliases"].get("canary") or {}
    metric_name = config.evaluation.metric if config.evaluation else None
    candidate = canary_version(canary, events)
    drift = drift_checks(store, events)
    threshold, method = drift_settings(store, config, drift)
    return PipelineView(
        pipeline=pipeline,
        config_path=config.config_path,
        metric_name=metric_name,
        production=production.get("version"),
        production_since=production.get("promoted_at"),
        canary=canary.get("version"),
        canary_weight=canary.get("weight"),
        canary_paused=paused(canary),
        previous_production=doc.get("previous_production"),
        versions=version_rows(pipeline, doc, metric_name),
        canary_version=candidate,
        canary_steps=canary_steps(events, candidate),
        drift=drift,
        drift_threshold=threshold,
        drift_method=method,
        performance=performance_view(config, events),
        scoring=scoring_runs(pipeline, events),
        scoring_dag_id=config.scoring_dag_id,
        scoring_configured=config.scoring is not None,
        events=events[::-1][:events_shown],
        events_total=len(events),
        open_requests=open_requests(events),
        runs=runs,
    )
