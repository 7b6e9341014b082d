"""Preprocess a snapshot with the Beam pipeline into train/eval features, and read them back."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from airflow_mlops import __version__
from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.store.artifacts import digest
from airflow_mlops.store.layout import DONE, dataset_prefix, features_prefix

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.stages.data import Columns
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

SPLITS = ("train", "eval", "eval_raw")


def preprocess(
    store: ArtifactStore,
    pipeline: str,
    dataset_id: str,
    columns: Columns,
    *,
    eval_fraction: float,
    histogram_bins: int,
    runner: str,
    pipeline_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the Beam preprocessing pipeline unless this dataset was already preprocessed the same way."""
    settings = {
        "columns": asdict(columns),
        "eval_fraction": eval_fraction,
        "histogram_bins": histogram_bins,
        "code": __version__,
    }
    classes = None
    if columns.task == "multiclass":  # the label's classes come from the accepted schema (validate stored it)
        from airflow_mlops.ml.schema import label_classes
        from airflow_mlops.store.layout import schema_key

        classes = label_classes(store.read_json(schema_key(pipeline)))
        settings["classes"] = classes
    features_id = f"{dataset_id[:16]}-{digest(settings)[:12]}"
    prefix = features_prefix(pipeline, features_id)
    if store.exists(f"{prefix}/{DONE}"):
        log.info("Features %s already computed for dataset %s; skipping the Beam pipeline", features_id, dataset_id[:12])
        return {**store.read_json(f"{prefix}/{DONE}"), "cached": True}

    from airflow_mlops.beam.preprocess import PreprocessSpec, run_preprocess
    from airflow_mlops.beam.storage import s3_options

    spec = PreprocessSpec(
        numeric=columns.numeric,
        categorical=columns.categorical,
        label=columns.label,
        task=columns.task,
        eval_fraction=eval_fraction,
        histogram_bins=histogram_bins,
        classes=classes,
        runner=runner,
        # the store's S3 endpoint, region and credentials as Beam's s3_* options; the config's own options win
        pipeline_options={**s3_options(store.connection_settings()), **(pipeline_options or {})},
    )
    # The pipeline reads the snapshot from the store and writes the features into it: only URIs go to Beam.
    summary = run_preprocess(store.uri(f"{dataset_prefix(pipeline, dataset_id)}/data.parquet"), store.uri(prefix), spec)
    transform = store.read_json(f"{prefix}/transform.json")
    done = {
        "features_id": features_id,
        "features_uri": store.uri(prefix),
        "dataset_id": dataset_id,
        "transform_hash": digest(transform),
        **summary,
    }
    store.write_json(f"{prefix}/{DONE}", done)  # last: marks the features complete
    return {**done, "cached": False}


def read_features(store: ArtifactStore, pipeline: str, features_id: str, split: str) -> pd.DataFrame:
    """One split of stored features as a frame: ``train``/``eval`` (model input) or ``eval_raw`` (raw eval rows)."""
    import pandas as pd

    if split not in SPLITS:
        raise ValueError(f"Unknown features split {split!r}; expected one of {SPLITS}.")
    prefix = f"{features_prefix(pipeline, features_id)}/{split}"
    keys = [k for k in store.list(prefix) if k.endswith(".parquet")]
    if not keys:
        raise ArtifactNotFound(f"No Parquet files under {store.uri(prefix)}")
    return pd.concat([pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in keys], ignore_index=True)
