"""The preprocessing pipeline: fit the transform and the reference profile in one full pass, split rows
deterministically, and write transformed train/eval features as Parquet, all in the artifact store.

The work is two Beam pipelines over the snapshot's row groups (``Create`` of row-group indexes, then ``ParDo``: a
row group is read by range from the store, wherever the worker runs; see :mod:`.storage`). The *analyze* pipeline
summarizes each row group (mergeable statistics and a quantile sketch), merges the summaries in row-group order
(so the result does not depend on how a runner bundles or orders them) and writes ``transform.json`` and
``profile.json``. The *transform* pipeline reads each row group again with the fitted transform: row ids from
content, the train/eval split, the features, each split's rows written as ``<split>/part-<row group>.parquet``.
Every step works on a row group at once (Arrow and numpy), never on rows one by one. Each pipeline ends in one
transform, as the DaskRunner computes only the last one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from airflow_mlops.beam import storage
from airflow_mlops.beam.runners import option_flags, run, runner_for, shown_options, with_partitions
from airflow_mlops.ml import transform as tf
from airflow_mlops.ml.profile import build_profile
from airflow_mlops.ml.transform import ROW_ID
from airflow_mlops.store.datasets import row_hashes

log = logging.getLogger(__name__)

SPLIT_BUCKETS = 10_000
_HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")


@dataclass(frozen=True)
class PreprocessSpec:
    """What to fit and how to split: the pipeline's columns and its config's ``preprocess`` section."""

    numeric: list[str]
    categorical: list[str]
    label: str
    task: str
    eval_fraction: float
    histogram_bins: int
    runner: str
    pipeline_options: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None
    """A multiclass label's classes (category keys, in class index order); None for the other tasks."""


def row_ids(hashes: np.ndarray) -> pa.Array:
    """Hashes as 16 lowercase hex digits (Arrow strings), without a Python loop."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = _HEX[((hashes[:, None] >> shifts) & np.uint64(0xF)).astype(np.intp)]
    return pa.array(np.ascontiguousarray(digits).view("S16").ravel(), type=pa.binary()).cast(pa.string())


def is_eval(hashes: np.ndarray, eval_fraction: float) -> np.ndarray:
    return hashes % np.uint64(SPLIT_BUCKETS) < round(eval_fraction * SPLIT_BUCKETS)


def pipeline_options(spec: PreprocessSpec) -> PipelineOptions:
    return PipelineOptions(option_flags(spec.pipeline_options))


class QuantileSketchFn(beam.CombineFn):
    """An approximate, mergeable quantile sketch of one column, fed whole batches of values.

    A batch is summarized by ``size`` evenly spaced order statistics, each weighing an equal share of its rows;
    merged summaries are compressed back to ``size`` points by weighted rank. The extremes are kept exactly, so
    the first and last edges are the column's minimum and maximum. Rank error is about ``1 / size`` per merge level.
    """

    def __init__(self, num_quantiles: int, size: int = 2000) -> None:
        self.num_quantiles, self.size = num_quantiles, size

    def create_accumulator(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        return np.empty(0), np.empty(0), np.inf, -np.inf

    def add_input(self, acc: Any, values: np.ndarray) -> Any:
        ordered = np.sort(values)  # then evenly spaced order statistics, as np.quantile's linear ones (and faster)
        points = np.interp(np.linspace(0, len(ordered) - 1, min(self.size, len(ordered))), np.arange(len(ordered)), ordered)
        part = (points, np.full(len(points), len(values) / len(points)), float(values.min()), float(values.max()))
        return self.merge_accumulators([acc, part])

    def merge_accumulators(self, accs: Any) -> Any:
        accs = list(accs)
        points = np.concatenate([a[0] for a in accs])
        weights = np.concatenate([a[1] for a in accs])
        low, high = min(a[2] for a in accs), max(a[3] for a in accs)
        if len(points) > 2 * self.size:
            points, weights = self._compress(points, weights, self.size)
        return points, weights, low, high

    @staticmethod
    def _compress(points: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(points, kind="stable")
        points, weights = points[order], weights[order]
        ranks = np.cumsum(weights) - weights / 2
        targets = np.linspace(ranks[0], ranks[-1], size)
        return np.interp(targets, ranks, points), np.full(size, weights.sum() / size)

    def extract_output(self, acc: Any) -> list[float]:
        points, weights, low, high = acc
        if not len(points):
            return []
        inner = self._compress(points, weights, self.num_quantiles)[0][1:-1]  # num_quantiles >= 3: bins >= 2
        return [low, *inner.tolist(), high]


def _sketch_columns(frame: Any, columns: list[str], fn: QuantileSketchFn) -> dict[str, Any]:
    """One row group's quantile summary per numeric column (nulls left out; a column without values has none)."""
    parts = {}
    for col in columns:
        values = tf.numbers_of(frame[col] if col in frame.columns else None, len(frame))
        values = values[~np.isnan(values)]
        if len(values):
            parts[col] = fn.add_input(fn.create_accumulator(), values)
    return parts


