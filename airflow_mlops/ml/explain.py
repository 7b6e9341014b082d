"""Per-prediction explanations: each feature's contribution to a row's raw score, from LightGBM's ``pred_contrib``
(exact TreeSHAP), named by the raw feature (the transform gives one model column per raw feature), with the model's
expected value; the contributions plus the expected value are the raw score (the margin before the link function:
log-odds for a binary classifier, a class's raw score for a multiclass one, the prediction for regression).

Also what they add up to over many rows: global importance (mean absolute contribution per feature) and each
feature's share of it, which the model card, the evaluation report and the drift check compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

EXPECTED_VALUE = "_expected_value"
"""The name of the expected value next to the features' contributions (a column of batch scoring's output)."""


def contributions(booster: Any, matrix: np.ndarray) -> np.ndarray:
    """The rows' contributions: shape ``(rows, features + 1)``, or ``(rows, classes, features + 1)`` for a
    multiclass model; the last column is the expected value."""
    import numpy as np

    out = np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=1), dtype=float)
    classes = booster.num_model_per_iteration()
    return out.reshape(len(matrix), classes, -1) if classes > 1 else out


def explanation(contribution: np.ndarray, features: Sequence[str], classes: Sequence[str] | None = None) -> dict[str, Any]:
    """One row's contributions (a row of :func:`contributions`) by feature name: ``{"contributions": {feature:
    value}, "expected_value": value}``, or by class for a multiclass model (``{class: {feature: value}}``)."""
    if classes is None:
        return {
            "contributions": dict(zip(features, contribution[:-1].tolist(), strict=True)),
            "expected_value": float(contribution[-1]),
        }
    return {
        "contributions": {
            c: dict(zip(features, row[:-1].tolist(), strict=True)) for c, row in zip(classes, contribution, strict=True)
        },
        "expected_value": {c: float(row[-1]) for c, row in zip(classes, contribution, strict=True)},
    }


def importance(contribution: np.ndarray, features: Sequence[str]) -> dict[str, float]:
    """Global importance: each feature's mean absolute contribution over the rows (summed over the classes of a
    multiclass model), in the features' order."""
    import numpy as np

    magnitude = np.abs(contribution[..., :-1])
    if magnitude.ndim == 3:
        magnitude = magnitude.sum(axis=1)
    means = magnitude.mean(axis=0) if len(magnitude) else np.zeros(len(features))
    return dict(zip(features, means.tolist(), strict=True))


def shares(importances: dict[str, float]) -> dict[str, float]:
    """Each feature's share of the total importance (0 throughout when the total is 0)."""
    total = sum(importances.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in importances.items()}
