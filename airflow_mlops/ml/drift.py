"""Drift of new data against a model's reference profile, column by column, without the training data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

EPS = 1e-4


@dataclass(frozen=True)
class DriftResult:
    drifted: bool
    drifted_columns: list[str]
    scores: dict[str, float]
    share: float
    rows: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reason(self) -> str:
        cols = ", ".join(f"{c}={self.scores[c]:.3f}" for c in self.drifted_columns)
        return f"{len(self.drifted_columns)}/{len(self.scores)} columns drifted ({self.method}): {cols or 'none'}"


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins."""
    e = np.clip(expected, EPS, None)
    a = np.clip(actual, EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_score(values: np.ndarray, column: Mapping[str, Any], method: str) -> float:
    """Score of numeric ``values`` against the profile's quantile edges (equal-frequency bins)."""
    edges = np.asarray(column["quantiles"], dtype=float)
    levels = np.linspace(0.0, 1.0, len(edges))
    values = values[~np.isnan(values)]
    if len(values) == 0 or len(edges) < 2:
        return 0.0
    if method == "ks":
        grid = np.sort(values)
        new_cdf = np.arange(1, len(grid) + 1) / len(grid)
        return float(np.max(np.abs(new_cdf - np.interp(grid, edges, levels, left=0.0, right=1.0))))
    # PSI over the training quantile bins, plus the mass below the minimum and at or above the maximum.
    # P(X < u) for each distinct edge u is the lowest quantile level at that edge (exact for continuous
    # columns, a close bound where many training rows tie, as in counts).
    unique, first = np.unique(edges, return_index=True)
    expected = np.diff(np.concatenate([[0.0], levels[first], [1.0]]))
    actual = np.bincount(np.searchsorted(unique, values, side="right"), minlength=len(unique) + 1) / len(values)
    return psi(expected, actual)


def categorical_score(values: pd.Series, column: Mapping[str, Any], method: str) -> float:
    counts = column["counts"]
    categories = sorted(counts)
    from airflow_mlops.ml.transform import category_keys

    observed = category_keys(values).dropna()
    if len(observed) == 0:
        return 0.0
    total = sum(counts.values()) or 1
    expected = np.array([counts[c] / total for c in categories] + [0.0])
    seen = observed.value_counts()
    known = [int(seen.get(c, 0)) for c in categories]
    actual = np.array([*known, len(observed) - sum(known)]) / len(observed)  # the last bucket: values never profiled
    if method == "ks":
        return float(np.max(np.abs(np.cumsum(actual) - np.cumsum(expected))))
    return psi(expected, actual)


def detect_drift(
    frame: pd.DataFrame, profile: Mapping[str, Any], *, method: str, column_threshold: float, share_threshold: float
) -> DriftResult:
    """Score every profiled column present in ``frame``; the data drifts when the drifted share passes the threshold."""
    scores: dict[str, float] = {}
    for col, column in profile["numeric"].items():
        if col in frame:
            scores[col] = numeric_score(frame[col].to_numpy(dtype=float), column, method)
    for col, column in profile["categorical"].items():
        if col in frame:
            scores[col] = categorical_score(frame[col], column, method)
    drifted = sorted((c for c, s in scores.items() if s > column_threshold), key=lambda c: -scores[c])
    share = len(drifted) / len(scores) if scores else 0.0
    return DriftResult(share > share_threshold, drifted, scores, share, len(frame), method)
