"""Labels in: label exports (files or an S3 prefix, ``monitor.labels``) and the labels sent to ``/feedback``, read
incrementally, deduplicated by id (first label wins, as ``/feedback``) and joined to the prediction log by id, one
log file at a time: memory holds one log file and the new labels, never the log's history.

One batch per DAG run: its plan (``labels/<pipeline>/batches/<batch>.json``: the files not read before, when they
arrived) is written first, and a retry reads exactly those files again into the same keys, so it neither
duplicates nor loses a label. A file read gets a record (``files/<digest>.json``, of its name, size and version)
and is not read again; a changed file is, its ids already labelled counted as such. Arrival order: the feedback
log's rows by time, then a batch's files by name, each file's rows as written.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.ml.multiclass import PROBABILITIES
from airflow_mlops.serving.predlog_reader import COMPACT_GRACE, HOUR, READ_ATTEMPTS, read_file, read_log
from airflow_mlops.stages.label_exports import label_files, label_table, read_label_file
from airflow_mlops.store.artifacts import dumps
from airflow_mlops.store.layout import (
    is_log_part,
    joined_labels_key,
    label_batch_key,
    label_file_key,
    labels_prefix,
    labels_state_key,
    log_file_hour,
    log_file_name,
    log_prefix,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

JOINED_COLUMNS = ("_id", "label", "_label_ts", "_event_ts", "_ts", "_version", "_prediction")
"""A joined row: the id, the label, when it arrived and (optionally) happened, and the prediction it labels: when
it was logged, by which model version, and its value; then the slice columns as logged (text)."""
UNKNOWN_EXAMPLES = 5
LABEL_INDEX, LABEL_PROBABILITY, LABEL_HIT = "_label_index", "_label_probability", "_label_hit"
"""Joined rows of a multiclass model's predictions also hold the label's class index among the model's classes (NaN:
not one of them), the probability the model gave that class and whether it was the most probable (1.0 or 0.0):
what realized accuracy and log loss are taken from."""


@dataclass(frozen=True)
class LabelSource:
    """The config's ``monitor.labels`` section, as the stage needs it (``uri`` None: only the feedback log)."""

    uri: str | None
    fmt: str = "auto"
    id_column: str = "id"
    label_column: str = "label"
    event_time_column: str | None = None
    max_delay_days: float = 30.0


