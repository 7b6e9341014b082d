"""The scoring input: its snapshot file, its serving-mode validation streamed over Arrow batches, and the rows
``on_anomaly: skip_rows`` leaves out.

Validation holds one batch of the feature columns at a time (:class:`~airflow_mlops.ml.traffic.TrafficChecks`
keeps counts, not rows), so its memory does not grow with the input. Where rows are skipped, a second pass over
the skipped columns counts them with :func:`skipped_rows`, batch by batch as the score stage applies it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound, DataValidationError, MlopsError
from airflow_mlops.ml.traffic import skipped_rows
from airflow_mlops.store.layout import dataset_prefix, report_prefix, schema_key

BATCH_ROWS = 131_072
"""Rows validated and scored at a time by default: a snapshot's row group (``store.datasets.ROW_GROUP_ROWS``), and
the config's ``scoring.batch_rows`` default (a test keeps the two equal)."""

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

ON_ANOMALY = ("fail", "warn", "skip_rows")
ROW_KINDS = ("type_change", "null_ratio", "infinite_values", "out_of_range", "unseen_categories")
"""Anomalies a row carries (its value is the wrong type, null, +-inf, out of range or unseen): ``skip_rows`` leaves
those rows out. A missing or all-null column is in every row: it fails the run whatever ``on_anomaly`` says."""


def validate_input(
    store: ArtifactStore,
    pipeline: str,
    dataset_id: str,
    thresholds: Mapping[str, Any],
    *,
    on_anomaly: str = "fail",
    run_id: str,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, Any]:
    """The traffic checks of the accepted schema (types, nulls, ranges, unseen categories; no label needed) on the
    input snapshot's features, read ``batch_rows`` at a time, with a report always written
    (``scoring_validation.html`` and ``.json``).

    ``on_anomaly``: ``fail`` raises :class:`DataValidationError` on any anomaly; ``warn`` reports them as warnings;
    ``skip_rows`` makes row anomalies (:data:`ROW_KINDS`) warnings and returns, in ``skip``, what the score stage
    leaves out (column -> kinds); any other anomaly still fails.
    """
    from airflow_mlops.ml.traffic import TrafficChecks
    from airflow_mlops.ml.validation import Thresholds
    from airflow_mlops.ml.validation_report import render_report_html

    if on_anomaly not in ON_ANOMALY:
        raise MlopsError(f"on_anomaly must be one of {ON_ANOMALY}; got {on_anomaly!r}.")
    schema = store.read_json_if_exists(schema_key(pipeline))
    if schema is None:
        raise ArtifactNotFound(f"Pipeline {pipeline} has no accepted schema yet: run its training DAG first.")
    checks = TrafficChecks(schema, Thresholds(**thresholds))
    path, cleanup = snapshot_file(store, pipeline, dataset_id)
    try:
        for frame in input_frames(path, list(checks.features), batch_rows):
            checks.add(frame)
        report = checks.report()
        found = len(report.anomalies)
        skip: dict[str, list[str]] = {}
        skipped = 0
        if on_anomaly == "warn" and report.anomalies:
            report.warnings.extend(report.anomalies)
            report.notes.append(f"{found} anomalies reported as warnings (scoring.on_anomaly: warn): every row is scored")
            report.anomalies = []
        elif on_anomaly == "skip_rows":
            rows = [a for a in report.anomalies if a.kind in ROW_KINDS]
            for a in rows:
                skip.setdefault(a.column, []).append(a.kind)
            report.anomalies = [a for a in report.anomalies if a.kind not in ROW_KINDS]
            report.warnings.extend(rows)
            if skip:
                skipped = sum(int(skipped_rows(f, schema, skip).sum()) for f in input_frames(path, list(skip), batch_rows))
                report.notes.append(
                    f"{skipped} of {report.rows} rows left out (scoring.on_anomaly: skip_rows): "
                    + "; ".join(f"{c}: {', '.join(k)}" for c, k in skip.items())
                )
    finally:
        cleanup()
    prefix = report_prefix(pipeline, run_id)
    store.write_text(
        f"{prefix}/scoring_validation.html",
        render_report_html(report, pipeline=pipeline, dataset_id=dataset_id, schema_uri=store.uri(schema_key(pipeline))),
    )
    store.write_json(f"{prefix}/scoring_validation.json", {"dataset_id": dataset_id, "mode": "serving", **report.to_dict()})
    report_uri = store.uri(f"{prefix}/scoring_validation.html")
    if report.anomalies:
        lines = "; ".join(f"{a.column}: {a.kind}: {a.message}" for a in report.anomalies[:10])
        raise DataValidationError(
            f"{len(report.anomalies)} anomalies in scoring input {dataset_id[:12]} ({lines}). Report: {report_uri}", report_uri
        )
    return {"anomalies": found, "report_uri": report_uri, "skip": skip, "skipped_rows": skipped, "rows": report.rows}


def input_frames(path: Path, wanted: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    """The ``wanted`` columns the file has (a missing one is reported by the checks), ``batch_rows`` rows at a time
    as pandas; an empty file gives one empty frame, so its columns and their types are still checked."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path, pre_buffer=False)  # pre_buffer held every row group read until the end
    columns = [c for c in wanted if c in parquet.schema_arrow.names]
    empty = True
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        empty = False
        yield batch.to_pandas()
    if empty:
        yield parquet.schema_arrow.empty_table().select(columns).to_pandas()


def snapshot_file(store: ArtifactStore, pipeline: str, dataset_id: str) -> tuple[Path, Any]:
    """A local path of the snapshot's data.parquet (downloaded from a remote store), and what removes the download."""
    key = f"{dataset_prefix(pipeline, dataset_id)}/data.parquet"
    local = store.local_path(key)
    if local is not None:
        if not local.is_file():
            raise ArtifactNotFound(f"No dataset {dataset_id} at {store.uri(key)}.")
        return local, lambda: None
    folder = tempfile.TemporaryDirectory(prefix="mlops-score-")
    path = Path(folder.name) / "data.parquet"
    store.download_file(key, path)
    return path, folder.cleanup
