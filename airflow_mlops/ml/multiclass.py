"""What a multiclass model adds to the loop: the prediction log's class probability column, the distance between
two class distributions (the canary's prediction divergence) and the drift of predicted class shares (the
monitor). Standard library at import (the prediction log's writer imports the column name); numpy inside."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PROBABILITIES = "_probabilities"
"""The prediction log's column of a multiclass model's class probabilities (a list per row, in the order of the
model's classes); such a row's ``_prediction`` is the index of its most probable class."""
PREDICTED_CLASS_SHARES = "predicted_class_shares"
"""Key of a multiclass model's share of each predicted class on its eval split, in ``metrics.json``: the reference
of the monitor's class-share drift."""


def probability_matrix(column: Any) -> np.ndarray:
    """Logged class probability vectors (one list or array per row) as rows x classes."""
    import numpy as np

    values = [np.asarray(v, dtype=float) for v in column]
    return np.vstack(values) if values else np.empty((0, 0))


def mean_probabilities(rows: pd.DataFrame, classes: Sequence[str]) -> dict[str, float]:
    """The mean class probability vector of a version's answered logged rows, by class ({} without rows)."""
    answered = rows.loc[~rows["_error"].astype(bool), PROBABILITIES] if len(rows) else []
    matrix = probability_matrix(answered)
    if not len(matrix):
        return {}
    return dict(zip(classes, matrix.mean(axis=0).tolist(), strict=True))


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon distance, base 2 (0: equal; 1: disjoint), between two class distributions keyed by class; a
    class one side lacks weighs 0 there. 1.0 when either side is empty."""
    import numpy as np

    keys = sorted(set(p) | set(q))
    a = np.array([p.get(k, 0.0) for k in keys], dtype=float)
    b = np.array([q.get(k, 0.0) for k in keys], dtype=float)
    if not keys or a.sum() <= 0 or b.sum() <= 0:
        return 1.0
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        inside = x > 0
        return float(np.sum(x[inside] * np.log2(x[inside] / m[inside])))

    return float(np.sqrt(max((kl(a) + kl(b)) / 2, 0.0)))


def class_shares(indexes: Any, classes: Sequence[str]) -> dict[str, float]:
    """Each class's share of predicted class ``indexes`` (NaN and indexes out of range left out), by class."""
    import numpy as np

    values = np.asarray(indexes, dtype=float)
    values = values[np.isfinite(values) & (values >= 0) & (values < len(classes))].astype(np.int64)
    counts = np.bincount(values, minlength=len(classes))
    total = counts.sum()
    return {c: (float(n) / total if total else 0.0) for c, n in zip(classes, counts.tolist(), strict=True)}


def class_share_drift(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """PSI of the current predicted class shares against the reference shares, over the classes of both."""
    import numpy as np

    from airflow_mlops.ml.drift import psi

    keys = sorted(set(reference) | set(current))
    return psi(np.array([reference.get(k, 0.0) for k in keys]), np.array([current.get(k, 0.0) for k in keys]))


def unseen_label_classes(labels: Any, classes: Sequence[str]) -> dict[str, int]:
    """Labels whose class (category key) is not among ``classes``, counted by class (nulls left out)."""
    import pandas as pd

    from airflow_mlops.ml.transform import category_keys

    keys = category_keys(pd.Series(labels, dtype=object) if not isinstance(labels, pd.Series) else labels).dropna()
    known = set(classes)
    unseen = keys[~keys.isin(known)]
    return {str(k): int(v) for k, v in sorted(unseen.value_counts().items())}
