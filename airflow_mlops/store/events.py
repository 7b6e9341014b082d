"""``events/<pipeline>.jsonl``: canary steps, analyses and decisions, promotions, drift checks, retrain requests
and their outcomes, each with its reason and figures; appended by compare-and-swap."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow_mlops.exceptions import RegistryConflict
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import events_key


def append_event(store: ArtifactStore, pipeline: str, kind: str, *, max_attempts: int = 50, **fields: Any) -> dict[str, Any]:
    """Append one event by compare-and-swap; an event whose ``event_id`` is already there is not added twice."""
    event = {"time": datetime.now(UTC).isoformat(), "pipeline": pipeline, "kind": kind, **fields}
    key = events_key(pipeline)
    for _ in range(max_attempts):
        data, token = store.read_versioned(key)
        text = (data or b"").decode()
        if "event_id" in fields and any(e.get("event_id") == fields["event_id"] for e in _parse(text)):
            return next(e for e in _parse(text) if e.get("event_id") == fields["event_id"])
        if store.write_if_match(key, (text + json.dumps(event, sort_keys=True) + "\n").encode(), token):
            return event
    raise RegistryConflict(f"Gave up appending to {store.uri(key)} after {max_attempts} conflicting attempts.")


def read_events(store: ArtifactStore, pipeline: str) -> list[dict[str, Any]]:
    data, _ = store.read_versioned(events_key(pipeline))
    return _parse((data or b"").decode())


def _parse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
