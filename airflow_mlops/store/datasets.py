"""Content-addressed dataset snapshots: datasets/<pipeline>/<sha256>/{data.parquet, manifest.json}."""

from __future__ import annotations

import glob
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.store.layout import dataset_prefix

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")
ROW_GROUP_ROWS = 131_072
"""Rows per Parquet row group of a snapshot: the batch size of the preprocessing pipeline."""


@dataclass(frozen=True)
class DatasetSnapshot:
    """A stored, immutable dataset."""

    dataset_id: str
    uri: str
    rows: int
    created: bool


def read_source(uri: str, fmt: str = "auto", s3_client: Any = None) -> tuple[pd.DataFrame, list[str]]:
    """Read a local file, a glob, or every object under an s3:// prefix into one frame.

    Files are read in sorted name order so the same files always give the same frame.
    Returns the frame and the list of files read.
    """
    import pandas as pd

    if uri.startswith("s3://"):
        blobs = _read_s3_prefix(uri, s3_client, fmt)
    else:
        path = uri.removeprefix("file://")
        paths = sorted(p for p in glob.glob(path) if Path(p).is_file()) if glob.has_magic(path) else [path]
        missing = [p for p in paths if not Path(p).is_file()]
        if not paths or missing:
            raise ArtifactNotFound(f"Source {uri!r} matched no file.")
        blobs = [(p, Path(p).read_bytes()) for p in paths]
    frames = []
    for name, data in blobs:
        kind = _format_of(name, fmt)
        reader = pd.read_parquet if kind == "parquet" else pd.read_csv
        try:
            frames.append(reader(io.BytesIO(data)))
        except Exception as err:  # pandas raises many types for unreadable files
            raise MlopsError(f"Could not read {name} as {kind}: {err}") from err
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0], [n for n, _ in blobs]


def _format_of(name: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    lowered = name.lower()
    if lowered.endswith((".parquet", ".pq")):
        return "parquet"
    if lowered.endswith((".csv", ".csv.gz")):
        return "csv"
    raise MlopsError(f"Cannot tell the format of {name!r}; set source.format to one of {FORMATS}.")


def _read_s3_prefix(uri: str, client: Any, fmt: str) -> list[tuple[str, bytes]]:
    if client is None:
        raise MlopsError(f"Reading {uri} needs an S3 client.")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    if not keys:
        raise ArtifactNotFound(f"Source {uri!r} matched no object.")
    return [(f"s3://{bucket}/{k}", client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in sorted(keys)]


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in name order, a fresh index, and object columns holding strings or nulls."""
    import pandas as pd

    frame = frame[sorted(frame.columns)].reset_index(drop=True)
    for col in frame.columns:
        values = frame[col]
        if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
            frame[col] = values.where(values.isna(), values.astype(str))
    return frame


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 over the normalized frame's column names and dtypes and a 64-bit hash of each row, in order
    (computed column by column in pandas, without rendering the data as text)."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def snapshot(store: ArtifactStore, pipeline: str, frame: pd.DataFrame, *, source: str, files: list[str]) -> DatasetSnapshot:
    """Store ``frame`` under its content hash; storing the same content again writes nothing."""
    frame = normalize(frame)
    dataset_id = content_hash(frame)
    prefix = dataset_prefix(pipeline, dataset_id)
    manifest_key = f"{prefix}/manifest.json"
    if store.exists(manifest_key):
        log.info("Dataset %s already stored at %s; reusing it", dataset_id[:12], store.uri(prefix))
        return DatasetSnapshot(dataset_id, store.uri(prefix), len(frame), created=False)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, row_group_size=ROW_GROUP_ROWS)  # the batches Beam reads
    store.write_bytes(f"{prefix}/data.parquet", buffer.getvalue())
    manifest = {
        "pipeline": pipeline,
        "dataset_id": dataset_id,
        "source": source,
        "files": files,
        "rows": len(frame),
        "schema": {c: str(t) for c, t in frame.dtypes.items()},
        "hash": {"algorithm": "sha256", "value": dataset_id},
    }
    store.write_json(manifest_key, manifest)  # written last: its presence marks a complete snapshot
    log.info("Stored dataset %s (%d rows) at %s", dataset_id[:12], len(frame), store.uri(prefix))
    return DatasetSnapshot(dataset_id, store.uri(prefix), len(frame), created=True)


def load_dataset(store: ArtifactStore, pipeline: str, dataset_id: str) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(store.read_bytes(f"{dataset_prefix(pipeline, dataset_id)}/data.parquet")))
