"""Compaction of the prediction (or feedback) log: each past hour's parts merged into that hour's file, run by the
monitor DAG's ``compact_log`` task."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.serving.predlog_reader import COMPACT_GRACE, HOUR, MERGED_PARTS, concat, read_file
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import is_log_part, log_file_hour, log_file_name, log_hour_key, log_prefix

log = logging.getLogger(__name__)


def compact_log(
    store: ArtifactStore, pipeline: str, kind: str, *, now: datetime | None = None, grace: timedelta = COMPACT_GRACE
) -> dict[str, int]:
    """Merge the parts of every hour that ended at least ``grace`` ago into that hour's file, then delete them.

    The hourly file lists the parts it holds (Parquet metadata) and is written before any part is deleted, so an
    interrupted compaction loses no row and duplicates none: readers skip the parts an hourly file lists, and a
    retry merges only the parts not listed yet.
    """
    import pyarrow.parquet as pq

    now = now or datetime.now(UTC)
    hours: dict[datetime, list[str]] = {}
    for key in store.list(log_prefix(kind, pipeline)):
        if is_log_part(key) and (hour := log_file_hour(key)) is not None:
            hours.setdefault(hour, []).append(key)
    done = {"hours": 0, "parts": 0, "rows": 0}
    for hour, parts in sorted(hours.items()):
        if hour + HOUR + grace > now:
            continue  # the server may still write parts for this hour
        hour_key = log_hour_key(kind, pipeline, hour.date().isoformat(), hour.hour)
        try:
            held, merged = read_file(store, hour_key)
        except ArtifactNotFound:  # the hour's first compaction
            held, merged = None, []
        new = [k for k in parts if log_file_name(k) not in merged]
        if new:
            tables = [read_file(store, k)[0] for k in new]
            done["rows"] += sum(t.num_rows for t in tables)
            table = concat([held, *tables] if held is not None else tables).sort_by("_ts")
            names = json.dumps(sorted(merged + [log_file_name(k) for k in new])).encode()
            buffer = io.BytesIO()
            pq.write_table(table.replace_schema_metadata({MERGED_PARTS: names}), buffer)
            store.write_bytes(hour_key, buffer.getvalue())  # before any part goes
        for key in parts:
            store.delete(key)
        done["hours"] += 1
        done["parts"] += len(parts)
    log.info("Compacted %(parts)d %(kind)s parts into %(hours)d hourly files (%(rows)d rows)", {**done, "kind": kind})
    return done
