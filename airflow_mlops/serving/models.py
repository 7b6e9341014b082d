"""Models as the server holds them, and the router that picks one per request."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.transform import FeatureTransform
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import model_prefix

NUMERIC_TYPES = (int, float)
FLOAT_MAX = 1.7976931348623157e308
_MISSING = object()


@dataclass(frozen=True)
class ServedModel:
    """A model version with its own transform, ready to predict on raw rows."""

    version: str
    booster: Any
    transform: FeatureTransform
    task: str
    classes: tuple[str, ...] | None = None
    """A multiclass model's classes (category keys) in the order of its probability columns; None otherwise."""
    features: tuple[str, ...] = field(init=False)
    numeric: frozenset[str] = field(init=False)
    """The transform's feature names in order, and the numeric ones: looked up for every row, so kept at hand."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.transform.features))
        object.__setattr__(self, "numeric", frozenset(self.transform.spec["numeric"]))

    @classmethod
    def load(cls, store: ArtifactStore, pipeline: str, version: str) -> ServedModel:
        """Load a version after a separate process has loaded it and scored one row: a damaged ``model.txt`` can
        abort LightGBM's process, and that must be the checking process, never the server."""
        import lightgbm as lgb

        prefix = model_prefix(pipeline, version)
        spec = store.read_json(f"{prefix}/transform.json")
        text = store.read_text(f"{prefix}/model.txt")
        _check_loads(version, text)
        booster = lgb.Booster(model_str=text)
        classes = tuple(spec["classes"]) if spec.get("classes") else None
        return cls(version, booster, FeatureTransform(spec), spec["task"], classes)

    def check(self, row: Any, index: int) -> None:
        """Raise a MlopsError naming the row and feature when ``row`` cannot be scored."""
        if not isinstance(row, dict):
            raise MlopsError(f"instances[{index}]: expected an object of feature values, got {type(row).__name__}")
        numeric = self.numeric
        for name in self.features:
            value = row.get(name, _MISSING)
            if value is None:
                continue
            if value is _MISSING:
                raise MlopsError(f"instances[{index}]: missing feature {name!r}")
            kind = type(value)
            if name in numeric:
                if kind is float:
                    continue
                if kind is bool or not isinstance(value, NUMERIC_TYPES):
                    raise MlopsError(f"instances[{index}].{name}: expected a number or null, got {kind.__name__}")
                if isinstance(value, int) and not -FLOAT_MAX <= value <= FLOAT_MAX:
                    raise MlopsError(f"instances[{index}].{name}: {len(str(abs(value)))}-digit number is beyond float range")
            elif kind is not str and not isinstance(value, str | int):
                raise MlopsError(f"instances[{index}].{name}: expected a string or null, got {kind.__name__}")

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        """One score per row: a float (a probability of class 1, a regression value), or for a multiclass model the
        list of its classes' probabilities (see :meth:`output`)."""
        import numpy as np

        apply = self.transform.apply
        matrix = np.array([apply(r) for r in rows], dtype=float)
        return self.booster.predict(matrix, num_threads=1).tolist()

    def explain(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row's explanation (:func:`airflow_mlops.ml.explain.explanation`): its features' contributions to the
        raw score and the expected value, by class for a multiclass model. Computed only when asked for."""
        import numpy as np

        from airflow_mlops.ml.explain import contributions, explanation

        apply = self.transform.apply
        found = contributions(self.booster, np.array([apply(r) for r in rows], dtype=float))
        return [explanation(row, self.features, self.classes) for row in found]

    def output(self, score: Any) -> Any:
        """What a caller gets for a row's score: the score itself, or for a multiclass model
        ``{"prediction": <the most probable class>, "probabilities": {<class>: <probability>, ...}}``."""
        if self.classes is None or score is None:
            return score
        best = max(range(len(score)), key=score.__getitem__)
        return {"prediction": self.classes[best], "probabilities": dict(zip(self.classes, score, strict=True))}


@dataclass(frozen=True)
class Router:
    """Production plus an optional canary taking ``canary_percent`` of the traffic, and an optional holdback (the
    model a promotion replaced, kept while the post-promotion watch lasts) taking ``holdback_percent``.

    A request with an id always goes to the same side (sticky); without one the split is random. The canary takes
    the bottom of the id range, the holdback the top: an id held back during the watch is one that production
    answered all through the canary, so its rows never change model until the watch ends.
    """

    production: ServedModel | None
    canary: ServedModel | None = None
    canary_percent: float = 0.0
    holdback: ServedModel | None = None
    holdback_percent: float = 0.0

    def choose(self, key: str | None, draw: float) -> ServedModel | None:
        canary = self.canary is not None and self.canary_percent > 0
        holdback = self.holdback is not None and self.holdback_percent > 0
        if not (canary or holdback):
            return self.production
        share = (_bucket(key) if key is not None else draw) * 100
        if canary and share < self.canary_percent:
            return self.canary
        if holdback and share >= 100 - self.holdback_percent:
            return self.holdback
        return self.production

    @property
    def versions(self) -> dict[str, str | float | None]:
        """What serves, as ``/health`` shows it: each side's version and share."""
        return {
            "production": self.production.version if self.production else None,
            "canary": self.canary.version if self.canary else None,
            "canary_percent": self.canary_percent,
            "holdback": self.holdback.version if self.holdback else None,
            "holdback_percent": self.holdback_percent,
        }


_CHECK = """
import sys
import lightgbm, numpy
booster = lightgbm.Booster(model_file=sys.argv[1])
booster.predict(numpy.zeros((1, booster.num_feature())), num_threads=1)
"""
LOAD_CHECK_SECONDS = 120


def _check_loads(version: str, text: str) -> None:
    """Load ``text`` and score one row in a child process; :class:`MlopsError` with its exit status and last words."""
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt") as model:
        model.write(text)
        model.flush()
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CHECK, model.name],
                capture_output=True,
                text=True,
                timeout=LOAD_CHECK_SECONDS,
            )
        except subprocess.TimeoutExpired as err:
            raise MlopsError(f"model {version} did not load within {LOAD_CHECK_SECONDS} s") from err
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MlopsError(f"model {version} cannot be loaded (exit status {done.returncode}): {last}")


def _bucket(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
