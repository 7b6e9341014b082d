"""A pipeline's events log as the pages read it: parsed once, then only what was appended since."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.store.layout import events_key

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore


def read_events(store: ArtifactStore, pipeline: str) -> list[dict[str, Any]]:
    """The pipeline's events log, oldest first (as ``store.events.read_events``), parsing only what was appended since
    the last call: the log only grows (every append rewrites it with one more line), and parsing 10,000 events
    costs about 100 ms a page while reading them costs 2 ms. Callers must not change the events."""
    try:
        data = store.read_bytes(events_key(pipeline))
    except ArtifactNotFound:
        data = b""
    uri = store.uri(events_key(pipeline))
    with _EVENTS_LOCK:
        known, events = _EVENTS.get(uri, (b"", []))
    if not data.startswith(known):  # rewritten otherwise than by an append: parse it all
        known, events = b"", []
    new = [json.loads(line) for line in data[len(known) :].decode().splitlines() if line.strip()]
    events = events + new if new else events
    with _EVENTS_LOCK:
        _EVENTS[uri] = (data, events)
    return events


_EVENTS: dict[str, tuple[bytes, list[dict[str, Any]]]] = {}
_EVENTS_LOCK = threading.Lock()


def event_time(value: str) -> datetime:
    """An event's ``time``, in UTC when it was written without a zone."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