def ingest_labels(
    store: ArtifactStore,
    pipeline: str,
    source: LabelSource,
    *,
    slices: list[str],
    run_id: str,
    s3_client: Any = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Read the labels that arrived since the last ingest, join them to the prediction log and store the joined rows.

    Returns the counts (files read, labels read from the feedback log and from files, invalid, duplicates, already
    labelled, unknown ids, joined) and the prediction days the joined rows fall on. Labels whose id the prediction
    log of the last ``max_delay_days`` does not hold are counted as unknown (with a few examples), never joined.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    now = time.time() if now is None else now
    batch = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)  # the run's, safe in a key
    plan = _plan(store, pipeline, source, batch, s3_client, now)
    if plan.get("result") is not None:
        log.info("Label batch %s of %s already ingested; returning its counts", batch, pipeline)
        return plan["result"]
    since = now - source.max_delay_days * 86400
    feedback = read_log(store, pipeline, "feedback", plan["feedback_since"] + 1e-6, columns=["_id", "label"])
    feedback = feedback.sort_values("_ts", kind="stable")
    tables = [label_table(feedback["_id"].astype(str), feedback["label"], None, feedback["_ts"])]
    for entry in plan["files"]:
        tables.append(read_label_file(entry["name"], source, s3_client, plan["arrived"]))
        log.info("Read %d labels from %s", len(tables[-1]), entry["name"])
    labels = pa.concat_tables(tables)
    read = len(labels)
    valid = pc.and_(pc.is_valid(labels["_id"]), pc.is_finite(pc.fill_null(labels["label"], float("nan"))))
    labels = labels.filter(valid)
    invalid = read - len(labels)
    unique = first_per_id(labels, None)  # in arrival order already
    duplicates = len(labels) - len(unique)
    before = _labelled_before(store, pipeline, unique["_id"], since, batch)
    fresh = unique.filter(pc.invert(before))
    predictions = _matching_predictions(store, pipeline, fresh["_id"], since, slices)
    probabilities = None
    if PROBABILITIES in predictions.column_names:  # a list column cannot pass Arrow's join: it is taken by row after
        probabilities = predictions[PROBABILITIES]
        rows = pa.array(np.arange(len(predictions), dtype=np.int64))
        predictions = predictions.drop_columns([PROBABILITIES]).append_column("_prow", rows)
    joined = fresh.join(predictions, keys="_id", join_type="inner")
    if probabilities is not None:
        joined = _with_label_classes(store, pipeline, joined, probabilities.take(joined["_prow"])).drop_columns(["_prow"])
        predictions = predictions.drop_columns(["_prow"])
    unknown = fresh.filter(pc.invert(pc.is_in(fresh["_id"], value_set=predictions["_id"])))
    unseen = _unseen_label_classes(store, pipeline, joined)
    days = _write_joined(store, pipeline, batch, joined, slices)
    for entry in plan["files"]:
        store.write_json(label_file_key(pipeline, entry["digest"]), {**entry, "batch": batch, "arrived": plan["arrived"]})
    until = float(feedback["_ts"].max()) if len(feedback) else plan["feedback_since"]
    store.write_json(labels_state_key(pipeline), {"feedback_until": until, "batch": batch})
    result = {
        "batch": batch,
        "files": len(plan["files"]),
        "feedback_labels": len(feedback),
        "file_labels": read - len(feedback),
        "invalid": invalid,
        "duplicates": duplicates,
        "already_labelled": len(unique) - len(fresh),
        "unknown": len(unknown),
        "unknown_examples": unknown["_id"].slice(0, UNKNOWN_EXAMPLES).to_pylist(),
        "joined": len(joined),
        "days": days,
    }
    if unseen is not None:
        result["unseen_label_classes"] = unseen
        if unseen:
            log.warning(
                "Labels of %s name classes the models that predicted them do not know: %s",
                pipeline,
                ", ".join(f"{k} ({n})" for k, n in unseen.items()),
            )
    store.write_json(label_batch_key(pipeline, batch), {**plan, "result": result})
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items() if isinstance(v, int))
    log.info("Labels of %s, batch %s: %s", pipeline, batch, counts)
    return result


