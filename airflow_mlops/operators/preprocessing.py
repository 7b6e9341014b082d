"""Beam preprocessing: fit the transform and reference profile, write train/eval features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.sdk import Context

from airflow_mlops.config.base import field_default
from airflow_mlops.config.data import PreprocessConfig
from airflow_mlops.operators.base import ColumnsOperator


class BeamPreprocessOperator(ColumnsOperator):
    """Run the preprocessing Beam pipeline over a dataset snapshot.

    One full pass fits the transform (standardize + impute numerics, vocabulary with an
    out-of-vocabulary bucket for categoricals) and the reference profile; rows are split
    deterministically by content into train and eval Parquet. An already preprocessed dataset is
    skipped (the cache key is the content, not a file time). Returns the features id and summary.

    :param dataset_id: the snapshot to preprocess (templated).
    Column roles (``label_column``, ``problem_type``, ``numeric``, ``categorical``) as in :class:`ColumnsOperator`.
    :param eval_fraction: share of rows in the eval split.
    :param histogram_bins: number of quantile bins in the reference profile.
    :param runner: the Beam runner (``DirectRunner`` here; ``dask`` for Beam's DaskRunner on a dask.distributed cluster,
        at ``dask_client_address`` in ``pipeline_options``; Flink, Spark or Dataflow by name) (templated).
    :param pipeline_options: Beam pipeline options, passed as ``--key=value`` (templated). For an ``s3://`` store the
        AWS connection's endpoint, region and credentials are added as Beam's ``s3_*`` options (masked in the log).
    """

    template_fields: Sequence[str] = (*ColumnsOperator.template_fields, "dataset_id", "runner", "pipeline_options")
    template_fields_renderers: ClassVar[dict[str, str]] = {"pipeline_options": "json"}

    def __init__(
        self,
        *,
        dataset_id: str,
        eval_fraction: float = field_default(PreprocessConfig, "eval_fraction"),
        histogram_bins: int = field_default(PreprocessConfig, "histogram_bins"),
        runner: str = field_default(PreprocessConfig, "runner"),
        pipeline_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset_id = dataset_id
        self.eval_fraction = eval_fraction
        self.histogram_bins = histogram_bins
        self.runner = runner
        self.pipeline_options = pipeline_options or {}

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.features import preprocess

        result = preprocess(
            self.store,
            self.pipeline,
            self.dataset_id,
            self.columns,
            eval_fraction=self.eval_fraction,
            histogram_bins=self.histogram_bins,
            runner=self.runner,
            pipeline_options=self.pipeline_options,
        )
        self.log.info(
            "Features %s (%s): %d train rows, %d eval rows at %s",
            result["features_id"],
            "cached" if result["cached"] else "computed",
            result["train_rows"],
            result["eval_rows"],
            result["features_uri"],
        )
        extra = {
            "dataset_id": self.dataset_id,
            **{k: result[k] for k in ("features_id", "transform_hash", "train_rows", "eval_rows")},
        }
        self.record_lineage(context, "features", extra)
        return result
