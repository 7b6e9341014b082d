"""How the package tells a column of numbers from one of text or objects: one rule, shared by the dataset content
hash (``store/``: numbers hash as float64, whatever batch they were read in) and the transform (``ml/``: numbers
convert to float64 as an array). It sits below both, as :mod:`airflow_mlops.exceptions` does."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def is_number_column(values: pd.Series) -> bool:
    """A column typed as numbers or booleans (not Python objects): it converts to float64 as an array."""
    import pandas as pd

    return values.dtype != object and (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))
