"""Reading the prediction (or feedback) log back from the store, for the canary analysis, the drift check and the
performance monitor: the parts the server shipped and the hourly files compaction made of them."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.serving.predlog import LOG_COLUMNS
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import is_log_part, log_day, log_file_hour, log_file_name, log_prefix

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

MAX_LISTED_DAYS = 31
READ_ATTEMPTS = 5
HOUR = timedelta(hours=1)
COMPACT_GRACE = timedelta(minutes=5)
"""How long after an hour ends its parts are compacted: the server writes a part within seconds of its rows."""
MERGED_PARTS = b"mlops_merged_parts"
"""Parquet metadata key of an hourly file: the names of the parts it holds."""


def read_log(store: ArtifactStore, pipeline: str, kind: str, since_ts: float, columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of the prediction (or feedback) log written at or after ``since_ts`` (epoch seconds); with
    ``columns``, only those of them the log has (and ``_ts``) are read.

    Only the day folders from ``since_ts``'s day to tomorrow (UTC) are listed when that is at most
    ``MAX_LISTED_DAYS`` days; an older start (a first check) lists the whole log once. Files of hours that
    ended before ``since_ts`` are not read. A part compacted away between the listing and its read makes the
    read start again (its rows are in the hourly file by then).
    """
    import pandas as pd
    import pyarrow.compute as pc

    start = datetime.fromtimestamp(since_ts, UTC).date()
    end = datetime.now(UTC).date() + timedelta(days=1)  # a server clock a little ahead still counts
    prefix = log_prefix(kind, pipeline)
    for _attempt in range(READ_ATTEMPTS):
        if 0 <= (end - start).days <= MAX_LISTED_DAYS:
            days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
            keys = [k for day in days for k in store.list(f"{prefix}/{day.isoformat()}")]
        else:
            keys = [k for k in store.list(prefix) if log_day(k) >= start.isoformat()]
        keys = [k for k in keys if k.endswith(".parquet") and not _ended_before(k, since_ts)]
        try:
            tables = _read_files(store, keys, None if columns is None else ["_ts", *columns])
        except ArtifactNotFound:
            log.debug("A %s part went away while reading (compacted); reading again", kind)
            continue
        if not tables:
            return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in LOG_COLUMNS[kind].items()})
        table = concat(tables)
        if pc.min(table["_ts"]).as_py() < since_ts:  # filtered in Arrow, before the one conversion to pandas
            table = table.filter(pc.greater_equal(table["_ts"], since_ts))
        return table.to_pandas()
    raise MlopsError(f"Could not read the {kind} log of {pipeline}: parts kept going away while it was read.")


def _ended_before(key: str, ts: float) -> bool:
    """Whether every row of a log file was written before ``ts``: the hour its name says ended, plus
    ``COMPACT_GRACE`` (a part is named by the start of its write-ahead segment; its rows follow within seconds)."""
    hour = log_file_hour(key)
    return hour is not None and (hour + HOUR + COMPACT_GRACE).timestamp() <= ts


def _read_files(store: ArtifactStore, keys: list[str], columns: list[str] | None = None) -> list[pa.Table]:
    """Hourly files first, then the parts none of them holds yet."""
    tables, merged = [], set()
    for key in [k for k in keys if not is_log_part(k)]:
        table, names = read_file(store, key, columns)
        tables.append(table)
        merged.update(names)
    tables += [read_file(store, k, columns)[0] for k in keys if is_log_part(k) and log_file_name(k) not in merged]
    return tables


def read_file(store: ArtifactStore, key: str, columns: list[str] | None = None) -> tuple[pa.Table, list[str]]:
    """A part's or an hourly file's rows (``columns`` of them that it has), and the parts an hourly file holds."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(io.BytesIO(store.read_bytes(key)))
    schema = parquet.schema_arrow
    table = parquet.read(columns=None if columns is None else [c for c in dict.fromkeys(columns) if c in schema.names])
    return table.replace_schema_metadata(None), json.loads((schema.metadata or {}).get(MERGED_PARTS, b"[]"))


def concat(tables: list[pa.Table]) -> pa.Table:
    """Tables with the columns of all (a column some lack is null there; integers and floats meet as floats)."""
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="permissive")
