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
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlops.dtypes import is_number_column

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TRANSFORM_VERSION = 1
ROW_ID = "_row_id"
"""Column of the content-derived row id in the features (see ``beam/preprocess.py``)."""
MAX_VOCAB = 1000
OOV_INDEX = 0


# -- the one-pass statistics (mergeable, so Beam can combine them in parallel) --------------

_SCALE = 1127
"""Every finite float64 is an integer multiple of 2**-1074; 53 more bits keep the mantissas integral."""


def new_stats(numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    return {
        "rows": 0,
        "numeric": {c: {"count": 0, "nulls": 0, "sum": [0, 0.0], "sumsq": [0, 0.0], "min": None, "max": None} for c in numeric},
        "categorical": {c: {"nulls": 0, "counts": Counter()} for c in categorical},
    }


def add_frame(stats: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    """Add a batch of rows (a missing column is null throughout); the result does not depend on how rows are batched."""
    import numpy as np

    rows = len(frame)
    stats["rows"] += rows
    for col, acc in stats["numeric"].items():
        numbers = numbers_of(frame[col] if col in frame.columns else None, rows)
        present = numbers[~np.isnan(numbers)]
        acc["nulls"] += rows - len(present)
        if not len(present):
            continue
        acc["count"] += len(present)
        _add_sums(acc["sum"], exact_sum(present))
        with np.errstate(over="ignore"):
            _add_sums(acc["sumsq"], exact_sum(present * present))
        acc["min"] = _opt(min, acc["min"], float(present.min()))
        acc["max"] = _opt(max, acc["max"], float(present.max()))
    for col, acc in stats["categorical"].items():
        if col not in frame.columns:
            acc["nulls"] += rows
            continue
        codes, categories = _category_codes(frame[col])
        counts = np.bincount(codes[codes >= 0], minlength=len(categories))
        acc["nulls"] += int((codes < 0).sum())
        for category, count in zip(categories, counts.tolist(), strict=True):
            if count:
                acc["counts"][category] += count
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
                _add_sums(acc[key], other[key])
            acc["min"] = _opt(min, acc["min"], other["min"])
            acc["max"] = _opt(max, acc["max"], other["max"])
        for col, acc in first["categorical"].items():
            acc["nulls"] += part["categorical"][col]["nulls"]
            acc["counts"].update(part["categorical"][col]["counts"])
    return first


def exact_sum(values: np.ndarray) -> list[Any]:
    """``[exact, special]``: the finite values' sum exactly, as the integer ``exact * 2**-_SCALE``, and the sum of the
    infinite ones (0.0 when there are none). Adding two such pairs is exact, so a sum never depends on row order or
    on how Beam splits the data into bundles. ``values`` holds no NaN."""
    import numpy as np

    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):  # inf + -inf is nan, as in the row-by-row sum
        special = float(values[~finite].sum()) if not finite.all() else 0.0
    mantissa, exponent = np.frexp(values[finite])
    ints = (mantissa * 2.0**53).astype(np.int64)  # exact: a mantissa has 53 significant bits
    hi, lo = ints >> 26, ints & ((1 << 26) - 1)  # halves whose sums cannot overflow int64
    order = np.argsort((exponent + 1074).astype(np.uint16), kind="stable")  # small integers: a radix sort
    exponents, starts = np.unique(exponent[order], return_index=True)
    if not len(exponents):
        return [0, special]
    his, los = np.add.reduceat(hi[order], starts).tolist(), np.add.reduceat(lo[order], starts).tolist()
    exact = sum((((h << 26) + low) << (e - 53 + _SCALE)) for e, h, low in zip(exponents.tolist(), his, los, strict=True))
    return [exact, special]


def _add_sums(acc: list[Any], other: list[Any]) -> None:
    acc[0] += other[0]
    acc[1] += other[1]


def _total(sums: list[Any]) -> float:
    """The correctly rounded value of an exact sum."""
    exact, special = sums
    if special != 0.0 or math.isnan(special):
        return special
    try:
        return exact / (1 << _SCALE)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf  # beyond float64: as a float sum would overflow


def moments(acc: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of a numeric accumulator (None when it saw no value)."""
    n = acc["count"]
    if not n:
        return None, None
    mean = _total(acc["sum"]) / n
    return mean, math.sqrt(max(_total(acc["sumsq"]) / n - mean * mean, 0.0))


def _opt(fn: Any, a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else fn(a, b)


# -- fitting -----------------------------------------------------------------------------------


def fit(stats: dict[str, Any], *, label: str, task: str, classes: list[str] | None = None) -> dict[str, Any]:
    """The transform spec (``transform.json``) from the full-pass statistics; a multiclass label's ``classes`` (its
    category keys, in class index order) are kept in it, so the model carries them wherever it goes."""
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
        **({"classes": list(classes)} if classes is not None else {}),
    }


def label_values(values: pd.Series | None, rows: int, classes: list[str] | None = None) -> np.ndarray:
    """The label as the model learns it, float64 with NaN for no label: the number itself (binary classification,
    regression; ``classes`` None), or the index of its category key in ``classes`` (multiclass; a class not among
    them is NaN). The one label encoding of preprocessing, evaluation, the canary and the monitor."""
    import numpy as np

    if classes is None:
        return numbers_of(values, rows)
    if values is None:
        return np.full(rows, np.nan)
    codes, keys = _category_codes(values)
    index = {c: float(i) for i, c in enumerate(classes)}
    return np.array([index.get(k, np.nan) for k in keys] + [np.nan], dtype=float)[codes]


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
                numbers = numbers_of(values, len(frame))
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
    """The category key of a value: 1, 1.0, "1" and "1.0" are all "1" (an export may write a label either way)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1.0 read from a nullable column is the category "1"
    elif isinstance(value, str) and _INTEGRAL_TEXT.fullmatch(value):
        value = value.split(".", 1)[0]  # "1.0" written by another export is the category "1"
    return str(value)


_INTEGRAL_TEXT = re.compile(r"-?[0-9]+\.0+")


def category_keys(values: pd.Series) -> pd.Series:
    """Each value's category key (see ``_category``), None for nulls, as an object Series (vectorized)."""
    import numpy as np
    import pandas as pd

    codes, keys = _category_codes(values)
    return pd.Series(np.array([*keys, None], dtype=object)[codes], index=values.index, dtype=object)


_NUMERIC_OBJECTS = ("floating", "integer", "mixed-integer-float", "empty")


def numbers_of(values: pd.Series | None, rows: int) -> np.ndarray:
    """``to_number`` over a column as float64, NaN where it gives None."""
    import numpy as np
    import pandas as pd

    if values is None:
        return np.full(rows, np.nan)
    if is_number_column(values):
        return values.to_numpy(dtype=float, na_value=np.nan)
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in _NUMERIC_OBJECTS:
        return values.to_numpy(dtype=float, na_value=np.nan)
    converted = (to_number(v) for v in values)  # strings or mixed objects: the row path's own conversion
    return np.fromiter((np.nan if v is None else v for v in converted), dtype=float, count=rows)


def _category_codes(values: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    """Codes of ``values`` into their distinct ``_category`` keys (-1: null), and those keys."""
    import pandas as pd

    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        # Mixed Python objects: pandas would merge True with 1 and False with 0, which are different categories.
        values = pd.Series([_category(v) for v in values], dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes, [_category(u) for u in uniques]


def _category_indexes(values: pd.Series | None, rows: int, vocabulary: Mapping[str | None, int]) -> np.ndarray:
    """Vocabulary index (0: null or out of vocabulary) of ``_category`` of each value, as float64."""
    import numpy as np

    if values is None:
        return np.full(rows, float(OOV_INDEX))
    codes, categories = _category_codes(values)
    lookup = np.array([vocabulary.get(c, OOV_INDEX) for c in categories] + [OOV_INDEX], dtype=float)
    return lookup[codes]  # the null code -1 picks the last entry: OOV_INDEX
