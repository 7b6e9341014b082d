"""The preprocessing pipeline: fit the transform and the reference profile in one full pass, split rows
deterministically, and write transformed train/eval features as Parquet.

Every step works on Arrow record batches (one ``pyarrow.Table`` per element, as the Parquet source reads
them), never on rows one by one: row ids, the split, the statistics and the transform are vectorized.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from airflow_mlops.ml import transform as tf
from airflow_mlops.ml.profile import build_profile
from airflow_mlops.ml.transform import ROW_ID
from airflow_mlops.store.datasets import row_hashes

log = logging.getLogger(__name__)

SPLIT_BUCKETS = 10_000
_HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")
_SECRET_OPTION = re.compile(r"secret|password|passwd|token|credential|private|api_?key|access_key", re.IGNORECASE)


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


def row_ids(hashes: np.ndarray) -> pa.Array:
    """Hashes as 16 lowercase hex digits (Arrow strings), without a Python loop."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = _HEX[((hashes[:, None] >> shifts) & np.uint64(0xF)).astype(np.intp)]
    return pa.array(np.ascontiguousarray(digits).view("S16").ravel(), type=pa.binary()).cast(pa.string())


def is_eval(hashes: np.ndarray, eval_fraction: float) -> np.ndarray:
    return hashes % np.uint64(SPLIT_BUCKETS) < round(eval_fraction * SPLIT_BUCKETS)


def option_flags(options: dict[str, Any]) -> list[str]:
    """The config's ``pipeline_options`` as Beam command-line flags, each value passed through unchanged:
    ``--key=value``; ``True`` as the bare ``--key`` and ``False`` left out (Beam's switches take no value)."""
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in sorted(options.items()) if v is not False]


def shown_options(options: dict[str, Any]) -> list[str]:
    """:func:`option_flags` for the log, with the values of secret-looking keys masked."""
    return option_flags({k: "***" if _SECRET_OPTION.search(k) and not isinstance(v, bool) else v for k, v in options.items()})


def pipeline_options(spec: PreprocessSpec) -> PipelineOptions:
    return PipelineOptions(option_flags(spec.pipeline_options))


def _batch_size(value: Any) -> int:
    if isinstance(value, pa.Table):
        return value.nbytes
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(index=False).sum())
    if isinstance(value, tuple):
        return sum(_batch_size(v) for v in value)
    return value.nbytes if isinstance(value, np.ndarray) else len(pickle.dumps(value))


class BatchCoder(beam.coders.Coder):
    """Pickles a batch (Arrow table, pandas frame, or ``(column, array)``) and estimates its size from its buffers.

    Beam's counters sample element sizes; through the default coder each sample pickles a whole batch, which
    costs more than the work done on it.
    """

    def _create_impl(self):
        return beam.coders.coder_impl.CallbackCoderImpl(
            lambda value: pickle.dumps(value, pickle.HIGHEST_PROTOCOL), pickle.loads, _batch_size
        )

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return Any


