"""Acquire a source as a content-addressed snapshot; validate it against the accepted schema."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import DataValidationError
from airflow_mlops.store.artifacts import dumps
from airflow_mlops.store.layout import report_prefix, schema_key, schema_version_key, volume_key

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Columns:
    """The roles of a pipeline's columns."""

    label: str
    task: str
    numeric: list[str]
    categorical: list[str]

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def acquire(store: ArtifactStore, pipeline: str, source_uri: str, *, fmt: str = "auto", s3_client: Any = None) -> dict[str, Any]:
    """Read the source and store it as a content-addressed snapshot."""
    from airflow_mlops.store.datasets import snapshot_source

    snap, files = snapshot_source(store, pipeline, source_uri, fmt=fmt, s3_client=s3_client)
    log.info("Read %d rows from %d file(s) at %s", snap.rows, len(files), source_uri)
    return {
        "dataset_id": snap.dataset_id,
        "dataset_uri": snap.uri,
        "rows": snap.rows,
        "created": snap.created,
        "source": source_uri,
    }


def acquire_batches(store: ArtifactStore, pipeline: str, source: str, batches: Iterable[Any]) -> dict[str, Any]:
    """Store a query's result, given as Arrow record batches, as a content-addressed snapshot (hashed as files are).

    ``source`` names it in the manifest and the result (``sql:<conn_id>: <query>``), never with credentials."""
    from airflow_mlops.store.tables import snapshot_batches

    snap = snapshot_batches(store, pipeline, source, batches)
    log.info("Read %d rows from %s", snap.rows, source)
    return {
        "dataset_id": snap.dataset_id,
        "dataset_uri": snap.uri,
        "rows": snap.rows,
        "created": snap.created,
        "source": source,
    }


def validate(
    store: ArtifactStore,
    pipeline: str,
    dataset_id: str,
    columns: Columns,
    thresholds: Mapping[str, Any],
    *,
    run_id: str,
    label_change: str | None = None,
) -> dict[str, Any]:
    """Check the dataset against the accepted schema (inferred and stored on the first run).

    ``thresholds`` holds every :class:`airflow_mlops.ml.validation.Thresholds` field (the config's
    ``validation`` section). Writes ``validation.html`` and ``validation.json`` under reports/ and
    raises :class:`DataValidationError` naming the report when anything is anomalous.

    ``label_change`` says why the label's relation to the features is expected to have moved (the run answers a
    retrain request naming a performance drop: concept drift, found on realized labels): ``label_association``
    findings are then warnings, with that note, not anomalies, so the retraining meant to learn the new relation is
    not stopped by it; and when nothing else is anomalous the dataset is accepted as the next schema version (by
    ``retrain``, why: ``label_change``), so the scheduled runs after it judge the new relation, not the old one.
    """
    from airflow_mlops.ml.schema import infer_schema
    from airflow_mlops.ml.validation import Thresholds
    from airflow_mlops.ml.validation import validate as check
    from airflow_mlops.ml.validation_report import Anomaly, render_report_html
    from airflow_mlops.store.datasets import load_dataset

    frame = load_dataset(store, pipeline, dataset_id)
    key = schema_key(pipeline)
    current, _ = store.read_versioned(key)
    created = False
    if current is None:
        inferred = infer_schema(
            frame, numeric=columns.numeric, categorical=columns.categorical, label=columns.label, task=columns.task
        )
        inferred |= {"inferred_from": dataset_id, "number": 1}
        created = store.write_if_match(key, dumps(inferred), None)
        if created:
            store.write_json(schema_version_key(pipeline, 1), inferred)
        current, _ = store.read_versioned(key)  # ours, or the one a concurrent run stored first
        log.info(
            "No schema yet: %s one from dataset %s at %s",
            "inferred" if created else "another run stored",
            dataset_id[:12],
            store.uri(key),
        )
    schema = json.loads(current)
    history = store.read_json_if_exists(volume_key(pipeline), [])
    accepted_before = any(h["dataset_id"] == dataset_id for h in history)  # a re-run: its volume was judged then
    earlier = None if accepted_before else [h["rows"] for h in history]
    report = check(frame, schema, Thresholds(**thresholds), history_rows=earlier)
    if accepted_before:
        report.notes.append(
            f"volume_change not applied: dataset {dataset_id[:12]} was accepted before (its volume was judged then)"
        )
    for col in [c for c in [columns.label, *columns.features] if c not in schema["columns"]]:
        report.anomalies.append(Anomaly(col, "missing_column", "configured column is not in the accepted schema"))
    expected = [a for a in report.anomalies if a.kind == "label_association"] if label_change else []
    if expected:
        report.anomalies = [a for a in report.anomalies if a.kind != "label_association"]
        report.warnings.extend(expected)
        report.notes.append(f"label_association reported as a warning: {label_change}")
    prefix = report_prefix(pipeline, run_id)
    store.write_text(
        f"{prefix}/validation.html",
        render_report_html(report, pipeline=pipeline, dataset_id=dataset_id, schema_uri=store.uri(key)),
    )
    store.write_json(f"{prefix}/validation.json", {"dataset_id": dataset_id, **report.to_dict()})
    report_uri = store.uri(f"{prefix}/validation.html")
    result = {
        "anomalies": len(report.anomalies),
        "report_uri": report_uri,
        "schema_uri": store.uri(key),
        "schema_created": created,
    }
    if report.ok and expected:
        result["schema_accepted"] = accept_schema(store, pipeline, columns, report_uri=report_uri, by="retrain", why=label_change)
    elif report.ok and not accepted_before:
        _record_volume(store, pipeline, dataset_id, len(frame))
    if not report.ok:
        lines = "; ".join(f"{a.column}: {a.kind}: {a.message}" for a in report.anomalies[:10])
        raise DataValidationError(
            f"{len(report.anomalies)} data anomalies in dataset {dataset_id[:12]} ({lines}). Report: {report_uri}", report_uri
        )
    return result


