"""LightGBM training on transformed features: same inputs, same bytes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlops import __version__
from airflow_mlops.exceptions import MlopsError

if TYPE_CHECKING:
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

OBJECTIVES = {"classification": "binary", "multiclass": "multiclass", "regression": "regression"}
RESERVED_PARAMS = ("objective", "seed", "deterministic")
"""Set by the pipeline, never by ``model.params`` (the config schema reads this; keep this module's imports light)."""


DEVICES = ("cpu", "cuda", "gpu")
"""``model.device``: LightGBM's ``device_type`` (``cuda``: its CUDA build; ``gpu``: its OpenCL build)."""


def model_version(
    *,
    dataset_id: str,
    transform_hash: str,
    params: Mapping[str, Any],
    num_boost_round: int,
    seed: int,
    device: str = "cpu",
) -> str:
    """A content-derived version: the same data, transform, parameters, device and code give the same id (a GPU
    model is not bit-identical to the CPU one, so it has its own; the CPU ids are as they always were)."""
    material = {
        "dataset": dataset_id,
        "transform": transform_hash,
        "params": dict(params),
        "num_boost_round": num_boost_round,
        "seed": seed,
        "code": __version__,
    }
    if device != "cpu":
        material["device"] = device
    from airflow_mlops.store.artifacts import digest

    return digest(material)[:12]


def lgb_params(
    task: str, params: Mapping[str, Any], seed: int, device: str = "cpu", num_class: int | None = None
) -> dict[str, Any]:
    """LightGBM's parameters: ``params`` with the pipeline's own (objective, seed, determinism; ``num_class``, the
    number of the label's classes, for multiclass)."""
    clash = sorted(set(params) & set(RESERVED_PARAMS))
    if clash:
        raise MlopsError(f"model.params may not set {clash}: they are fixed by the pipeline.")
    full = {
        "num_threads": 1,
        "verbosity": -1,
        **params,
        "objective": OBJECTIVES[task],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
    }
    if task == "multiclass":
        if not num_class or num_class < 2:
            raise MlopsError(f"A multiclass model needs the label's classes (at least 2), got {num_class}.")
        full["num_class"] = num_class
    if device != "cpu":  # the CPU parameters stay exactly as they were: byte-identical CPU models
        full["device_type"] = device
        full.pop("force_row_wise")  # a CPU histogram setting
    return full


def train_model(
    train: pd.DataFrame,
    *,
    features: list[str],
    categorical: list[str],
    label: str,
    task: str,
    params: Mapping[str, Any],
    num_boost_round: int,
    seed: int,
    early_stopping_rounds: int | None = None,
    log_every: int = 50,
    device: str = "cpu",
    num_class: int | None = None,
) -> lgb.Booster:
    """Train on ``train`` (rows sorted by row id first, so file order never matters) on ``device``.

    A device LightGBM cannot use (a build without CUDA, no GPU on the machine) raises :class:`DeviceUnavailable`:
    never a silent CPU run."""
    import lightgbm as lgb
    import numpy as np

    from airflow_mlops.ml.transform import ROW_ID

    if train.empty:
        raise MlopsError("The training split is empty; nothing to train on.")
    # Row ids are ASCII: their byte order is their string order, and sorting bytes is ~5x faster than sorting objects.
    order = np.argsort(train[ROW_ID].to_numpy().astype("S"), kind="stable")
    train = train[[ROW_ID, *features, label]].take(order).reset_index(drop=True)
    full = lgb_params(task, params, seed, device, num_class)
    callbacks = [lgb.log_evaluation(period=log_every), _progress(log_every, num_boost_round)]
    valid = None
    if early_stopping_rounds:
        # Hold out a deterministic tenth of the training rows; the eval split stays untouched for the gate.
        holdout = _last_hex_digits(train[ROW_ID]) % 10 == 0
        valid, train = train.loc[holdout], train.loc[~holdout]
        callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=True))
    dataset = lgb.Dataset(train[features], train[label], categorical_feature=categorical)
    valid_sets = (
        [lgb.Dataset(valid[features], valid[label], reference=dataset, categorical_feature=categorical)]
        if valid is not None
        else None
    )
    log.info(
        "Training LightGBM (%s) on %d rows x %d features for up to %d rounds",
        full["objective"],
        len(train),
        len(features),
        num_boost_round,
    )
    try:
        booster = lgb.train(full, dataset, num_boost_round=num_boost_round, valid_sets=valid_sets, callbacks=callbacks)
    except lgb.basic.LightGBMError as err:
        if device == "cpu":
            raise
        raise DeviceUnavailable(
            f"model.device {device!r}: LightGBM {lgb.__version__} cannot train on it here ({err}). Train where a GPU and a "
            "LightGBM built for it are (docker/trainer.Dockerfile builds it with -DUSE_CUDA=ON), or set "
            "model.allow_cpu_fallback to train on the CPU instead."
        ) from err
    log.info("Trained %d trees on %s", booster.num_trees(), device)
    return booster


class DeviceUnavailable(MlopsError):
    """The configured ``model.device`` cannot be used by this LightGBM on this machine."""


def _progress(every: int, total: int) -> Any:
    """A LightGBM callback that logs the boosting round every ``every`` rounds (the task log shows progress)."""

    def callback(env: Any) -> None:
        done = env.iteration + 1
        if done % every == 0 or done == total:
            log.info("Boosting round %d/%d", done, total)

    return callback


def _last_hex_digits(ids: pd.Series, digits: int = 4) -> np.ndarray:
    """The value of each id's last ``digits`` hex digits, without a Python loop over the ids."""
    import numpy as np

    chars = np.array(ids.str[-digits:].tolist(), dtype=f"S{digits}").view(np.uint8).reshape(len(ids), digits)
    values = np.where(chars >= ord("a"), chars - ord("a") + 10, chars - ord("0")).astype(np.int64)
    return values @ (16 ** np.arange(digits - 1, -1, -1, dtype=np.int64))
