"""Batch scoring: resolve the model once, validate the input in serving mode, score it in Arrow batches with the
model's own transform, write sharded Parquet keyed by (input content, model version), log a sample of the rows.

The input is acquired by :func:`airflow_mlops.stages.data.acquire` (a snapshot needs no label) and validated, in
Arrow batches, by :func:`~airflow_mlops.stages.scoring_input.validate_input` (also importable from here). Scores
equal the model server's to the last bit: the same transform (``apply_frame``, proven equal to the server's
``apply``) and the same ``Booster.predict`` call on float64 rows.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.serving.predlog import BATCH_REQUEST_PREFIX, PREDICTION_COLUMNS
from airflow_mlops.stages.scoring_input import BATCH_ROWS, ON_ANOMALY, ROW_KINDS, skipped_rows, snapshot_file, validate_input
from airflow_mlops.store.layout import log_part_key, model_prefix, schema_key, scores_prefix, scoring_id

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.store.artifacts import ArtifactStore

__all__ = [
    "DONE",
    "ON_ANOMALY",
    "PRODUCTION",
    "ROW_KINDS",
    "SCORE_THREADS",
    "output_folder",
    "publish",
    "resolve_model",
    "score",
    "skipped_rows",
    "validate_input",
]

log = logging.getLogger(__name__)

PRODUCTION = "production"
SCORE_THREADS = 1
"""LightGBM threads per predict, as the server and evaluation call it."""
DONE = "_SUCCESS.json"
"""Written last into an output folder: the parts it lists are the complete scores."""


def resolve_model(store: ArtifactStore, pipeline: str, model: str = PRODUCTION) -> dict[str, Any]:
    """The model version a scoring run uses, resolved once at its start: the production alias's version now, or the
    pinned ``model``. Later tasks take it from here, so a promotion during the run does not change it."""
    from airflow_mlops.stages.training import is_trained
    from airflow_mlops.store.registry import ModelRegistry

    registry = ModelRegistry(store, pipeline)
    version = registry.production() if model == PRODUCTION else model
    if version is None:
        raise MlopsError(f"Pipeline {pipeline} has no production model to score with; train and promote one first.")
    entry = registry.get(version)
    if entry is not None and entry["status"] == "rejected" and model == PRODUCTION:
        raise MlopsError(f"Production model {version} of {pipeline} is marked rejected; refusing to score with it.")
    if not is_trained(store, pipeline, version):
        raise ArtifactNotFound(
            f"Model {version} of {pipeline} is not in the store at {store.uri(model_prefix(pipeline, version))}."
        )
    log.info("Scoring %s with model %s (%s)", pipeline, version, "production alias" if model == PRODUCTION else "pinned")
    return {"model_version": version, "model": model, "resolved_at": datetime.now(UTC).isoformat()}


def score(
    store: ArtifactStore,
    pipeline: str,
    dataset_id: str,
    model_version: str,
    *,
    output: str | None = None,
    output_client: Any = None,
    id_columns: list[str] | None = None,
    skip: Mapping[str, list[str]] | None = None,
    batch_rows: int = BATCH_ROWS,
    log_sample: float = 0.0,
    log_max_rows: int = 100_000,
) -> dict[str, Any]:
    """Score the input snapshot with ``model_version`` in batches of ``batch_rows``: one Parquet part per batch with
    the id columns, ``score`` (a classifier's class-1 probability, with ``class`` at 0.5), ``model_version`` and
    ``dataset_id``. Parts go to ``scores/<pipeline>/<scoring id>/`` in the store, or ``<output>/<scoring id>/``;
    the same input and model always write the same parts (stale ones are removed), never a second copy.

    A sample of the scored rows (``log_sample`` of each batch, by a draw fixed by the scoring id, at most
    ``log_max_rows``) goes into the prediction log as one part, its ``_request`` ``batch-<scoring id>``; a rerun
    rewrites that same part.

    :param skip: rows to leave out (:func:`validate_input`'s ``skip``).
    :param output_client: S3 client for an ``s3://`` output.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.ml.transform import FeatureTransform
    from airflow_mlops.stages.training import load_booster

    scoring = scoring_id(dataset_id, model_version)
    spec = store.read_json(f"{model_prefix(pipeline, model_version)}/transform.json")
    transform, booster = FeatureTransform(spec), load_booster(store, pipeline, model_version)
    schema = store.read_json_if_exists(schema_key(pipeline)) if skip else None
    target, prefix = output_folder(store, pipeline, scoring, output, output_client)
    path, cleanup = snapshot_file(store, pipeline, dataset_id)
    try:
        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre_buffer held every row group read until the end
        names = parquet.schema_arrow.names
        ids = [c for c in names if c not in transform.features and c != spec["label"]] if id_columns is None else id_columns
        if missing := [c for c in ids if c not in names]:
            raise MlopsError(f"scoring.id_columns {missing} are not columns of the input (it has {names}).")
        columns = list(dict.fromkeys([*ids, *(c for c in transform.features if c in names)]))
        written, rows, skipped, sample = [], 0, 0, []
        draw = np.random.default_rng(int(scoring.encode().hex()[:15], 16))
        for i, batch in enumerate(parquet.iter_batches(batch_size=batch_rows, columns=columns)):
            frame = batch.to_pandas()
            if skip:
                keep = ~skipped_rows(frame, schema, skip)
                skipped += int((~keep).sum())
                batch, frame = batch.filter(pa.array(keep)), frame[keep].reset_index(drop=True)
            scores = booster.predict(transform.apply_frame(frame), num_threads=SCORE_THREADS) if len(frame) else np.empty(0)
            table = _scored_table(batch.select(ids), scores, spec["task"], model_version, dataset_id)
            key = f"{prefix}/part-{i:05d}.parquet"
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            target.write_bytes(key, buffer.getvalue())
            written.append(key)
            if log_sample > 0 and len(frame):
                picked = np.flatnonzero(draw.random(len(frame)) < log_sample)[: max(log_max_rows - sum(map(len, sample)), 0)]
                if len(picked):
                    sample.append(_log_rows(frame.iloc[picked], scores[picked], ids, transform, model_version, i, rows))
            rows += len(frame)
    finally:
        cleanup()
    for stale in sorted(set(target.list(prefix)) - set(written)):
        if stale.rsplit("/", 1)[-1].startswith("part-"):
            target.delete(stale)
    logged = _write_log_sample(store, pipeline, scoring, sample) if sample else {"rows": 0, "key": None}
    where = target.uri(prefix)
    log.info(
        "Scored %d rows (%d left out) of %s with %s: %d part(s) at %s",
        rows,
        skipped,
        dataset_id[:12],
        model_version,
        len(written),
        where,
    )
    return {
        "scoring_id": scoring,
        "output_uri": target.uri(prefix),
        "parts": len(written),
        "rows": rows,
        "skipped_rows": skipped,
        "model_version": model_version,
        "dataset_id": dataset_id,
        "logged_rows": logged["rows"],
        "log_key": logged["key"],
    }


def publish(
    store: ArtifactStore,
    pipeline: str,
    result: Mapping[str, Any],
    *,
    run_id: str,
    output: str | None = None,
    output_client: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """Mark a scoring (:func:`score`'s ``result``, written to ``output``) complete: ``_SUCCESS.json`` in its output
    folder (the parts and counts), ``scoring.json`` in the store's scores folder, and one ``batch_scored`` event for
    the run (``extra``: the input, the anomalies...)."""
    from airflow_mlops.store.events import append_event

    target, prefix = output_folder(store, pipeline, result["scoring_id"], output, output_client)
    record = {
        "pipeline": pipeline,
        "run_id": run_id,
        "parts": sorted(k for k in target.list(prefix) if k.rsplit("/", 1)[-1].startswith("part-")),
        **{k: result[k] for k in ("scoring_id", "output_uri", "rows", "skipped_rows", "model_version", "dataset_id")},
        **{k: result.get(k) for k in ("logged_rows", "log_key")},
        **extra,
    }
    target.write_json(f"{prefix}/{DONE}", record)
    store.write_json(f"{scores_prefix(pipeline, result['scoring_id'])}/scoring.json", record)
    append_event(
        store,
        pipeline,
        "batch_scored",
        event_id=f"scoring-{run_id}",
        **{k: v for k, v in record.items() if k not in ("parts", "pipeline")},
    )
    return record


def output_folder(
    store: ArtifactStore, pipeline: str, scoring: str, output: str | None, client: Any = None
) -> tuple[ArtifactStore, str]:
    """Where one scoring's parts go: the store's ``scores/<pipeline>/<scoring id>``, or ``<output>/<scoring id>``."""
    from airflow_mlops.store.artifacts import ArtifactStore

    if output is None:
        return store, scores_prefix(pipeline, scoring)
    return ArtifactStore.from_uri(output, client), scoring


def _scored_table(ids: Any, scores: np.ndarray, task: str, model_version: str, dataset_id: str) -> Any:
    import pyarrow as pa

    table = pa.Table.from_batches([ids]).append_column("score", pa.array(scores, pa.float64()))
    if task == "classification":
        table = table.append_column("class", pa.array((scores >= 0.5).astype("int8")))
    n = len(scores)
    return table.append_column("model_version", pa.array([model_version] * n, pa.string())).append_column(
        "dataset_id", pa.array([dataset_id] * n, pa.string())
    )


def _log_rows(
    frame: pd.DataFrame, scores: np.ndarray, ids: list[str], transform: Any, version: str, batch: int, offset: int
) -> pd.DataFrame:
    """Prediction log rows (``serving.predlog``'s columns) for sampled scored rows: the first id column is the row id
    (else ``<batch>-<row>``); features as the server logs them (numbers as floats, categories as text). A batch row
    has no request latency: ``_latency_ms`` is 0, and its ``_request`` (``batch-...``) marks it as batch traffic."""
    import pandas as pd

    from airflow_mlops.ml.transform import numbers_of

    n = len(frame)
    row_ids = frame[ids[0]].astype(str) if ids else pd.Series([f"{batch:05d}-{offset + i}" for i in frame.index])
    out = {
        "_id": row_ids.to_numpy(dtype=object),
        "_version": version,
        "_prediction": scores,
        "_error": False,
        "_latency_ms": 0.0,
        "_request": f"{BATCH_REQUEST_PREFIX}{batch:05d}",
    }
    numeric = set(transform.spec["numeric"])
    for name in transform.features:
        values = frame[name] if name in frame else pd.Series([None] * n, index=frame.index)
        if name in numeric:
            out[name] = numbers_of(values, n)
        else:
            out[name] = [None if v is None or v != v else str(v) for v in values.astype(object)]
    return pd.DataFrame(out)


def _write_log_sample(store: ArtifactStore, pipeline: str, scoring: str, parts: list[pd.DataFrame]) -> dict[str, Any]:
    """One prediction log part for a scoring's sample. Its key and row times are recorded first (``log.json``), so a
    rerun rewrites the same part with the same rows, never a second copy."""
    import pandas as pd

    plan_key = f"{scores_prefix(pipeline, scoring)}/log.json"
    plan = store.read_json_if_exists(plan_key)
    if plan is None:
        now = datetime.now(UTC)
        plan = {"key": log_part_key("predictions", pipeline, now, f"batch-{scoring}"), "ts": now.timestamp()}
        store.write_json(plan_key, plan)
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "_ts", plan["ts"])
    frame["_request"] = frame["_request"].str.replace(BATCH_REQUEST_PREFIX, f"{BATCH_REQUEST_PREFIX}{scoring}-", n=1)
    frame = frame.astype({c: t for c, t in PREDICTION_COLUMNS.items() if c in frame})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.write_bytes(plan["key"], buffer.getvalue())
    log.info("Logged %d of the scored rows to %s", len(frame), store.uri(plan["key"]))
    return {"rows": len(frame), "key": plan["key"]}