def accept_schema(store: ArtifactStore, pipeline: str, columns: Columns, *, report_uri: str, by: str, why: str) -> dict[str, Any]:
    """Accept the dataset a failed validation reported on as the next schema version, after review.

    The schema is inferred from that dataset again, numbered one above the current version and stored with who
    accepted it, why, and the report's anomalies; every version stays under ``versions/``. The dataset's row
    count joins the volume history. Validation itself never changes an accepted schema.
    """
    from datetime import UTC, datetime

    from airflow_mlops.exceptions import ArtifactNotFound
    from airflow_mlops.ml.schema import infer_schema
    from airflow_mlops.store.datasets import load_dataset
    from airflow_mlops.store.events import append_event

    root = store.root_uri.rstrip("/") + "/"
    if not report_uri.startswith(root):
        raise ArtifactNotFound(f"Report {report_uri} is not under this pipeline's artifact root {root}")
    folder = report_uri[len(root) :].rstrip("/")
    folder = folder.rsplit("/", 1)[0] if folder.endswith((".html", ".json")) else folder
    if not folder.startswith(report_prefix(pipeline, "")):
        raise ArtifactNotFound(f"Report {report_uri} is not a report of pipeline {pipeline}")
    report = store.read_json(f"{folder}/validation.json")
    frame = load_dataset(store, pipeline, report["dataset_id"])
    key = schema_key(pipeline)
    while True:
        current, token = store.read_versioned(key)
        number = (json.loads(current).get("number", 1) if current else 0) + 1
        schema = infer_schema(
            frame, numeric=columns.numeric, categorical=columns.categorical, label=columns.label, task=columns.task
        )
        accepted = {"by": by, "why": why, "at": datetime.now(UTC).isoformat(), "report": report_uri}
        schema |= {
            "inferred_from": report["dataset_id"],
            "number": number,
            "accepted": {**accepted, "anomalies": report["anomalies"]},
        }
        if current and not store.exists(schema_version_key(pipeline, number - 1)):
            store.write_bytes(schema_version_key(pipeline, number - 1), current)  # a version from before versions were kept
        store.write_json(schema_version_key(pipeline, number), schema)
        if store.write_if_match(key, dumps(schema), token):
            break
    _record_volume(store, pipeline, report["dataset_id"], len(frame))
    append_event(store, pipeline, "schema_accepted", number=number, dataset_id=report["dataset_id"], **accepted)
    log.info("Schema version %d of %s accepted by %s (%s) from %s", number, pipeline, by, why, report_uri)
    return {"number": number, "schema_uri": store.uri(key), "dataset_id": report["dataset_id"], **accepted}


VOLUME_HISTORY = 10
"""Accepted datasets whose row counts the volume check compares a new dataset with (their median); the config's
``validation.min_volume_history`` is at most this (a test keeps the two equal)."""


def _record_volume(store: ArtifactStore, pipeline: str, dataset_id: str, rows: int) -> None:
    """Add an accepted dataset's row count to the pipeline's recent history (compare-and-swap, once per dataset)."""
    key = volume_key(pipeline)
    while True:
        data, token = store.read_versioned(key)
        history = json.loads(data) if data else []
        if any(h["dataset_id"] == dataset_id for h in history):
            return
        history = [*history, {"dataset_id": dataset_id, "rows": rows}][-VOLUME_HISTORY:]
        if store.write_if_match(key, dumps(history), token):
            return
