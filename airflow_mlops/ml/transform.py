"""The feature transform: fitted in one full pass, applied by one definition on two paths.

Numeric columns are standardized with the mean imputed for nulls (a null becomes 0.0).
Categorical columns map to their vocabulary index + 1; null and out-of-vocabulary values
map to bucket 0. :class:`FeatureTransform` applies a fitted spec to one row (``apply``: the model
server) or to a whole frame at once (``apply_frame``: Beam, evaluation, batch scoring); both follow
the same conversions (``to_number``, ``_category``) and give identical floats, so features cannot
skew between training and serving.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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

    def apply_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Model input for every row of ``frame`` (rows x ``self.features``, float64), equal to ``apply`` row by row.

        Typed columns (numbers, booleans, strings) are converted without a Python loop; categorical columns are
        looked up once per distinct value. A column of mixed Python objects (as a JSON batch may give) goes value by
        value through the row path's conversions, and a missing column is null throughout.
        """
        import numpy as np

        out = np.empty((len(frame), len(self._steps)), dtype=float)
        for j, (col, step) in enumerate(self._steps):
            values = frame[col] if col in frame.columns else None
            if isinstance(step, tuple):
                numbers = _numbers(values, len(frame))
                with np.errstate(over="ignore", invalid="ignore"):  # overflow gives inf, as in the row path
                    out[:, j] = np.where(np.isnan(numbers), 0.0, (numbers - step[0]) / step[1])
            else:
                out[:, j] = _category_indexes(values, len(frame), step)
        return out

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


_NUMERIC_OBJECTS = ("floating", "integer", "mixed-integer-float", "empty")


def _numbers(values: pd.Series | None, rows: int) -> np.ndarray:
    """``to_number`` over a column as float64, NaN where it gives None."""
    import numpy as np
    import pandas as pd

    if values is None:
        return np.full(rows, np.nan)
    if values.dtype != object and (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        return values.to_numpy(dtype=float, na_value=np.nan)
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in _NUMERIC_OBJECTS:
        return values.to_numpy(dtype=float, na_value=np.nan)
    converted = (to_number(v) for v in values)  # strings or mixed objects: the row path's own conversion
    return np.fromiter((np.nan if v is None else v for v in converted), dtype=float, count=rows)


def _category_indexes(values: pd.Series | None, rows: int, vocabulary: Mapping[str | None, int]) -> np.ndarray:
    """Vocabulary index (0: null or out of vocabulary) of ``_category`` of each value, as float64."""
    import numpy as np
    import pandas as pd

    if values is None:
        return np.full(rows, float(OOV_INDEX))
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        # Mixed Python objects: pandas would merge True with 1 and False with 0, which are different categories.
        return np.fromiter((vocabulary.get(_category(v), OOV_INDEX) for v in values), dtype=float, count=rows)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = np.array([vocabulary.get(_category(u), OOV_INDEX) for u in uniques] + [OOV_INDEX], dtype=float)
    return lookup[codes]  # the null code -1 picks the last entry: OOV_INDEX
