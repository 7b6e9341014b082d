"""The traffic checks of the accepted schema over a stream of frames, in memory bounded by one frame.

:func:`airflow_mlops.ml.validation.check_traffic` is one frame through :class:`TrafficChecks`; batch scoring feeds
it the Arrow batches of its input. Each check keeps counts (nulls, unparsable text, +-inf, values out of range,
unseen categories), the observed finite range and the five smallest unseen categories, so the report over any split
of the rows into frames is the report over all of them at once: the same anomalies, messages and statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.ml.schema import dtype_family
from airflow_mlops.ml.transform import _category_codes, category_keys, numbers_of
from airflow_mlops.ml.validation_report import Anomaly, ValidationReport

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.ml.validation import Thresholds

MIN_TRAFFIC_OUTLIERS = 5
"""Out-of-range values a window of requests needs before its share counts: a few hundred requests would
otherwise flag the two or three values just past a small training set's extremes."""
EXAMPLES = 5
"""Unseen categories named in an ``unseen_categories`` anomaly (the smallest, in sorted order)."""
_NUMBERS = ("integer", "float")


@dataclass
class _Counts:
    """What the checks of one column have seen so far."""

    family: str | None = None
    rows: int = 0
    nulls: int = 0
    texts: int = 0  # non-null values of a numeric feature sent as text (or bool), and how many are not numbers
    unparsable: int = 0
    present: int = 0  # non-null numbers, how many are +-inf, finite, outside the schema's range
    infinite: int = 0
    finite: int = 0
    beyond: int = 0
    low: float | None = None
    high: float | None = None
    keys: int = 0  # non-null category keys, how many the schema's domain lacks, the smallest of those
    unseen: int = 0
    examples: list[str] = field(default_factory=list)


def merged_family(before: str | None, now: str) -> str:
    """The type of a column read whole from the types of its parts: an integer part with nulls reads as float, a
    bool part with nulls as objects (``string``), as pandas reads the whole column."""
    if before is None or before == now:
        return now
    if "string" in (before, now) or "bool" in (before, now):
        return "string"
    return "float"


