"""The feature transform: fitted in one full pass, applied row by row at training and at serving.

Numeric columns are standardized with the mean imputed for nulls (a null becomes 0.0).
Categorical columns map to their vocabulary index + 1; null and out-of-vocabulary values
map to bucket 0. ``transform_row`` is the single implementation both the Beam pipeline and
the model server call, so features cannot skew between training and serving.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

TRANSFORM_VERSION = 1
ROW_ID = "_row_id"
"""Column of the content-derived row id in the features (see ``beam/preprocess.py``)."""
MAX_VOCAB = 1000
OOV_INDEX = 0


# -- the one-pass statistics (mergeable, so Beam can combine them in parallel) --------------


def new_stats(numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    return {
        "rows": 0,
        "numeric": {c: {"count": 0, "nulls": 0, "sum": [], "sumsq": [], "min": None, "max": None} for c in numeric},
        "categorical": {c: {"nulls": 0, "counts": Counter()} for c in categorical},
    }


def add_row(stats: dict[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    stats["rows"] += 1
    for col, acc in stats["numeric"].items():
        value = to_number(row.get(col))
        if value is None:
            acc["nulls"] += 1
            continue
        acc["count"] += 1
        _exact_add(acc["sum"], value)
        _exact_add(acc["sumsq"], value * value)
        acc["min"] = value if acc["min"] is None else min(acc["min"], value)
        acc["max"] = value if acc["max"] is None else max(acc["max"], value)
    for col, acc in stats["categorical"].items():
        value = _category(row.get(col))
        if value is None:
            acc["nulls"] += 1
        else:
            acc["counts"][value] += 1
    return stats


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    first, *rest = parts
    for part in rest:
        first["rows"] += part["rows"]
        for col, acc in first["numeric"].items():
            other = part["numeric"][col]
            for key in ("count", "nulls"):
                acc[key] += other[key]
            for key in ("sum", "sumsq"):
                for partial in other[key]:
                    _exact_add(acc[key], partial)
            acc["min"] = _opt(min, acc["min"], other["min"])
            acc["max"] = _opt(max, acc["max"], other["max"])
        for col, acc in first["categorical"].items():
            acc["nulls"] += part["categorical"][col]["nulls"]
            acc["counts"].update(part["categorical"][col]["counts"])
    return first


def _exact_add(partials: list[float], x: float) -> None:
    """Add ``x`` to a sum kept as non-overlapping partials (Shewchuk): exact, so the result
    does not depend on row order or on how Beam splits the data into bundles."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


def moments(acc: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of a numeric accumulator (None when it saw no value)."""
    n = acc["count"]
    if not n:
        return None, None
    mean = math.fsum(acc["sum"]) / n
    return mean, math.sqrt(max(math.fsum(acc["sumsq"]) / n - mean * mean, 0.0))


def _opt(fn: Any, a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else fn(a, b)


# -- fitting -----------------------------------------------------------------------------------


def fit(stats: dict[str, Any], *, label: str, task: str) -> dict[str, Any]:
    """The transform spec (``transform.json``) from the full-pass statistics."""
    numeric = {}
    for col, acc in stats["numeric"].items():
        mean, std = moments(acc)
        numeric[col] = {"mean": mean or 0.0, "std": std if std and std > 1e-12 else 1.0}
    categorical = {}
    for col, acc in stats["categorical"].items():
        ranked = sorted(acc["counts"].items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_VOCAB]
        categorical[col] = {"vocabulary": [value for value, _ in ranked]}
    return {
        "version": TRANSFORM_VERSION,
        "label": label,
        "task": task,
        "features": list(numeric) + list(categorical),
        "numeric": numeric,
        "categorical": categorical,
    }


# -- applying ----------------------------------------------------------------------------------


class FeatureTransform:
    """A fitted spec, ready to apply: ``FeatureTransform(spec).apply(row)`` gives the model input."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.features: list[str] = list(spec["features"])
        self.categorical: list[str] = [c for c in self.features if c in spec["categorical"]]
        # One step per feature, in ``features`` order (JSON round trips may reorder the dicts).
        self._steps: list[tuple[str, Any]] = []
        for col in self.features:
            if col in spec["numeric"]:
                p = spec["numeric"][col]
                self._steps.append((col, (p["mean"], p["std"])))
            else:
                self._steps.append((col, {v: i + 1 for i, v in enumerate(spec["categorical"][col]["vocabulary"])}))

    def apply(self, row: Mapping[str, Any]) -> list[float]:
        """Model input for one raw row, in ``self.features`` order."""
        out = []
        for col, step in self._steps:
            if isinstance(step, tuple):
                value = to_number(row.get(col))
                out.append(0.0 if value is None else (value - step[0]) / step[1])
            else:
                out.append(float(step.get(_category(row.get(col)), OOV_INDEX)))
        return out


def to_number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1.0 read from a nullable column is the category "1"
    return str(value)
