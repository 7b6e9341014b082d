"""The reference profile (``profile.json``): what the training data looked like, column by column."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_mlops.ml.transform import moments


def build_profile(stats: Mapping[str, Any], quantiles: Mapping[str, list[float]]) -> dict[str, Any]:
    """Per-column summary from the full-pass statistics and approximate quantiles.

    Numeric columns keep count, null ratio, mean, std, min, max and quantile edges (equal-frequency
    bins of the training data); categorical columns keep their category counts. Drift checks compare
    new data with this profile without reading the training data again.
    """
    rows = stats["rows"] or 1
    numeric = {}
    for col, acc in stats["numeric"].items():
        mean, std = moments(acc)
        numeric[col] = {
            "count": acc["count"],
            "null_ratio": acc["nulls"] / rows,
            "mean": mean,
            "std": std,
            "min": acc["min"],
            "max": acc["max"],
            "quantiles": list(quantiles.get(col, [])),
        }
    categorical = {
        col: {"null_ratio": acc["nulls"] / rows, "counts": dict(sorted(acc["counts"].items()))}
        for col, acc in stats["categorical"].items()
    }
    return {"version": 1, "rows": stats["rows"], "numeric": numeric, "categorical": categorical}
