"""Hyperparameter tuning: choose the best of the trials the mapped training tasks trained."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_mlops.operators.base import MlopsBaseOperator


class TrialSelectionOperator(MlopsBaseOperator):
    """Score every tuning trial's model on the eval split and keep the best by ``metric`` (ties: the first trial).

    The trials are trained by a mapped training task (``ModelTrainingOperator.partial(...).expand(model_params=...)``,
    or the Kubernetes one); this task takes their results in map order. It writes ``tuning.json`` (every trial's
    parameters, model version and metrics) under the run's reports and returns the chosen trial's training result
    (``model_version``, ``model_uri``, ``cached``, ...) with ``params``, ``trial``, ``tuning`` and ``tuning_uri``:
    downstream tasks use it as they use a training task's.

    :param trials: the trials' training results, in trial order (the mapped task's ``output``, templated).
    :param trial_params: each trial's LightGBM parameters, in the same order.
    :param features_id: the features the trials were trained on; their eval split scores them (templated).
    :param metric: the metric that ranks the trials (``roc_auc``, ``log_loss``, ``accuracy``, ``rmse``, ``mae``).
    """

    template_fields: Sequence[str] = (*MlopsBaseOperator.template_fields, "trials", "features_id")

    def __init__(self, *, trials: Any, trial_params: list[dict[str, Any]], features_id: str, metric: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trials = trials
        self.trial_params = trial_params
        self.features_id = features_id
        self.metric = metric

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.stages.tuning import select_trial

        trials = list(self.trials)  # the mapped task's results, resolved lazily
        result = select_trial(
            self.store, self.pipeline, self.features_id, trials, self.trial_params, self.metric, run_id=context["run_id"]
        )
        self.log.info(
            "Chose trial %d of %d: model %s (%s=%.6g); trials at %s",
            result["trial"],
            len(self.trial_params),
            result["model_version"],
            self.metric,
            result["tuning"]["trials"][result["trial"]]["value"],
            result["tuning_uri"],
        )
        self.openlineage_io([t["model_uri"] for t in trials], [result["tuning_uri"]])
        return result
