"""Snapshots of query results: Arrow record batches from a database, stored like file sources (store/datasets.py)."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.store.datasets import (
    PROGRESS_ROWS,
    DatasetSnapshot,
    _canonical,
    _conform,
    _kind,
    _RowGroupWriter,
    _WiderType,
    row_hashes,
    store_snapshot,
)

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def _as_file_types(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Database types as a file source reads them: decimals as float64, dates and times as their ISO text."""
    arrays, fields = [], []
    for f, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_decimal(f.type):
            column = column.cast(pa.float64())
        elif pa.types.is_temporal(f.type):
            column = column.cast(pa.string())
        arrays.append(column)
        fields.append(pa.field(f.name, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def snapshot_batches(store: ArtifactStore, pipeline: str, source: str, batches: Iterable[pa.RecordBatch]) -> DatasetSnapshot:
    """Store record batches (a query's result, read in chunks) as a content-addressed snapshot.

    Each batch is typed, hashed and written as :func:`~airflow_mlops.store.datasets.snapshot_source` does with a
    file's batches, so the same rows give the same dataset id whether they came from a CSV or Parquet file or a
    table. Memory stays bounded by a batch plus a row group. ``source`` (e.g. ``sql:<conn_id>: <query>``) is only
    recorded in the manifest: never pass anything holding a credential.
    """
    schema: pa.Schema | None = None
    writer: _RowGroupWriter | None = None
    digest, rows = hashlib.sha256(), 0
    with tempfile.TemporaryDirectory(prefix="mlops-acquire-") as tmp:
        out = Path(tmp) / "data.parquet"
        try:
            for batch in batches:
                if not batch.num_rows:
                    continue
                table = _canonical(_as_file_types(batch), {})
                if schema is None:
                    schema = table.schema
                    digest.update(repr([(f.name, _kind(f.type)) for f in schema]).encode())
                    writer = _RowGroupWriter(out, schema)
                try:
                    table = _conform(table, schema, source)
                except _WiderType as widen:
                    raise MlopsError(
                        f"Column {widen.column!r} of {source} changed type between chunks (first read as "
                        f"{schema.field(widen.column).type}); cast it in the query."
                    ) from widen
                digest.update(row_hashes(table.to_pandas()).tobytes())
                writer.write(table)
                rows += table.num_rows
                if rows // PROGRESS_ROWS != (rows - table.num_rows) // PROGRESS_ROWS:
                    log.info("Read %d rows so far", rows)
        finally:
            if writer is not None:
                writer.close()
        if schema is None:
            raise MlopsError(f"Source {source} has no rows.")
        return store_snapshot(store, pipeline, out, digest.hexdigest(), rows, schema, source=source, files=[])
