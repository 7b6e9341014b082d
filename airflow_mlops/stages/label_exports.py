"""Label exports: the files (or S3 objects) a ``monitor.labels`` uri matches, each with the identity it is read
once by, and their rows as (id, label, event time, arrival) Arrow columns."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsError

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.stages.labels import LabelSource
    from airflow_mlops.store.artifacts import ArtifactStore


def label_files(uri: str, s3_client: Any) -> list[dict[str, Any]]:
    """The label files at ``uri`` (a path, a glob, or an ``s3://bucket/prefix`` with an optional glob), sorted by
    name, each with its size, version (mtime or ETag) and digest; none is not an error (no labels yet)."""
    found = []
    if uri.startswith("s3://"):
        if s3_client is None:
            raise MlopsError(f"Reading labels from {uri} needs an S3 client.")
        bucket, _, pattern = uri.removeprefix("s3://").partition("/")
        magic = next((i for i, ch in enumerate(pattern) if ch in "*?["), None)
        prefix = pattern if magic is None else pattern[:magic]
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/") and (magic is None or fnmatch.fnmatchcase(obj["Key"], pattern)):
                    found.append((f"s3://{bucket}/{obj['Key']}", int(obj["Size"]), str(obj["ETag"]).strip('"')))
    else:
        path = uri.removeprefix("file://")
        for name in glob.glob(path) if glob.has_magic(path) else [path]:
            if Path(name).is_file():
                stat = os.stat(name)
                found.append((name, stat.st_size, str(stat.st_mtime_ns)))
    return [
        {
            "name": name,
            "size": size,
            "version": version,
            "digest": hashlib.sha256(f"{name}\0{size}\0{version}".encode()).hexdigest()[:32],
        }
        for name, size, version in sorted(found)
    ]


def store_label_query(store: ArtifactStore, pipeline: str, batches: Iterable[Any]) -> str | None:
    """A query's result (Arrow record batches) stored as one Parquet label export named by the hash of its rows, and
    its URI for :func:`label_files`; the same rows give the same export, written once, so the ingest reads them once.
    None when the query gave no rows."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.store.layout import label_query_key

    digest, writer, rows = hashlib.sha256(), None, 0
    with tempfile.TemporaryDirectory(prefix="mlops-labels-") as tmp:
        path = Path(tmp) / "labels.parquet"
        try:
            for batch in batches:
                table = pa.Table.from_batches([batch])
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                    digest.update(repr(table.schema).encode())
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as ipc:
                    ipc.write_table(table)
                digest.update(sink.getvalue())
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        if not rows:
            return None
        key = label_query_key(pipeline, digest.hexdigest()[:32])
        if not store.exists(key):
            store.upload_file(path, key, move=True)
    return store.uri(key)


def label_table(ids: Any, labels: Any, event_ts: Any, label_ts: Any) -> pa.Table:
    """Label rows from columns (Arrow arrays, or anything ``pa.array`` takes); ``event_ts`` None: not given."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def column(values: Any, kind: pa.DataType) -> Any:
        return pc.cast(values, kind) if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, kind)

    n = len(ids)
    return pa.table(
        {
            "_id": column(ids, pa.string()),
            "label": column(labels, pa.float64()),
            "_label_ts": column(label_ts, pa.float64()),
            "_event_ts": pa.nulls(n, pa.float64()) if event_ts is None else column(event_ts, pa.float64()),
        }
    )


def read_label_file(name: str, source: LabelSource, s3_client: Any, arrived: float) -> pa.Table:
    """One label file as (id, label, event time, arrival) rows; an S3 object is downloaded to a temporary file."""
    import tempfile

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from airflow_mlops.store.datasets import _format_of

    wanted = [source.id_column, source.label_column, *([source.event_time_column] if source.event_time_column else [])]
    with tempfile.TemporaryDirectory(prefix="mlops-labels-") as tmp:
        path = name
        if name.startswith("s3://"):
            bucket, _, key = name.removeprefix("s3://").partition("/")
            path = str(Path(tmp) / "labels")
            s3_client.download_file(bucket, key, path)
        try:
            if _format_of(name, source.fmt) == "parquet":
                present = pq.ParquetFile(path).schema_arrow.names
                table = pq.read_table(path, columns=[c for c in wanted if c in present])
            else:
                header = pcsv.open_csv(path).schema.names
                options = pcsv.ConvertOptions(
                    include_columns=[c for c in wanted if c in header],
                    column_types={source.id_column: pa.string()},
                    strings_can_be_null=True,
                )
                table = pcsv.read_csv(path, convert_options=options)
        except (pa.ArrowException, OSError) as err:
            raise MlopsError(f"Could not read labels from {name}: {err}") from err
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise MlopsError(f"Label file {name} has no column {missing[0]!r} (monitor.labels names {', '.join(wanted)}).")
    try:
        labels = pc.cast(table[source.label_column], pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise MlopsError(f"Label file {name}: column {source.label_column!r} is not numeric: {err}") from err
    event = _epoch_seconds(table[source.event_time_column], name) if source.event_time_column else None
    ids = pc.cast(table[source.id_column], pa.string())
    return label_table(ids, labels, event, pa.array(np.full(len(table), arrived)))


def _epoch_seconds(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """An event time column (numbers of epoch seconds, timestamps or ISO text) as float epoch seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
        return pc.cast(column, pa.float64())
    try:
        stamps = column if pa.types.is_timestamp(column.type) else pc.cast(column, pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise MlopsError(f"Label file {name}: the event time is neither epoch seconds nor ISO timestamps: {err}") from err
    micros = pc.cast(pc.cast(stamps, pa.timestamp("us", tz="UTC")), pa.int64())
    return pc.divide(pc.cast(micros, pa.float64()), 1e6)