class SummarizeRowGroup(beam.DoFn):
    """Row group index -> ``(index, statistics, quantile summaries)`` of its feature columns."""

    def __init__(self, dataset_uri: str, spec: PreprocessSpec, columns: list[str], flags: list[str]) -> None:
        self.dataset_uri, self.spec, self.columns, self.flags = dataset_uri, spec, columns, flags

    def setup(self) -> None:
        storage.use_options(self.flags)

    def process(self, index: int):
        frame = storage.read_row_group(self.dataset_uri, index, self.columns).to_pandas()
        stats = tf.add_frame(tf.new_stats(self.spec.numeric, self.spec.categorical), frame)
        yield index, stats, _sketch_columns(frame, self.spec.numeric, QuantileSketchFn(self.spec.histogram_bins + 1))


class MergeSummaries(beam.CombineFn):
    """All row groups' summaries, merged in row-group order: ``(statistics, quantile edges per column)``.

    The statistics are exact sums (any order gives the same); the quantile sketch is folded one row group after
    the other in index order, so the edges are the same on every runner, however it bundled the row groups."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def create_accumulator(self) -> list:
        return []

    def add_input(self, acc: list, summary: Any) -> list:
        acc.append(summary)
        return acc

    def merge_accumulators(self, accs: Any) -> list:
        return [summary for acc in accs for summary in acc]

    def extract_output(self, acc: list) -> tuple[dict[str, Any], dict[str, list[float]]]:
        acc = sorted(acc, key=lambda summary: summary[0])
        stats = tf.merge_stats([tf.new_stats(self.spec.numeric, self.spec.categorical), *(s[1] for s in acc)])
        fn = QuantileSketchFn(self.spec.histogram_bins + 1)
        quantiles = {}
        for col in self.spec.numeric:
            parts = [s[2][col] for s in acc if col in s[2]]
            if parts:
                sketch = fn.create_accumulator()
                for part in parts:
                    sketch = fn.merge_accumulators([sketch, part])
                quantiles[col] = fn.extract_output(sketch)
        return stats, quantiles


def _write_fitted(merged: tuple[dict[str, Any], dict[str, list[float]]], output_uri: str, spec: PreprocessSpec, flags: list[str]):
    storage.use_options(flags)
    stats, quantiles = merged
    fitted = tf.fit(stats, label=spec.label, task=spec.task, classes=spec.classes)
    storage.write_json(storage.join(output_uri, "transform.json"), fitted)
    storage.write_json(storage.join(output_uri, "profile.json"), build_profile(stats, quantiles))
    yield stats["rows"]


class SplitTransformWrite(beam.DoFn):
    """Row group index -> its rows split, transformed and written: ``train`` and ``eval`` (row id, label, features
    of the labelled rows; rows without a label cannot train or evaluate) and ``eval_raw`` (the raw eval rows with
    their row ids), each as ``<split>/part-<index>.parquet``; yields ``(split, rows)``. The row group is converted to
    pandas once."""

    def __init__(self, dataset_uri: str, output_uri: str, spec: PreprocessSpec, transform: dict, schemas: dict, flags: list[str]):
        self.dataset_uri, self.output_uri, self.spec, self.transform_spec = dataset_uri, output_uri, spec, transform
        self.schemas, self.flags = schemas, flags
        self._transform: tf.FeatureTransform | None = None

    def setup(self) -> None:
        storage.use_options(self.flags)
        self._transform = tf.FeatureTransform(self.transform_spec)

    def process(self, index: int):
        batch = storage.read_row_group(self.dataset_uri, index)
        frame = batch.to_pandas()
        hashes = row_hashes(frame)
        ids = row_ids(hashes)
        evaluation = is_eval(hashes, self.spec.eval_fraction)
        labels = tf.label_values(frame[self.spec.label], len(frame), self.spec.classes)
        labelled = ~np.isnan(labels)
        features = None
        for split, mask in (("train", ~evaluation & labelled), ("eval", evaluation & labelled)):
            if not mask.any():
                continue
            if features is None:
                features = self._transform.apply_frame(frame[labelled])
            chosen = np.asfortranarray(features[mask[labelled]])  # column by column, each contiguous
            columns = [ids.filter(pa.array(mask)), pa.array(labels[mask])]
            columns += [pa.array(chosen[:, j]) for j in range(chosen.shape[1])]
            yield self._write(split, index, pa.Table.from_arrays(columns, schema=self.schemas["features"]))
        if evaluation.any():
            raw = batch.replace_schema_metadata(None).append_column(ROW_ID, ids)
            yield self._write("eval_raw", index, raw.filter(pa.array(evaluation)).cast(self.schemas["raw"]))

    def _write(self, split: str, index: int, table: pa.Table) -> tuple[str, int]:
        schema = self.schemas["raw" if split == "eval_raw" else "features"]
        # the raw rows' strings (categories) dictionary-encoded, not the unique row ids or any float
        dictionary = [f.name for f in schema if f.name != ROW_ID and pa.types.is_string(f.type)] if split == "eval_raw" else []
        storage.write_parquet(storage.join(self.output_uri, split, f"part-{index:05d}.parquet"), table, schema, dictionary)
        return split, table.num_rows


def run_preprocess(input_uri: str, output_uri: str, spec: PreprocessSpec) -> dict[str, Any]:
    """Run the Beam pipelines over the Parquet snapshot at ``input_uri`` and write under ``output_uri`` (URIs of the
    store, ``file://``, ``s3://`` or local paths; ``s3://`` reached with the ``s3_*`` options of ``spec``):

    ``transform.json``, ``profile.json``, ``train/*.parquet``, ``eval/*.parquet`` (model input)
    and ``eval_raw/*.parquet`` (the raw eval rows, for scoring other models with their own transform).
    """
    input_uri, output_uri = str(input_uri), str(output_uri)
    flags = option_flags(spec.pipeline_options)
    storage.use_options(flags)
    schema = storage.read_schema(input_uri).remove_metadata()
    groups = storage.row_group_count(input_uri)
    schemas = {
        "raw": schema.append(pa.field(ROW_ID, pa.string())),
        "features": pa.schema(
            [(ROW_ID, pa.string()), (spec.label, pa.float64())] + [(c, pa.float64()) for c in spec.numeric + spec.categorical]
        ),
    }
    columns = [c for c in schema.names if c in set(spec.numeric + spec.categorical)]
    options = with_partitions(spec.runner, spec.pipeline_options, groups)
    log.info(
        "Starting Beam pipelines on %s (%d row groups) -> %s (runner %s, options %s)",
        input_uri,
        groups,
        output_uri,
        spec.runner,
        shown_options(options),
    )
    beam_options = PipelineOptions(option_flags(options))

    analyze = beam.Pipeline(runner=runner_for(spec.runner), options=beam_options)
    _ = (
        analyze
        | "RowGroups" >> beam.Create(list(range(groups)), reshuffle=False)
        | "Summarize" >> beam.ParDo(SummarizeRowGroup(input_uri, spec, columns, flags))
        | "Merge" >> beam.CombineGlobally(MergeSummaries(spec))
        | "WriteFitted" >> beam.FlatMap(_write_fitted, output_uri, spec, flags)
    )
    run(analyze)
    fitted = storage.read_json(storage.join(output_uri, "transform.json"))

    # The second pass, with the fitted transform as data of its DoFn (a side input would be recomputed per
    # partition on the DaskRunner), streams each row group from read to write.
    transform = beam.Pipeline(runner=runner_for(spec.runner), options=beam_options)
    _ = (
        transform
        | "RowGroups" >> beam.Create(list(range(groups)), reshuffle=False)
        | "SplitTransformWrite" >> beam.ParDo(SplitTransformWrite(input_uri, output_uri, spec, fitted, schemas, flags))
    )
    run(transform)

    summary = {
        "rows": storage.read_json(storage.join(output_uri, "profile.json"))["rows"],
        **{
            f"{split}_rows": sum(storage.parquet_rows(p) for p in storage.list_files(storage.join(output_uri, split), ".parquet"))
            for split in ("train", "eval")
        },
    }
    log.info("Beam pipelines done: %(rows)d rows -> %(train_rows)d train, %(eval_rows)d eval", summary)
    return summary
