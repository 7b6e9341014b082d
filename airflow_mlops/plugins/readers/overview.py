"""What the overview shows of each pipeline: its production and canary, latest training run and drift check,
and its open retrain requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_mlops.plugins.readers.drift import DriftPoint, latest_drift_check
from airflow_mlops.plugins.readers.events import read_events
from airflow_mlops.plugins.readers.pipelines import RunState
from airflow_mlops.plugins.readers.retrain_requests import RetrainRequest, open_requests
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore


@dataclass(frozen=True)
class OverviewRow:
    """One pipeline on the overview."""

    pipeline: str
    production: str | None = None
    production_since: str | None = None
    canary: str | None = None
    canary_weight: float | None = None
    training: RunState | None = None
    drift: DriftPoint | None = None
    open_requests: list[RetrainRequest] = field(default_factory=list)
    error: str | None = None


def overview_row(store: ArtifactStore, pipeline: str, training: RunState | None) -> OverviewRow:
    """The overview's row of ``pipeline`` from its registry and events.

    :param training: the latest run of the pipeline's training DAG (Airflow's DB), or None.
    """
    doc = ModelRegistry(store, pipeline).load()
    events = read_events(store, pipeline)
    production, canary = doc["aliases"].get("production") or {}, doc["aliases"].get("canary") or {}
    return OverviewRow(
        pipeline=pipeline,
        production=production.get("version"),
        production_since=production.get("promoted_at"),
        canary=canary.get("version"),
        canary_weight=canary.get("weight"),
        training=training,
        drift=latest_drift_check(store, events),
        open_requests=open_requests(events),
    )