class StatsCombineFn(beam.CombineFn):
    """Beam wrapper around the mergeable statistics of :mod:`airflow_mlops.ml.transform`, one batch at a time."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.numeric, self.categorical = numeric, categorical

    def create_accumulator(self) -> dict[str, Any]:
        return tf.new_stats(self.numeric, self.categorical)

    def add_input(self, acc: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
        return tf.add_frame(acc, frame)

    def merge_accumulators(self, accs: Any) -> dict[str, Any]:
        return tf.merge_stats(list(accs))

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


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


class SplitTransform(beam.DoFn):
    """One batch, converted to pandas once: row ids from content, the train/eval split, and the fitted transform
    (a side input). Tagged outputs: ``train`` and ``eval`` (row id, label, features of the labelled rows; rows
    without a label cannot train or evaluate) and ``eval_raw`` (the raw eval rows with their row ids)."""

    def __init__(self, label: str, eval_fraction: float, features_schema: pa.Schema, raw_schema: pa.Schema) -> None:
        self.label, self.eval_fraction = label, eval_fraction
        self.features_schema, self.raw_schema = features_schema, raw_schema
        self._spec: Any = None
        self._transform: tf.FeatureTransform | None = None

    def process(self, batch: pa.Table, spec: dict[str, Any]):
        if spec is not self._spec:  # the side input object is reused across batches: build once
            self._spec, self._transform = spec, tf.FeatureTransform(spec)
        frame = batch.to_pandas()
        hashes = row_hashes(frame)
        ids = row_ids(hashes)
        evaluation = is_eval(hashes, self.eval_fraction)
        labels = tf.numbers_of(frame[self.label], len(frame))
        labelled = ~np.isnan(labels)
        features = None
        for tag, mask in (("train", ~evaluation & labelled), ("eval", evaluation & labelled)):
            if not mask.any():
                continue
            if features is None:
                features = self._transform.apply_frame(frame[labelled])
            chosen = np.asfortranarray(features[mask[labelled]])  # column by column, each contiguous
            columns = [ids.filter(pa.array(mask)), pa.array(labels[mask])]
            columns += [pa.array(chosen[:, j]) for j in range(chosen.shape[1])]
            yield beam.pvalue.TaggedOutput(tag, pa.Table.from_arrays(columns, schema=self.features_schema))
        if evaluation.any():
            raw = batch.replace_schema_metadata(None).append_column(ROW_ID, ids)
            yield beam.pvalue.TaggedOutput("eval_raw", raw.filter(pa.array(evaluation)).cast(self.raw_schema))


def _numeric_values(frame: pd.DataFrame, columns: list[str]):
    """``(column, values)`` per numeric column of a batch, for the batched quantile sketch (nulls left out)."""
    for col in columns:
        values = tf.numbers_of(frame[col] if col in frame.columns else None, len(frame))
        values = values[~np.isnan(values)]
        if len(values):
            yield col, values


for _type in (pa.Table, pd.DataFrame, np.ndarray):
    beam.coders.registry.register_coder(_type, BatchCoder)


def run_preprocess(input_path: str, out_dir: Path, spec: PreprocessSpec) -> dict[str, Any]:
    """Run the Beam pipeline over one Parquet dataset and write into ``out_dir``:

    ``transform.json``, ``profile.json``, ``train/*.parquet``, ``eval/*.parquet`` (model input)
    and ``eval_raw/*.parquet`` (the raw eval rows, for scoring other models with their own transform).
    """
    out_dir = Path(out_dir)
    raw_schema = pq.read_schema(input_path).remove_metadata().append(pa.field(ROW_ID, pa.string()))
    features_schema = pa.schema(
        [(ROW_ID, pa.string()), (spec.label, pa.float64())] + [(c, pa.float64()) for c in spec.numeric + spec.categorical]
    )
    options = pipeline_options(spec)
    # DirectRunner would first try to download the Prism binary; run its in-process engine directly.
    runner = FnApiRunner() if spec.runner == "DirectRunner" else spec.runner
    log.info(
        "Starting Beam pipeline on %s (runner %s, options %s)", input_path, spec.runner, shown_options(spec.pipeline_options)
    )

    def write_parquet(pcoll: beam.PCollection, name: str, schema: pa.Schema) -> None:
        _ = pcoll | f"Write{name}" >> beam.io.WriteToParquetBatched(
            str(out_dir / name / "part"), schema, file_name_suffix=".parquet"
        )  # one file per bundle, written as the bundle streams: no grouping of the whole split in memory

    def write_json(pcoll: beam.PCollection, name: str) -> None:
        _ = (
            pcoll
            | f"Dump{name}" >> beam.Map(lambda obj: json.dumps(obj, sort_keys=True, indent=2))
            | f"Write{name}" >> beam.io.WriteToText(str(out_dir / name), shard_name_template="", num_shards=1)
        )

    with beam.Pipeline(runner=runner, options=options) as pipeline:
        frames = pipeline | "Read" >> beam.io.ReadFromParquetBatched(input_path) | "ToPandas" >> beam.Map(lambda t: t.to_pandas())
        stats = frames | "Stats" >> beam.CombineGlobally(StatsCombineFn(spec.numeric, spec.categorical))
        quantiles = (
            frames
            | "NumericValues" >> beam.FlatMap(_numeric_values, spec.numeric).with_output_types(tuple[str, np.ndarray])
            | "Quantiles" >> beam.CombinePerKey(QuantileSketchFn(spec.histogram_bins + 1))
        )
        fitted = stats | "Fit" >> beam.Map(tf.fit, label=spec.label, task=spec.task)
        profile = stats | "Profile" >> beam.Map(build_profile, quantiles=beam.pvalue.AsDict(quantiles))
        # The second pass waits for the fitted transform (a side input). It reads the dataset again, in the same
        # fused stage as the split, transform and writes, so batches stream through it instead of being held.
        split = (
            pipeline
            | "ReadAgain" >> beam.io.ReadFromParquetBatched(input_path).with_output_types(pa.Table)
            | "SplitTransform"
            >> beam.ParDo(
                SplitTransform(spec.label, spec.eval_fraction, features_schema, raw_schema), beam.pvalue.AsSingleton(fitted)
            )
            .with_output_types(pa.Table)
            .with_outputs("train", "eval", "eval_raw")
        )
        write_parquet(split.train, "train", features_schema)
        write_parquet(split.eval, "eval", features_schema)
        write_parquet(split.eval_raw, "eval_raw", raw_schema)
        write_json(fitted, "transform.json")
        write_json(profile, "profile.json")

    summary = {
        "rows": json.loads((out_dir / "profile.json").read_text())["rows"],
        "train_rows": sum(pq.read_metadata(p).num_rows for p in (out_dir / "train").glob("*.parquet")),
        "eval_rows": sum(pq.read_metadata(p).num_rows for p in (out_dir / "eval").glob("*.parquet")),
    }
    log.info("Beam pipeline done: %(rows)d rows -> %(train_rows)d train, %(eval_rows)d eval", summary)
    return summary