def _with_label_classes(store: ArtifactStore, pipeline: str, joined: pa.Table, probabilities: Any) -> pa.Table:
    """``joined`` with ``LABEL_INDEX``, ``LABEL_PROBABILITY`` and ``LABEL_HIT`` for the rows multiclass models
    predicted (``probabilities``: their class probabilities, row by row; NaN on the other rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from airflow_mlops.ml.multiclass import probability_matrix
    from airflow_mlops.ml.transform import label_values
    from airflow_mlops.store.layout import model_prefix

    n = len(joined)
    index, chosen, hit = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    versions = joined["_version"].to_numpy(zero_copy_only=False)
    labels = joined["label"].to_pandas()
    vectors = probabilities.to_pylist()
    for version in pc.unique(joined["_version"]).to_pylist() if n else []:
        classes = store.read_json_if_exists(f"{model_prefix(pipeline, version)}/transform.json", {}).get("classes")
        rows = np.flatnonzero(versions == version)
        if not classes or not len(rows) or any(vectors[i] is None for i in rows):
            continue
        matrix = probability_matrix([vectors[i] for i in rows])
        mine = label_values(labels.iloc[rows].reset_index(drop=True), len(rows), classes)
        known = np.isfinite(mine)
        at = mine[known].astype(np.int64)
        index[rows] = mine
        chosen[rows[known]] = matrix[known][np.arange(len(at)), at]
        hit[rows[known]] = (np.argmax(matrix[known], axis=1) == at).astype(float)
    for name, values in ((LABEL_INDEX, index), (LABEL_PROBABILITY, chosen), (LABEL_HIT, hit)):
        joined = joined.append_column(name, pa.array(values, pa.float64()))
    return joined


def _unseen_label_classes(store: ArtifactStore, pipeline: str, joined: pa.Table) -> dict[str, int] | None:
    """Joined labels of multiclass models' predictions whose class is not among that model's classes, counted by
    class; None when no multiclass model made the labelled predictions."""
    import pyarrow.compute as pc

    from airflow_mlops.ml.multiclass import unseen_label_classes
    from airflow_mlops.store.layout import model_prefix

    found: dict[str, int] | None = None
    for version in pc.unique(joined["_version"]).to_pylist() if len(joined) else []:
        spec = store.read_json_if_exists(f"{model_prefix(pipeline, version)}/transform.json", {})
        if not spec.get("classes"):
            continue
        labels = joined.filter(pc.equal(joined["_version"], version))["label"].to_pandas()
        found = found if found is not None else {}
        for key, count in unseen_label_classes(labels, spec["classes"]).items():
            found[key] = found.get(key, 0) + count
    return None if found is None else dict(sorted(found.items()))


def _plan(store: ArtifactStore, pipeline: str, source: LabelSource, batch: str, s3_client: Any, now: float) -> dict[str, Any]:
    """This batch's plan: the one a first attempt wrote, or the files not read before and the feedback log's cursor."""
    key = label_batch_key(pipeline, batch)
    existing = store.read_json_if_exists(key)
    if existing is not None:
        return existing
    read_before = {log_file_name(k).removesuffix(".json") for k in store.list(f"{labels_prefix(pipeline)}/files")}
    files = [f for f in label_files(source.uri, s3_client) if f["digest"] not in read_before] if source.uri else []
    state = store.read_json_if_exists(labels_state_key(pipeline), {})
    since = state.get("feedback_until", now - source.max_delay_days * 86400)
    plan = {"batch": batch, "arrived": now, "files": files, "feedback_since": since, "result": None}
    if not store.write_if_match(key, dumps(plan), None):  # another attempt of this run planned first
        return store.read_json(key)
    return plan


def _days(since: float, until: float) -> list[str]:
    start = datetime.fromtimestamp(since, UTC).date()
    end = datetime.fromtimestamp(until, UTC).date() + timedelta(days=1)  # a server clock a little ahead
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _labelled_before(store: ArtifactStore, pipeline: str, ids: pa.ChunkedArray, since: float, batch: str) -> pa.Array:
    """Which of ``ids`` earlier batches joined already (their parts on the prediction days since ``since``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    seen = pa.array([False] * len(ids), pa.bool_())
    prefix = f"{labels_prefix(pipeline)}/joined"
    for day in _days(since, time.time()):
        for key in store.list(f"{prefix}/{day}"):
            if key.endswith(f"/{batch}.parquet") or not len(ids):
                continue
            earlier = pq.read_table(io.BytesIO(store.read_bytes(key)), columns=["_id"])["_id"]
            seen = pc.or_(seen, pc.is_in(ids, value_set=pc.unique(earlier)))
    return seen


def _matching_predictions(store: ArtifactStore, pipeline: str, ids: pa.ChunkedArray, since: float, slices: list[str]) -> pa.Table:
    """The logged, answered predictions of ``ids`` since ``since`` (the first logged prediction of an id is the one
    labelled), read one log file at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = pc.unique(ids)
    columns = ["_ts", "_id", "_version", "_prediction", "_error", PROBABILITIES, *slices]

    def where(t: pa.Table) -> Any:  # the smaller side makes the hash set: a log file, or the labels
        if len(wanted) <= len(t):
            return pc.is_in(t["_id"], value_set=wanted)
        return pc.is_in(t["_id"], value_set=wanted.filter(pc.is_in(wanted, value_set=pc.unique(t["_id"]))))

    found = scan_predictions(store, pipeline, since, None, columns, where) if len(wanted) else []
    table = (
        pa.concat_tables([_joinable(t, slices) for t in found], promote_options="permissive")
        if found
        else _joinable(None, slices)
    )
    table = table.filter(pc.and_(pc.invert(pc.fill_null(table["_error"], True)), pc.is_valid(table["_prediction"])))
    return first_per_id(table, "_ts").drop_columns(["_error"])


def scan_predictions(
    store: ArtifactStore, pipeline: str, since: float, until: float | None, columns: list[str], where: Any
) -> list[pa.Table]:
    """The prediction log's rows logged in ``[since, until)`` (``until`` None: up to now) that ``where(table)`` (an
    Arrow mask) keeps, ``columns`` of them (those a file has), read one log file at a time: hourly files first, then
    the parts none of them holds. A part compacted away meanwhile makes the scan start again."""
    import pyarrow.compute as pc

    for _attempt in range(READ_ATTEMPTS):
        found: list[pa.Table] = []
        end = time.time() if until is None else until
        keys = [k for day in _days(since, end) for k in store.list(f"{log_prefix('predictions', pipeline)}/{day}")]
        keys = [k for k in keys if k.endswith(".parquet") and not _outside(k, since, until)]
        merged: set[str] = set()
        try:
            for key in [k for k in keys if not is_log_part(k)] + [k for k in keys if is_log_part(k)]:
                if is_log_part(key) and log_file_name(key) in merged:
                    continue
                table, names = read_file(store, key, ["_ts", *columns])
                merged.update(names)
                mask = pc.greater_equal(table["_ts"], since)
                if until is not None:
                    mask = pc.and_(mask, pc.less(table["_ts"], until))
                table = table.filter(pc.and_(mask, where(table)))
                if len(table):
                    found.append(table)
        except ArtifactNotFound:
            log.debug("A prediction log part went away while it was read (compacted); reading again")
            continue
        return found
    raise MlopsError(f"Could not read the prediction log of {pipeline}: parts kept going away while it was read.")


def _outside(key: str, since: float, until: float | None) -> bool:
    """Whether every row of a log file was written before ``since`` (its hour, plus the grace, ended) or at or
    after ``until`` (its hour starts later)."""
    hour = log_file_hour(key)
    if hour is None:
        return False
    return (hour + HOUR + COMPACT_GRACE).timestamp() <= since or (until is not None and hour.timestamp() > until)


def _joinable(table: pa.Table | None, slices: list[str]) -> pa.Table:
    """A log file's rows in the joined schema (slice columns as text, absent ones null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    types = {"_ts": pa.float64(), "_id": pa.string(), "_version": pa.string(), "_prediction": pa.float64(), "_error": pa.bool_()}
    types |= dict.fromkeys(slices, pa.string())
    n = 0 if table is None else len(table)
    out = {}
    for name, kind in types.items():
        present = table is not None and name in table.column_names
        out[name] = pc.cast(table[name], kind) if present else pa.nulls(n, kind)
    if table is not None and PROBABILITIES in table.column_names:  # a multiclass model's rows
        out[PROBABILITIES] = pc.cast(table[PROBABILITIES], pa.list_(pa.float64()))
    return pa.table(out)


