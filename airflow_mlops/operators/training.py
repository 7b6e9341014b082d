"""LightGBM training, in-process on the worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_mlops.factories.schema import ModelConfig, field_default
from airflow_mlops.operators.base import MlopsBaseOperator


class ModelTrainingOperator(MlopsBaseOperator):
    """Train a LightGBM model on preprocessed features, with a fixed seed and deterministic settings.

    The model version is derived from the dataset, transform, parameters and code version, so the
    same inputs give the same version and a byte-identical ``model.txt``; an existing version is
    reused, not retrained. Returns ``{"model_version", "model_uri", "cached", ...}``.

    :param features_id: output of the preprocessing step (templated).
    :param model_params: LightGBM parameters (``objective``, ``seed`` and ``deterministic`` are set by us);
        None: the pipeline config's default ``model.params``.
    :param num_boost_round: boosting rounds.
    :param seed: random seed.
    :param early_stopping_rounds: stop when a held-out tenth of the training rows stops improving.
    :param device: LightGBM's ``device_type`` (``cpu``, ``cuda``, ``gpu``); one that is not there fails the task.
    :param allow_cpu_fallback: train on the CPU instead when the device is not there.
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "features_id")

    def __init__(
        self,
        *,
        features_id: str,
        model_params: dict[str, Any] | None = None,
        num_boost_round: int = field_default(ModelConfig, "num_boost_round"),
        seed: int = field_default(ModelConfig, "seed"),
        early_stopping_rounds: int | None = field_default(ModelConfig, "early_stopping_rounds"),
        device: str = field_default(ModelConfig, "device"),
        allow_cpu_fallback: bool = field_default(ModelConfig, "allow_cpu_fallback"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.features_id = features_id
        self.model_params = field_default(ModelConfig, "params") if model_params is None else model_params
        self.num_boost_round = num_boost_round
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        self.device = device
        self.allow_cpu_fallback = allow_cpu_fallback

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.training import TrainSettings, train
        from airflow_mlops.store.layout import features_prefix

        settings = TrainSettings(
            dict(self.model_params),
            self.num_boost_round,
            self.seed,
            self.early_stopping_rounds,
            self.device,
            self.allow_cpu_fallback,
        )
        result = train(self.store, self.pipeline, self.features_id, settings)
        self.log.info(
            "Model %s %s at %s", result["model_version"], "reused" if result["cached"] else "trained", result["model_uri"]
        )
        self.openlineage_io([self.store.uri(features_prefix(self.pipeline, self.features_id))], [result["model_uri"]])
        return result
