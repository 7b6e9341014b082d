"""Train LightGBM on stored features: the stage ``ModelTrainingOperator`` runs in-process."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.stages.features import read_features
from airflow_mlops.store.layout import DONE, features_prefix, model_prefix

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """The config's ``model`` section, as the stage needs it."""

    params: dict[str, Any]
    num_boost_round: int
    seed: int
    early_stopping_rounds: int | None
    device: str = "cpu"
    allow_cpu_fallback: bool = False


def expected_model(store: ArtifactStore, pipeline: str, features_id: str, settings: TrainSettings) -> dict[str, Any]:
    """The model :func:`train` writes for these features and settings (its version is content-derived), without
    ``cached``: what a task that trains elsewhere (a Kubernetes pod) reads back."""
    from airflow_mlops.ml.train import model_version

    features_done = store.read_json(f"{features_prefix(pipeline, features_id)}/{DONE}")
    version = model_version(
        dataset_id=features_done["dataset_id"],
        transform_hash=features_done["transform_hash"],
        params=settings.params,
        num_boost_round=settings.num_boost_round,
        seed=settings.seed,
        device=settings.device,
    )
    return {
        "model_version": version,
        "model_uri": store.uri(model_prefix(pipeline, version)),
        "features_id": features_id,
        "dataset_id": features_done["dataset_id"],
    }


def is_trained(store: ArtifactStore, pipeline: str, version: str) -> bool:
    """Whether the model ``version`` is complete in the store (``model.txt`` is written last)."""
    return store.exists(f"{model_prefix(pipeline, version)}/model.txt")


def train(store: ArtifactStore, pipeline: str, features_id: str, settings: TrainSettings) -> dict[str, Any]:
    """Train LightGBM on the stored features; a model with the same content id is reused, not retrained."""
    import time

    import lightgbm as lgb

    from airflow_mlops.ml.train import DeviceUnavailable, train_model

    fprefix = features_prefix(pipeline, features_id)
    result = expected_model(store, pipeline, features_id, settings)
    version = result["model_version"]
    mprefix = model_prefix(pipeline, version)
    if is_trained(store, pipeline, version):
        log.info("Model %s already trained from these inputs; reusing %s", version, store.uri(mprefix))
        return {**result, "cached": True}
    spec = store.read_json(f"{fprefix}/transform.json")
    rows = read_features(store, pipeline, features_id, "train")
    inputs = {
        "features": spec["features"],
        "categorical": [c for c in spec["features"] if c in spec["categorical"]],
        "label": spec["label"],
        "task": spec["task"],
        "params": settings.params,
        "num_boost_round": settings.num_boost_round,
        "seed": settings.seed,
        "early_stopping_rounds": settings.early_stopping_rounds,
    }
    if spec.get("classes"):  # multiclass: one score per class
        inputs["num_class"] = len(spec["classes"])
    device, started = settings.device, time.perf_counter()
    try:
        booster = train_model(rows, **inputs, device=device)
    except DeviceUnavailable as err:
        if not settings.allow_cpu_fallback:
            raise
        log.warning("%s Falling back to the CPU (model.allow_cpu_fallback).", err)
        device = "cpu"
        booster = train_model(rows, **inputs, device=device)
    seconds = time.perf_counter() - started
    for name in ("transform.json", "profile.json"):
        store.write_bytes(f"{mprefix}/{name}", store.read_bytes(f"{fprefix}/{name}"))
    run = {"trees": booster.num_trees(), "device": device, "lightgbm": lgb.__version__, "train_seconds": round(seconds, 3)}
    store.write_json(f"{mprefix}/training.json", {**result, **asdict(settings), **run})
    store.write_text(f"{mprefix}/model.txt", booster.model_to_string())  # last: marks the model complete
    log.info("Stored model %s (trained on %s in %.1f s) at %s", version, device, seconds, store.uri(mprefix))
    return {**result, "cached": False}


def load_booster(store: ArtifactStore, pipeline: str, version: str) -> Any:
    """The stored LightGBM model of ``version``."""
    import lightgbm as lgb

    return lgb.Booster(model_str=store.read_text(f"{model_prefix(pipeline, version)}/model.txt"))