def _write_joined(store: ArtifactStore, pipeline: str, batch: str, joined: pa.Table, slices: list[str]) -> list[str]:
    """The batch's joined rows, one part per UTC day of their predictions; returns those days."""
    import numpy as np
    import pyarrow.parquet as pq

    extra = [c for c in (LABEL_INDEX, LABEL_PROBABILITY, LABEL_HIT) if c in joined.column_names]
    joined = joined.select([*JOINED_COLUMNS, *slices, *extra])
    day_numbers = np.floor(joined["_ts"].to_numpy() / 86400).astype("int64")
    days = []
    for number in np.unique(day_numbers).tolist():
        day = datetime.fromtimestamp(number * 86400, UTC).date().isoformat()
        buffer = io.BytesIO()
        pq.write_table(joined.filter(day_numbers == number), buffer)
        store.write_bytes(joined_labels_key(pipeline, day, batch), buffer.getvalue())
        days.append(day)
    return days


def read_joined(store: ArtifactStore, pipeline: str, start: float, end: float, *, batch: str | None = None) -> pa.Table:
    """Joined labels of predictions logged in ``[start, end)`` (only ``batch``'s, when given), one row per id (the
    first label to arrive)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    tables = []
    for day in _days(start, max(start, end - 1e-6)):
        for key in store.list(f"{labels_prefix(pipeline)}/joined/{day}"):
            if batch is None or key.endswith(f"/{batch}.parquet"):
                tables.append(pq.read_table(io.BytesIO(store.read_bytes(key))))
    if not tables:
        return pa.table({c: pa.array([], pa.float64() if c not in ("_id", "_version") else pa.string()) for c in JOINED_COLUMNS})
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.filter(pc.and_(pc.greater_equal(table["_ts"], start), pc.less(table["_ts"], end)))
    return first_per_id(table, "_label_ts")


def first_per_id(table: pa.Table, order: str | None) -> pa.Table:
    """The first row of each ``_id`` by ``order`` (stable: ties and ``order`` None keep the rows' order)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if order is not None:
        table = table.take(pc.sort_indices(table, [(order, "ascending")]))  # stable sort
    table = table.append_column("_row", pa.array(np.arange(len(table), dtype=np.int64)))
    first = table.group_by("_id", use_threads=False).aggregate([("_row", "min")])["_row_min"].to_numpy()
    return table.take(pa.array(np.sort(first))).drop_columns(["_row"])