class TrafficChecks:
    """:func:`~airflow_mlops.ml.validation.check_traffic`, fed frame by frame (:meth:`add`), reported once
    (:meth:`report`). Every frame has the same columns; a schema feature in none of them is a missing column.

    :param schema: the accepted schema.
    :param thresholds: the validation thresholds.
    """

    def __init__(self, schema: dict[str, Any], thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.features = {
            name: spec
            for name, spec in schema["columns"].items()
            if spec["role"] in ("numeric", "categorical") and name != schema.get("label")
        }
        self.rows = 0
        self._counts: dict[str, _Counts] = {}

    def add(self, frame: pd.DataFrame) -> TrafficChecks:
        """Count one frame's values."""
        import numpy as np
        import pandas as pd

        self.rows += len(frame)
        for name, spec in self.features.items():
            if name not in frame.columns:
                continue
            counts = self._counts.setdefault(name, _Counts())
            series = frame[name]
            family = dtype_family(series)
            counts.family = merged_family(counts.family, family)
            counts.rows += len(series)
            counts.nulls += int(series.isna().sum())
            if spec["role"] == "numeric" and family in ("bool", "string"):
                present = series.dropna()
                counts.texts += len(present)
                counts.unparsable += int(pd.to_numeric(present.astype(str), errors="coerce").isna().sum())
            if family in (*_NUMBERS, "bool"):
                values = numbers_of(series, len(series))
                present = values[~np.isnan(values)]
                finite = present[np.isfinite(present)]
                counts.present += len(present)
                counts.infinite += int(np.isinf(present).sum())
                counts.finite += len(finite)
                if len(finite):
                    low, high = float(finite.min()), float(finite.max())
                    counts.low = low if counts.low is None else min(counts.low, low)
                    counts.high = high if counts.high is None else max(counts.high, high)
                    if spec.get("min") is not None:
                        counts.beyond += int(((finite < spec["min"]) | (finite > spec["max"])).sum())
            if spec["role"] == "categorical" and "domain" in spec:
                self._categories(series, set(spec["domain"]), counts)
        return self

    @staticmethod
    def _categories(series: pd.Series, domain: set[str], counts: _Counts) -> None:
        """Category keys counted per distinct value (``category_keys`` without a key per row)."""
        import numpy as np

        codes, keys = _category_codes(series)
        known = np.array([k is not None for k in keys] + [False])  # code -1 (null) takes the last
        unseen = np.array([k is not None and k not in domain for k in keys] + [False])
        counts.keys += int(known[codes].sum())
        found = int(unseen[codes].sum())
        counts.unseen += found
        if found:
            counts.examples = sorted({*counts.examples, *(k for k, u in zip(keys, unseen, strict=False) if u)})[:EXAMPLES]

    def report(self) -> ValidationReport:
        """The anomalies and per-column statistics of every frame added."""
        report = ValidationReport(rows=self.rows)
        for name, spec in self.features.items():
            counts = self._counts.get(name)
            if counts is None:
                report.anomalies.append(Anomaly(name, "missing_column", f"requests do not send this {spec['role']} feature"))
                continue
            null_ratio = counts.nulls / counts.rows if counts.rows else 0.0
            stats: dict[str, Any] = {"type": counts.family, "null_ratio": null_ratio}
            report.columns[name] = stats
            if counts.family in _NUMBERS and counts.low is not None:
                stats["min"], stats["max"] = counts.low, counts.high
            if self._common(name, spec, counts, null_ratio, report):
                self._values(name, spec, counts, stats, report)
        return report

    def _common(self, name: str, spec: dict[str, Any], counts: _Counts, null_ratio: float, report: ValidationReport) -> bool:
        """Type, all-null and null-ratio checks; False when nothing more can be checked."""
        add, family = report.anomalies.append, counts.family
        if spec["role"] == "numeric" and family not in (*_NUMBERS, "bool"):
            unparsable = counts.unparsable / counts.texts if counts.texts else 0.0
            add(
                Anomaly(
                    name,
                    "type_change",
                    f"type changed from {spec['type']} to {family}: {unparsable:.1%} of values are not numbers",
                )
            )
            return False
        if spec["role"] != "categorical" and family != spec["type"] and not (family in _NUMBERS and spec["type"] in _NUMBERS):
            add(Anomaly(name, "type_change", f"type changed from {spec['type']} to {family}"))
            return False
        if counts.rows and null_ratio == 1.0:
            add(Anomaly(name, "all_null", f"every value of this {spec['role']} column is null"))
            return False
        jump = null_ratio - spec["null_ratio"]
        if jump > self.thresholds.max_null_ratio_increase:
            add(
                Anomaly(
                    name,
                    "null_ratio",
                    f"null ratio {null_ratio:.3f} vs {spec['null_ratio']:.3f} in the schema "
                    f"(+{jump:.3f} > {self.thresholds.max_null_ratio_increase})",
                )
            )
        return True

    def _values(self, name: str, spec: dict[str, Any], counts: _Counts, stats: dict[str, Any], report: ValidationReport) -> None:
        """Infinite values and the range of a numeric feature; unseen categories of a categorical one."""
        add, limits = report.anomalies.append, self.thresholds
        if spec["role"] == "numeric":
            infinite = counts.infinite / counts.present if counts.present else 0.0
            stats["infinite_share"] = infinite
            if infinite > limits.max_infinite_share:
                add(
                    Anomaly(
                        name,
                        "infinite_values",
                        f"{infinite:.2%} of values are +-inf (one turns the mean, and so every row, into NaN)",
                    )
                )
            if counts.finite and spec.get("min") is not None:
                outside = counts.beyond / counts.finite
                stats["out_of_range_share"] = outside
                if outside > limits.max_out_of_range_share and counts.beyond >= MIN_TRAFFIC_OUTLIERS:
                    add(
                        Anomaly(
                            name,
                            "out_of_range",
                            f"{outside:.1%} of values outside [{spec['min']:g}, {spec['max']:g}] "
                            f"(observed [{counts.low:g}, {counts.high:g}])",
                        )
                    )
        elif "domain" in spec:
            share = counts.unseen / counts.keys if counts.keys else 0.0
            stats["unseen_share"] = share
            if share > limits.max_unseen_category_share:
                add(Anomaly(name, "unseen_categories", f"{share:.1%} of values are unseen categories, e.g. {counts.examples}"))


def skipped_rows(frame: pd.DataFrame, schema: Mapping[str, Any], skip: Mapping[str, list[str]]) -> np.ndarray:
    """Which rows of ``frame`` carry a value of a kind in ``skip`` (column -> anomaly kinds), as a boolean mask."""
    import numpy as np

    mask = np.zeros(len(frame), dtype=bool)
    for column, kinds in skip.items():
        spec = schema["columns"][column]
        series = frame[column]
        nulls = series.isna().to_numpy()
        if "null_ratio" in kinds:
            mask |= nulls
        if spec["role"] == "numeric":
            values = numbers_of(series, len(series))
            if "type_change" in kinds:
                mask |= ~nulls & np.isnan(values)
            if "infinite_values" in kinds:
                mask |= np.isinf(values)
            if "out_of_range" in kinds and spec.get("min") is not None:
                with np.errstate(invalid="ignore"):
                    mask |= np.isfinite(values) & ((values < spec["min"]) | (values > spec["max"]))
        elif "unseen_categories" in kinds and "domain" in spec:
            keys = category_keys(series)
            mask |= (keys.notna() & ~keys.isin(set(spec["domain"]))).to_numpy()
    return mask
