"""Reading the prediction (or feedback) log back from the store, for the canary analysis, the drift check and the
performance monitor: the parts the server shipped and the hourly files compaction made of them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

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


class _Adds(Protocol):
    def add(self, table: pa.Table) -> object: ...


A = TypeVar("A", bound=_Adds)


def read_log(store: ArtifactStore, pipeline: str, kind: str, since_ts: float, columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of the prediction (or feedback) log written at or after ``since_ts`` (epoch seconds); with
    ``columns``, only those of them the log has (and ``_ts``) are read. All of them in one frame: a reader of many
    rows goes through :func:`scan_log` instead."""
    import pandas as pd

    tables = scan_log(store, pipeline, kind, since_ts, columns, _Tables).tables
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in LOG_COLUMNS[kind].items()})
    return concat(tables).to_pandas()


def scan_log(
    store: ArtifactStore, pipeline: str, kind: str, since_ts: float, columns: list[str] | None, start: Callable[[], A]
) -> A:
    """The rows of :func:`read_log`, one log file at a time: ``start()`` makes the consumer, whose ``add`` gets each
    file's rows (``_ts`` and ``columns``, those the file has; with ``columns`` None, all) as an Arrow table, hourly
    files first, then the parts none of them holds yet; returns the consumer. Memory is the consumer's plus one file.

    Only the day folders from ``since_ts``'s day to tomorrow (UTC) are listed when that is at most
    ``MAX_LISTED_DAYS`` days; an older start (a first check) lists the whole log once. Files of hours that
    ended before ``since_ts`` are not read. A part compacted away between the listing and its read makes the
    scan start again with a new consumer (its rows are in the hourly file by then).
    """
    import pyarrow.compute as pc

    start_day = datetime.fromtimestamp(since_ts, UTC).date()
    end = datetime.now(UTC).date() + timedelta(days=1)  # a server clock a little ahead still counts
    prefix = log_prefix(kind, pipeline)
    wanted = None if columns is None else ["_ts", *columns]
    for _attempt in range(READ_ATTEMPTS):
        if 0 <= (end - start_day).days <= MAX_LISTED_DAYS:
            days = [start_day + timedelta(days=n) for n in range((end - start_day).days + 1)]
            keys = [k for day in days for k in store.list(f"{prefix}/{day.isoformat()}")]
        else:
            keys = [k for k in store.list(prefix) if log_day(k) >= start_day.isoformat()]
        keys = [k for k in keys if k.endswith(".parquet") and not _ended_before(k, since_ts)]
        consumer, merged = start(), set()
        try:
            for key in [k for k in keys if not is_log_part(k)] + [k for k in keys if is_log_part(k)]:
                if is_log_part(key) and log_file_name(key) in merged:
                    continue
                table, names = read_file(store, key, wanted)
                merged.update(names)
                if len(table) and pc.min(table["_ts"]).as_py() < since_ts:  # filtered in Arrow, before pandas
                    table = table.filter(pc.greater_equal(table["_ts"], since_ts))
                consumer.add(table)
        except ArtifactNotFound:
            log.debug("A %s part went away while reading (compacted); reading again", kind)
            continue
        return consumer
    raise MlopsError(f"Could not read the {kind} log of {pipeline}: parts kept going away while it was read.")


class _Tables:
    """A :func:`scan_log` consumer that keeps every file's rows."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def add(self, table: pa.Table) -> None:
        self.tables.append(table)


def _ended_before(key: str, ts: float) -> bool:
    """Whether every row of a log file was written before ``ts``: the hour its name says ended, plus
    ``COMPACT_GRACE`` (a part is named by the start of its write-ahead segment; its rows follow within seconds)."""
    hour = log_file_hour(key)
    return hour is not None and (hour + HOUR + COMPACT_GRACE).timestamp() <= ts


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
