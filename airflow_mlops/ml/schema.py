"""The schema of a dataset: what it records of each column, inferred from the accepted data, and the column
measures validation compares with it (:mod:`airflow_mlops.ml.validation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.dtypes import is_number_column
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.metrics import CLASS_LABEL_TASKS
from airflow_mlops.ml.transform import category_keys, numbers_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SCHEMA_VERSION = 2
MAX_DOMAIN = 1000  # category domains larger than this are not recorded
SCHEMA_BINS = 10  # equal-frequency bins of a numeric column's recorded quantiles


def dtype_family(series: pd.Series) -> str:
    """The coarse type of a column: bool, integer, float or string."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def finite_numbers(series: pd.Series) -> np.ndarray:
    """The finite numbers of a column (text that reads as a number counts; nulls, text and +-inf do not)."""
    import numpy as np

    values = numbers_of(series, len(series))
    return values[np.isfinite(values)]


def label_shares(keys: pd.Series) -> dict[str, float]:
    """Each class's share of the non-null labels, by category key."""
    counts = keys.dropna().value_counts(normalize=True)
    return {str(k): float(v) for k, v in sorted(counts.items())}


def label_correlation(frame: pd.DataFrame, feature: str, label: str) -> float | None:
    """Pearson correlation of a numeric feature with a numeric label over the rows where both are finite."""
    import numpy as np

    x, y = numbers_of(frame[feature], len(frame)), numbers_of(frame[label], len(frame))
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < 3 or np.ptp(x[both]) == 0 or np.ptp(y[both]) == 0:
        return None
    return float(np.corrcoef(x[both], y[both])[0, 1])


def infer_schema(frame: pd.DataFrame, *, numeric: list[str], categorical: list[str], label: str, task: str) -> dict[str, Any]:
    """Describe every column of ``frame``: type, null ratio, numeric range and quantiles, category domain (as
    category keys: ``1``, ``1.0`` and ``"1"`` are one category), distinct values, the label's class shares
    (classification) or quantiles (regression), and each numeric feature's correlation with the label."""
    import numpy as np

    columns: dict[str, dict[str, Any]] = {}
    label_kind = "categorical" if task in CLASS_LABEL_TASKS else "numeric"
    roles = {**dict.fromkeys(numeric, "numeric"), **dict.fromkeys(categorical, "categorical"), label: label_kind}
    # a multiclass label's class keys are names, not amounts: no feature correlates with them
    numeric_label = (label in frame and task == "classification" and is_number_column(frame[label])) or task == "regression"
    for name in frame.columns:
        series = frame[name]
        role = roles.get(name, "passthrough")
        entry: dict[str, Any] = {
            "type": dtype_family(series),
            "role": role,
            "null_ratio": float(series.isna().mean()) if len(series) else 0.0,
        }
        if role == "numeric":
            finite = finite_numbers(series)
            entry["distinct"] = int(min(len(np.unique(finite)), MAX_DOMAIN + 1))
            if len(finite):  # an all-null column records no range: new values are then checked by type only
                entry["min"], entry["max"] = float(finite.min()), float(finite.max())
                entry["quantiles"] = np.quantile(finite, np.linspace(0, 1, SCHEMA_BINS + 1)).tolist()
            if name != label and label in frame and numeric_label:
                entry["label_correlation"] = label_correlation(frame, name, label)
        elif role == "categorical":
            keys = category_keys(series).dropna()
            domain = sorted(keys.unique().tolist())
            entry["distinct"] = len(domain)
            if len(domain) <= MAX_DOMAIN:
                entry["domain"] = domain
        if name == label:
            if task in CLASS_LABEL_TASKS:
                entry["shares"] = label_shares(category_keys(series))
            elif len(finite := finite_numbers(series)):
                entry["label_quantiles"] = np.quantile(finite, [0.1, 0.5, 0.9]).tolist()
        columns[name] = entry
    return {"version": SCHEMA_VERSION, "label": label, "task": task, "rows": len(frame), "columns": columns}


def label_classes(schema: dict[str, Any]) -> list[str]:
    """A multiclass label's classes, in the order of the model's class indexes: the category keys the accepted
    schema's label shares hold, by number when every key is an integer (``2`` before ``10``), else by text."""
    shares = schema.get("columns", {}).get(schema.get("label"), {}).get("shares")
    if not shares:
        raise MlopsError(f"The accepted schema records no classes of the label {schema.get('label')!r}.")
    keys = list(shares)
    integral = all(k.lstrip("-").isdigit() for k in keys)
    return sorted(keys, key=int) if integral else sorted(keys)
