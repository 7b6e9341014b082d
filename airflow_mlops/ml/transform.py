"""The feature transform: fitted in one full pass, applied row by row at training and at serving.

Numeric columns are standardized with the mean imputed for nulls (a null becomes 0.0).
Categorical columns map to their vocabulary index + 1; null and out-of-vocabulary values
map to bucket 0. ``transform_row`` is the single implementation both the Beam pipeline and
the model server call, so features cannot skew between training and serving.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

TRANSFORM_VERSION = 1
MAX_VOCAB = 1000
OOV_INDEX = 0


# -- the one-pass statistics (mergeable, so Beam can combine them in parallel) --------------


def new_stats(numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    return {
        "rows": 0,
        "numeric": {c: {"count": 0, "nulls": 0, "sum": 0.0, "sumsq": 0.0, "min": None, "max": None} for c in numeric},
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
        acc["sum"] += value
        acc["sumsq"] += value * value
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
            for key in ("count", "nulls", "sum", "sumsq"):
                acc[key] += other[key]
            acc["min"] = _opt(min, acc["min"], other["min"])
            acc["max"] = _opt(max, acc["max"], other["max"])
        for col, acc in first["categorical"].items():
            acc["nulls"] += part["categorical"][col]["nulls"]
            acc["counts"].update(part["categorical"][col]["counts"])
    return first


def _opt(fn: Any, a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else fn(a, b)


# -- fitting -----------------------------------------------------------------------------------


def fit(stats: dict[str, Any], *, label: str, task: str) -> dict[str, Any]:
    """The transform spec (``transform.json``) from the full-pass statistics."""
    numeric = {}
    for col, acc in stats["numeric"].items():
        mean = acc["sum"] / acc["count"] if acc["count"] else 0.0
        var = max(acc["sumsq"] / acc["count"] - mean * mean, 0.0) if acc["count"] else 0.0
        std = math.sqrt(var)
        numeric[col] = {"mean": mean, "std": std if std > 1e-12 else 1.0}
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


def transform_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


# -- applying ----------------------------------------------------------------------------------


class FeatureTransform:
    """A fitted spec, ready to apply: ``FeatureTransform(spec).apply(row)`` gives the model input."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.features: list[str] = list(spec["features"])
        self.categorical: list[str] = list(spec["categorical"])
        self._numeric = [(c, p["mean"], p["std"]) for c, p in spec["numeric"].items()]
        self._vocab = [(c, {v: i + 1 for i, v in enumerate(p["vocabulary"])}) for c, p in spec["categorical"].items()]

    def apply(self, row: Mapping[str, Any]) -> list[float]:
        """Model input for one raw row, in ``self.features`` order."""
        out = [0.0 if (v := to_number(row.get(c))) is None else (v - mean) / std for c, mean, std in self._numeric]
        out += [float(index.get(_category(row.get(c)), OOV_INDEX)) for c, index in self._vocab]
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
