"""Pick the best tuning trial: the stage ``TrialSelectionOperator`` runs after the mapped trial trainings."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsError, ModelGateError
from airflow_mlops.ml.metrics import HIGHER_IS_BETTER, TASK_METRICS
from airflow_mlops.stages.evaluation import holdout_metrics, read_holdout
from airflow_mlops.store.layout import tuning_key

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def select_trial(
    store: ArtifactStore,
    pipeline: str,
    features_id: str,
    trials: Sequence[Mapping[str, Any]],
    params: Sequence[Mapping[str, Any]],
    metric: str,
    *,
    run_id: str,
) -> dict[str, Any]:
    """Score every trial's model on the eval split and keep the best by ``metric`` (ties: the first trial).

    Writes ``tuning.json`` (every trial's parameters, model version and metrics, and the chosen trial) into the run's
    reports and returns the chosen trial's training result (``model_version``, ``model_uri``, ...) with its
    ``params``, its index as ``trial``, that document as ``tuning`` and its ``tuning_uri``.

    :param trials: the training results of the trials, in trial order.
    :param params: each trial's LightGBM parameters, in the same order.
    :param metric: the metric that ranks the trials (it must be one of the task's).
    """
    if len(trials) != len(params):
        raise MlopsError(f"Got {len(trials)} trial results for {len(params)} trial parameter sets; they must pair up.")
    if not trials:
        raise MlopsError("No tuning trials to choose from.")
    spec, holdout = read_holdout(store, pipeline, features_id)
    if metric not in TASK_METRICS[spec["task"]]:
        raise MlopsError(f"Tuning metric {metric!r} does not apply to {spec['task']}; use one of {TASK_METRICS[spec['task']]}.")
    scored = []
    for i, (result, trial_params) in enumerate(zip(trials, params, strict=True)):
        _, metrics = holdout_metrics(store, pipeline, result["model_version"], spec, holdout)
        scored.append(
            {
                "trial": i,
                "model_version": result["model_version"],
                "params": dict(trial_params),
                "value": metrics[metric],
                "metrics": metrics,
                "cached": result.get("cached"),
            }
        )
        log.info("Trial %d (model %s): %s=%.6g", i, result["model_version"], metric, metrics[metric])
    finite = [t for t in scored if math.isfinite(t["value"])]
    if not finite:
        raise ModelGateError(f"No trial has a finite {metric} on the eval split; cannot choose one.")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    best = max(finite, key=lambda t: (sign * t["value"], -t["trial"]))
    doc = {
        "metric": metric,
        "higher_is_better": HIGHER_IS_BETTER[metric],
        "features_id": features_id,
        "eval_rows": len(holdout),
        "chosen": best["trial"],
        "model_version": best["model_version"],
        "trials": scored,
    }
    key = tuning_key(pipeline, run_id)
    store.write_json(key, doc)
    log.info("Chose trial %d of %d (model %s): %s=%.6g", best["trial"], len(scored), best["model_version"], metric, best["value"])
    chosen = trials[best["trial"]]
    return {**chosen, "params": best["params"], "trial": best["trial"], "tuning": doc, "tuning_uri": store.uri(key)}
