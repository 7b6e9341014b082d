"""The preprocessing pipeline: fit the transform and the reference profile in one full pass,
split rows deterministically, and write transformed train/eval features as Parquet."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from airflow_mlops.ml import transform as tf
from airflow_mlops.ml.profile import build_profile
from airflow_mlops.ml.transform import ROW_ID

log = logging.getLogger(__name__)

SPLIT_BUCKETS = 10_000


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


class StatsCombineFn(beam.CombineFn):
    """Beam wrapper around the mergeable statistics of :mod:`airflow_mlops.ml.transform`."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.numeric, self.categorical = numeric, categorical

    def create_accumulator(self) -> dict[str, Any]:
        return tf.new_stats(self.numeric, self.categorical)

    def add_input(self, acc: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
        return tf.add_row(acc, row)

    def merge_accumulators(self, accs: Any) -> dict[str, Any]:
        return tf.merge_stats(list(accs))

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


def row_id(row: dict[str, Any]) -> str:
    """A stable id from the row's content: the same row always lands in the same split."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:24]


def is_eval(rid: str, eval_fraction: float) -> bool:
    return int(rid, 16) % SPLIT_BUCKETS < round(eval_fraction * SPLIT_BUCKETS)


class ApplyTransform(beam.DoFn):
    """Transformed features + label for each row, with the fitted spec as a side input."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._spec: Any = None
        self._transform: tf.FeatureTransform | None = None

    def process(self, row: dict[str, Any], spec: dict[str, Any]):
        if spec is not self._spec:  # the side input object is reused across rows: build once
            self._spec, self._transform = spec, tf.FeatureTransform(spec)
        if row.get(self.label) is None:
            return  # rows without a label cannot train or evaluate
        values = self._transform.apply(row)
        yield {ROW_ID: row[ROW_ID], self.label: float(row[self.label]), **dict(zip(spec["features"], values, strict=True))}


def _with_row_id(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, ROW_ID: row_id(row)}


def _numeric_values(row: dict[str, Any], columns: list[str]):
    for col in columns:
        value = tf.to_number(row.get(col))
        if value is not None:
            yield col, value


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
    flags = [f"--{k}={v}" for k, v in sorted(spec.pipeline_options.items())]
    options = PipelineOptions(flags)
    # DirectRunner would first try to download the Prism binary; run its in-process engine directly.
    runner = FnApiRunner() if spec.runner == "DirectRunner" else spec.runner
    log.info("Starting Beam pipeline on %s (runner %s, options %s)", input_path, spec.runner, flags)

    def write_parquet(pcoll: beam.PCollection, name: str, schema: pa.Schema) -> None:
        _ = pcoll | f"Write{name}" >> beam.io.WriteToParquet(
            str(out_dir / name / "part"), schema, file_name_suffix=".parquet", num_shards=1
        )

    def write_json(pcoll: beam.PCollection, name: str) -> None:
        _ = (
            pcoll
            | f"Dump{name}" >> beam.Map(lambda obj: json.dumps(obj, sort_keys=True, indent=2))
            | f"Write{name}" >> beam.io.WriteToText(str(out_dir / name), shard_name_template="", num_shards=1)
        )

    with beam.Pipeline(runner=runner, options=options) as pipeline:
        rows = pipeline | "Read" >> beam.io.ReadFromParquet(input_path) | "RowId" >> beam.Map(_with_row_id)
        stats = rows | "Stats" >> beam.CombineGlobally(StatsCombineFn(spec.numeric, spec.categorical))
        quantiles = (
            rows
            | "NumericValues" >> beam.FlatMap(_numeric_values, spec.numeric)
            | "Quantiles" >> beam.ApproximateQuantiles.PerKey(spec.histogram_bins + 1)
        )
        fitted = stats | "Fit" >> beam.Map(tf.fit, label=spec.label, task=spec.task)
        profile = stats | "Profile" >> beam.Map(build_profile, quantiles=beam.pvalue.AsDict(quantiles))
        train, evaluation = rows | "Split" >> beam.Partition(lambda row, _n: int(is_eval(row[ROW_ID], spec.eval_fraction)), 2)
        side = beam.pvalue.AsSingleton(fitted)
        write_parquet(train | "TransformTrain" >> beam.ParDo(ApplyTransform(spec.label), side), "train", features_schema)
        write_parquet(evaluation | "TransformEval" >> beam.ParDo(ApplyTransform(spec.label), side), "eval", features_schema)
        write_parquet(evaluation, "eval_raw", raw_schema)
        write_json(fitted, "transform.json")
        write_json(profile, "profile.json")

    summary = {
        "rows": json.loads((out_dir / "profile.json").read_text())["rows"],
        "train_rows": pq.read_metadata(next((out_dir / "train").glob("*.parquet"))).num_rows,
        "eval_rows": pq.read_metadata(next((out_dir / "eval").glob("*.parquet"))).num_rows,
    }
    log.info("Beam pipeline done: %(rows)d rows -> %(train_rows)d train, %(eval_rows)d eval", summary)
    return summary
