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
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.serving.batch import BatchScorer, input_ids, parquet_bytes, part_key
from airflow_mlops.serving.predlog import BATCH_REQUEST_PREFIX, PREDICTION_COLUMNS
from airflow_mlops.stages.scoring_input import BATCH_ROWS, ON_ANOMALY, ROW_KINDS, snapshot_file, validate_input
from airflow_mlops.store.layout import log_part_key, model_prefix, schema_key, scores_prefix, scoring_id

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.store.artifacts import ArtifactStore

__all__ = [
    "DONE",
    "ON_ANOMALY",
    "PRODUCTION",
    "ROW_KINDS",
    "BatchScorer",
    "output_folder",
    "publish",
    "resolve_model",
    "score",
    "validate_input",
]

log = logging.getLogger(__name__)

PRODUCTION = "production"
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
    engine: str = "local",
    explain: bool = False,
    runner: str = "DirectRunner",
    pipeline_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the input snapshot with ``model_version`` in batches of ``batch_rows``: one Parquet part per batch with
    the id columns, ``score`` (a classifier's class-1 probability, with ``class`` at 0.5), ``model_version`` and
    ``dataset_id``. Parts go to ``scores/<pipeline>/<scoring id>/`` in the store, or ``<output>/<scoring id>/``;
    the same input and model always write the same parts (stale ones are removed), never a second copy.

    A sample of the scored rows (``log_sample`` of each batch, by a draw fixed by the scoring id, at most
    ``log_max_rows``) goes into the prediction log as one part, its ``_request`` ``batch-<scoring id>``; a rerun
    rewrites that same part.

    ``engine``: ``local`` scores the batches in this process; ``beam`` runs :class:`BatchScorer` over the
    snapshot's row groups as a Beam pipeline on ``runner`` with ``pipeline_options`` (the batches are the row
    groups, so ``batch_rows`` must be the snapshot's row group size; the parts are the same, to the bit).

    :param skip: rows to leave out (:func:`validate_input`'s ``skip``).
    :param output_client: S3 client for an ``s3://`` output.
    :param explain: also write each row's contributions (``contribution_<feature>``, ``expected_value``).
    """
    scoring = scoring_id(dataset_id, model_version)
    spec = store.read_json(f"{model_prefix(pipeline, model_version)}/transform.json")
    model_text = store.read_text(f"{model_prefix(pipeline, model_version)}/model.txt")
    schema = store.read_json_if_exists(schema_key(pipeline)) if skip else None
    target, prefix = output_folder(store, pipeline, scoring, output, output_client)
    settings = {"ids": id_columns, "model_version": model_version, "dataset_id": dataset_id, "schema": schema}
    settings |= {"skip": skip, "log_sample": log_sample, "log_max_rows": log_max_rows, "explain": explain}
    if engine == "beam":
        if batch_rows != BATCH_ROWS:
            raise MlopsError(f"scoring.batch_rows must be {BATCH_ROWS} (the snapshot's row groups) with engine beam.")
        from airflow_mlops.beam.scoring import run_scoring

        parts = run_scoring(store, pipeline, spec, model_text, settings, target, prefix, runner, dict(pipeline_options or {}))
    else:
        parts = _score_local(store, pipeline, spec, model_text, settings, target, prefix, batch_rows)
    written = [key for key, _, _, _ in parts]
    rows, skipped = sum(p[1] for p in parts), sum(p[2] for p in parts)
    for stale in sorted(set(target.list(prefix)) - set(written)):
        if stale.rsplit("/", 1)[-1].startswith("part-"):
            target.delete(stale)
    sample = [p[3] for p in parts if p[3] is not None]
    logged = _write_log_sample(store, pipeline, scoring, sample, log_max_rows) if sample else {"rows": 0, "key": None}
    log.info(
        "Scored %d rows (%d left out) of %s with %s: %d part(s) at %s",
        rows,
        skipped,
        dataset_id[:12],
        model_version,
        len(written),
        target.uri(prefix),
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


def _score_local(
    store: ArtifactStore,
    pipeline: str,
    spec: Mapping[str, Any],
    model_text: str,
    settings: dict[str, Any],
    target: ArtifactStore,
    prefix: str,
    batch_rows: int,
) -> list[tuple[str, int, int, pd.DataFrame | None]]:
    """The batches scored in this process, each part written as it is scored: ``(key, rows, skipped, sample)`` each."""
    import pyarrow.parquet as pq

    path, cleanup = snapshot_file(store, pipeline, settings["dataset_id"])
    try:
        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre_buffer held every row group read until the end
        names = parquet.schema_arrow.names
        scorer = BatchScorer(spec, model_text, **{**settings, "ids": input_ids(names, spec, settings["ids"])})
        parts, sampled = [], 0
        for i, batch in enumerate(parquet.iter_batches(batch_size=batch_rows, columns=scorer.columns(names))):
            table, sample, skipped = scorer.score(batch, i)
            target.write_bytes(part_key(prefix, i), parquet_bytes(table))
            if sample is not None and sampled >= scorer.log_max_rows:
                sample = None  # the log holds the first log_max_rows sampled rows, in batch order
            sampled += 0 if sample is None else len(sample)
            parts.append((part_key(prefix, i), table.num_rows, skipped, sample))
        return parts
    finally:
        cleanup()


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


def scored_parts(
    store: ArtifactStore, pipeline: str, result: Mapping[str, Any], output: str | None = None, client: Any = None
) -> Iterator[pd.DataFrame]:
    """The parts of a scoring (:func:`score`'s ``result``) as frames, one at a time, in order."""
    import pandas as pd

    target, prefix = output_folder(store, pipeline, result["scoring_id"], output, client)
    for key in sorted(k for k in target.list(prefix) if k.rsplit("/", 1)[-1].startswith("part-")):
        yield pd.read_parquet(io.BytesIO(target.read_bytes(key)))


def output_folder(
    store: ArtifactStore, pipeline: str, scoring: str, output: str | None, client: Any = None
) -> tuple[ArtifactStore, str]:
    """Where one scoring's parts go: the store's ``scores/<pipeline>/<scoring id>``, or ``<output>/<scoring id>``."""
    from airflow_mlops.store.artifacts import ArtifactStore

    if output is None:
        return store, scores_prefix(pipeline, scoring)
    return ArtifactStore.from_uri(output, client), scoring


def _write_log_sample(
    store: ArtifactStore, pipeline: str, scoring: str, parts: list[pd.DataFrame], max_rows: int
) -> dict[str, Any]:
    """One prediction log part for a scoring's sample (its first ``max_rows`` rows, in batch order). Its key and row times are recorded first (``log.json``), so a
    rerun rewrites the same part with the same rows, never a second copy."""
    import pandas as pd

    plan_key = f"{scores_prefix(pipeline, scoring)}/log.json"
    plan = store.read_json_if_exists(plan_key)
    if plan is None:
        now = datetime.now(UTC)
        plan = {"key": log_part_key("predictions", pipeline, now, f"batch-{scoring}"), "ts": now.timestamp()}
        store.write_json(plan_key, plan)
    frame = pd.concat(parts, ignore_index=True).iloc[:max_rows]
    frame.insert(0, "_ts", plan["ts"])
    frame["_request"] = frame["_request"].str.replace(BATCH_REQUEST_PREFIX, f"{BATCH_REQUEST_PREFIX}{scoring}-", n=1)
    frame = frame.astype({c: t for c, t in PREDICTION_COLUMNS.items() if c in frame})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.write_bytes(plan["key"], buffer.getvalue())
    log.info("Logged %d of the scored rows to %s", len(frame), store.uri(plan["key"]))
    return {"rows": len(frame), "key": plan["key"]}
