"""Batch scoring as a Beam pipeline, for an input too big for one task's process: the snapshot's row groups
(``Create`` of row-group indexes, then ``ParDo``, as :mod:`.preprocess` reads them) each scored by the same
:class:`~airflow_mlops.serving.batch.BatchScorer` as the in-process path, its part written from the worker straight
to the output folder (the store or a destination, ``file://`` or ``s3://``). The last step collects each part's
counts and log sample in row-group order, so the parts and the prediction log rows equal the in-process ones to
the bit, on every runner.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from airflow_mlops.beam import storage
from airflow_mlops.beam.runners import option_flags, run, runner_for, shown_options, with_partitions
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.batch import BatchScorer, input_ids, parquet_bytes, part_key
from airflow_mlops.store.layout import dataset_prefix, scores_prefix, scoring_id

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


class ScoreRowGroup(beam.DoFn):
    """Row group index -> its part scored and written, and its log sample written beside the store's record of the
    scoring: yields ``(index, rows, rows left out, sampled rows)``."""

    def __init__(
        self, uris: Mapping[str, str], spec: Mapping[str, Any], model_text: str, settings: dict, flags: list[str]
    ) -> None:
        self.uris, self.spec, self.model_text, self.settings, self.flags = dict(uris), spec, model_text, settings, flags
        self._scorer: BatchScorer | None = None
        self._columns: list[str] = []

    def setup(self) -> None:
        storage.use_options(self.flags)
        self._scorer = BatchScorer(self.spec, self.model_text, **self.settings)
        self._columns = self._scorer.columns(storage.read_schema(self.uris["dataset"]).names)

    def process(self, index: int):
        batch = storage.read_row_group(self.uris["dataset"], index, self._columns)
        table, sample, skipped = self._scorer.score(batch, index)
        storage.write_bytes(part_key(self.uris["output"], index), parquet_bytes(table))
        if sample is not None:
            storage.write_bytes(part_key(self.uris["sample"], index), parquet_bytes(pa.Table.from_pandas(sample)))
        yield index, table.num_rows, skipped, 0 if sample is None else len(sample)


def _write_counts(parts: list[tuple[int, int, int, int]], uri: str, flags: list[str]):
    storage.use_options(flags)
    storage.write_json(uri, sorted(parts))
    yield len(parts)


def run_scoring(
    store: ArtifactStore,
    pipeline: str,
    spec: Mapping[str, Any],
    model_text: str,
    settings: dict[str, Any],
    target: ArtifactStore,
    prefix: str,
    runner: str,
    pipeline_options: dict[str, Any],
) -> list[tuple[str, int, int, Any]]:
    """Score the snapshot of ``settings["dataset_id"]`` on the Beam ``runner`` into ``target``'s ``prefix``: one
    part per row group. Returns ``(key, rows, skipped, sample)`` per part in order, as the in-process path does; the
    samples are read back, in order, only up to ``log_max_rows``.

    The workers reach the store and the output through Beam's filesystems, with the ``s3_*`` options of whichever
    of the two is on S3 (both on S3 must share one endpoint and credentials)."""
    import pandas as pd

    reach = [s for s in (store.connection_settings(), target.connection_settings()) if s]
    if len(reach) == 2 and reach[0] != reach[1]:
        raise MlopsError(
            "scoring.engine beam: the artifact store and scoring.output are on S3 with different connections, and "
            "Beam's workers take one S3 endpoint and credentials: write the scores to the store, or give "
            "scoring.output_aws_conn_id the store's connection."
        )
    options = {**storage.s3_options(reach[0] if reach else {}), **pipeline_options}
    flags = option_flags(options)
    storage.use_options(flags)
    record = scores_prefix(pipeline, scoring_id(settings["dataset_id"], settings["model_version"]))
    uris = {
        "dataset": store.uri(f"{dataset_prefix(pipeline, settings['dataset_id'])}/data.parquet"),
        "output": target.uri(prefix),
        "sample": store.uri(f"{record}/sample"),
    }
    groups = storage.row_group_count(uris["dataset"])
    settings = {**settings, "ids": input_ids(storage.read_schema(uris["dataset"]).names, spec, settings["ids"])}
    options = with_partitions(runner, options, groups)
    log.info(
        "Scoring %s (%d row groups) with Beam -> %s (runner %s, options %s)",
        uris["dataset"],
        groups,
        uris["output"],
        runner,
        shown_options(options),
    )
    for stale in store.list(f"{record}/sample"):
        store.delete(stale)
    scoring = beam.Pipeline(runner=runner_for(runner), options=PipelineOptions(option_flags(options)))
    _ = (
        scoring
        | "RowGroups" >> beam.Create(list(range(groups)), reshuffle=False)
        | "Score" >> beam.ParDo(ScoreRowGroup(uris, spec, model_text, settings, flags))
        | "Collect" >> beam.combiners.ToList()
        | "Counts" >> beam.FlatMap(_write_counts, store.uri(f"{record}/beam_parts.json"), flags)
    )
    run(scoring)
    parts, sampled = [], 0
    for index, rows, skipped, sample_rows in store.read_json(f"{record}/beam_parts.json"):
        sample = None
        if sample_rows and sampled < settings["log_max_rows"]:
            sample = pd.read_parquet(io.BytesIO(store.read_bytes(part_key(f"{record}/sample", index))))
            sampled += len(sample)
        parts.append((part_key(prefix, index), rows, skipped, sample))
    log.info("Beam scored %d rows in %d parts", sum(p[1] for p in parts), len(parts))
    return parts
