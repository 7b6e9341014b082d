"""Validation of new data (or of logged requests) against the accepted schema: every check, each finding an anomaly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.ml.schema import dtype_family, finite_numbers, label_correlation, label_shares
from airflow_mlops.ml.transform import category_keys, numbers_of
from airflow_mlops.ml.validation_report import Anomaly, ValidationReport

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MIN_ASSOCIATION = 0.15
"""A numeric feature's correlation with the label is checked only where the schema's is at least this strong."""


@dataclass(frozen=True)
class Thresholds:
    """How far new data may move from the schema before it is an anomaly (the config's ``validation`` section)."""

    min_rows: int
    max_null_ratio_increase: float
    max_out_of_range_share: float
    max_unseen_category_share: float
    max_duplicate_share: float
    max_infinite_share: float
    max_label_null_share: float
    max_label_shift: float
    max_label_association_drop: float
    min_volume_ratio: float
    max_volume_ratio: float
    min_volume_history: int  # accepted datasets needed before volume_change applies
    allow_extra_columns: bool
    distribution_shift_threshold: float
    distribution_shift_action: str  # off | warn | anomaly


def _is_numeric_family(family: str) -> bool:
    return family in ("integer", "float")


def validate(
    frame: pd.DataFrame, schema: dict[str, Any], thresholds: Thresholds, *, history_rows: list[int] | None = None
) -> ValidationReport:
    """Check ``frame`` against ``schema`` (and its row count against ``history_rows``, the row counts of recent
    accepted datasets, oldest first; None: the volume is not checked); every problem found becomes an
    :class:`Anomaly`, a distribution shift set to ``warn`` a warning."""
    report = ValidationReport(rows=len(frame))
    _check_table(frame, schema, thresholds, report)
    if history_rows is not None:
        _check_volume(len(frame), history_rows, thresholds, report)
    for name, spec in schema["columns"].items():
        if name not in frame.columns:
            report.anomalies.append(Anomaly(name, "missing_column", f"{spec['role']} column of type {spec['type']} is missing"))
            continue
        report.columns[name] = _column_stats(frame[name])
        if name == schema.get("label"):
            _check_label(frame[name], spec, schema["task"], thresholds, report)
        else:
            _check_column(frame, name, spec, schema.get("label"), thresholds, report)
    return report


def check_traffic(frame: pd.DataFrame, schema: dict[str, Any], thresholds: Thresholds) -> ValidationReport:
    """The data-quality checks of :func:`validate` that apply to logged requests, on the schema's features:
    missing_column, type_change, all_null, null_ratio, infinite_values, out_of_range (with at least
    ``MIN_TRAFFIC_OUTLIERS`` values) and unseen_categories. A window of traffic has no label, and its rows
    need not look like a dataset's (volume, duplicates, constant values, shifts are not checked). One frame through
    :class:`~airflow_mlops.ml.traffic.TrafficChecks`, which batch scoring feeds batch by batch."""
    from airflow_mlops.ml.traffic import TrafficChecks

    return TrafficChecks(schema, thresholds).add(frame).report()


def _check_table(frame: pd.DataFrame, schema: dict[str, Any], thresholds: Thresholds, report: ValidationReport) -> None:
    add = report.anomalies.append
    rows = len(frame)
    if rows < thresholds.min_rows:
        add(Anomaly("*", "empty_data", f"{rows} rows; at least {thresholds.min_rows} required"))
    if rows:
        duplicates = float(frame.duplicated().mean())
        report.columns["*"] = {"duplicate_share": duplicates}
        if duplicates > thresholds.max_duplicate_share:
            add(Anomaly("*", "duplicate_rows", f"{duplicates:.1%} of rows repeat an earlier row exactly"))
    if not thresholds.allow_extra_columns:
        for name in frame.columns:
            if name not in schema["columns"]:
                add(Anomaly(name, "extra_column", "column is not in the schema (set validation.allow_extra_columns to accept)"))


def _check_volume(rows: int, history: list[int], thresholds: Thresholds, report: ValidationReport) -> None:
    """The row count against the median of the accepted datasets in ``history``, once there are at least
    ``min_volume_history`` of them: one earlier export (a long history first, a recent window at the retrain)
    says nothing about the usual volume. Either way the report says what was compared with what."""
    import statistics

    low, high = thresholds.min_volume_ratio, thresholds.max_volume_ratio
    needed = thresholds.min_volume_history
    counts = ", ".join(_count(r) for r in history)
    report.volume = {"rows": rows, "history_rows": list(history), "min_history": needed, "allowed": [low, high]}
    if len(history) < needed:
        report.volume["applied"] = False
        plural = "" if len(history) == 1 else "s"
        seen = (
            f"only {len(history)} earlier accepted dataset{plural} ({counts} rows)" if history else "no earlier accepted dataset"
        )
        report.notes.append(
            f"volume_change not applied: {rows} rows, and {seen} to compare with; the check needs "
            f"validation.min_volume_history ({needed}) of them"
        )
        return
    usual = statistics.median(history)
    ratio = rows / usual if usual else float("inf")
    report.volume |= {"applied": True, "median": usual, "ratio": ratio}
    compared = (
        f"{rows} rows is {ratio:.2f}x the median of the last {len(history)} accepted datasets ({_count(usual)}; their "
        f"rows: {counts}); allowed [{low:g}, {high:g}]x"
    )
    if low <= ratio <= high:
        report.notes.append(f"volume_change passed: {compared}")
    else:
        report.anomalies.append(Anomaly("*", "volume_change", compared))


def _count(value: float) -> str:
    """A row count as digits (``:g`` would write a million rows as 1e+06); a median between two counts keeps its .5."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _check_common(series: pd.Series, name: str, spec: dict[str, Any], thresholds: Thresholds, report: ValidationReport) -> bool:
    """Type, all-null and null-ratio checks shared by features and the label; False when nothing more can be checked."""
    import pandas as pd

    add = report.anomalies.append
    family = dtype_family(series)
    if spec["role"] == "numeric" and not _is_numeric_family(family) and family != "bool":
        present = series.dropna()
        unparsable = float(pd.to_numeric(present.astype(str), errors="coerce").isna().mean()) if len(present) else 0.0
        add(
            Anomaly(
                name, "type_change", f"type changed from {spec['type']} to {family}: {unparsable:.1%} of values are not numbers"
            )
        )
        return False
    if (
        spec["role"] != "categorical"
        and family != spec["type"]
        and not (_is_numeric_family(family) and _is_numeric_family(spec["type"]))
    ):
        add(Anomaly(name, "type_change", f"type changed from {spec['type']} to {family}"))
        return False
    null_ratio = float(series.isna().mean()) if len(series) else 0.0
    if len(series) and null_ratio == 1.0:
        add(Anomaly(name, "all_null", f"every value of this {spec['role']} column is null"))
        return False
    jump = null_ratio - spec["null_ratio"]
    if jump > thresholds.max_null_ratio_increase:
        add(
            Anomaly(
                name,
                "null_ratio",
                f"null ratio {null_ratio:.3f} vs {spec['null_ratio']:.3f} in the schema (+{jump:.3f} > {thresholds.max_null_ratio_increase})",
            )
        )
    return True


def _check_column(
    frame: pd.DataFrame,
    name: str,
    spec: dict[str, Any],
    label: str | None,
    thresholds: Thresholds,
    report: ValidationReport,
) -> None:
    """The checks of one feature."""
    import numpy as np

    series = frame[name]
    if spec["role"] == "passthrough" or not _check_common(series, name, spec, thresholds, report):
        return
    add, stats = report.anomalies.append, report.columns[name]
    if spec["role"] == "numeric":
        values = numbers_of(series, len(series))
        present = values[~np.isnan(values)]
        infinite = float(np.isinf(present).mean()) if len(present) else 0.0
        stats["infinite_share"] = infinite
        if infinite > thresholds.max_infinite_share:
            add(
                Anomaly(
                    name,
                    "infinite_values",
                    f"{infinite:.2%} of values are +-inf (one turns the mean, and so every row, into NaN)",
                )
            )
        finite = present[np.isfinite(present)]
        if len(finite) and spec.get("min") is not None:
            beyond = (finite < spec["min"]) | (finite > spec["max"])
            outside = float(beyond.mean())
            stats["out_of_range_share"] = outside
            if outside > thresholds.max_out_of_range_share:
                add(
                    Anomaly(
                        name,
                        "out_of_range",
                        f"{outside:.1%} of values outside [{spec['min']:g}, {spec['max']:g}] (observed [{finite.min():g}, {finite.max():g}])",
                    )
                )
        if len(finite) and spec.get("distinct", 0) > 1 and len(np.unique(finite)) == 1:
            add(
                Anomaly(
                    name, "constant_column", f"every value is {finite[0]:g}; the schema saw {spec['distinct']} distinct values"
                )
            )
        _check_shift(name, finite, spec, thresholds, report)
        _check_association(frame, name, spec, label, thresholds, report)
    elif spec["role"] == "categorical":
        keys = category_keys(series).dropna()
        if spec.get("distinct", 0) > 1 and len(keys) and keys.nunique() == 1:
            add(
                Anomaly(name, "constant_column", f"every value is {keys.iloc[0]!r}; the schema saw {spec['distinct']} categories")
            )
        if "domain" in spec:
            unseen_mask = ~keys.isin(set(spec["domain"]))
            share = float(unseen_mask.mean()) if len(keys) else 0.0
            stats["unseen_share"] = share
            if share > thresholds.max_unseen_category_share:
                examples = sorted(keys[unseen_mask].unique().tolist())[:5]
                add(Anomaly(name, "unseen_categories", f"{share:.1%} of values are unseen categories, e.g. {examples}"))


def _check_shift(name: str, finite: np.ndarray, spec: dict[str, Any], thresholds: Thresholds, report: ValidationReport) -> None:
    """The drift monitor's PSI of the column against the schema's quantiles: a warning or an anomaly, by config."""
    from airflow_mlops.ml.drift import numeric_score

    if thresholds.distribution_shift_action == "off" or not spec.get("quantiles") or not len(finite):
        return
    score = numeric_score(finite, {"quantiles": spec["quantiles"]}, "psi")
    report.columns[name]["psi"] = score
    if score > thresholds.distribution_shift_threshold:
        found = Anomaly(
            name,
            "distribution_shift",
            f"PSI {score:.3f} against the schema's quantiles (> {thresholds.distribution_shift_threshold})",
        )
        (report.anomalies if thresholds.distribution_shift_action == "anomaly" else report.warnings).append(found)


def _check_association(
    frame: pd.DataFrame, name: str, spec: dict[str, Any], label: str | None, thresholds: Thresholds, report: ValidationReport
) -> None:
    """A feature shuffled against its rows keeps its distribution but loses its relation to the label."""
    before = spec.get("label_correlation")
    if before is None or abs(before) < MIN_ASSOCIATION or label not in frame or thresholds.max_label_association_drop >= 1:
        return
    now = label_correlation(frame, name, label)
    if now is None:
        return
    report.columns[name]["label_correlation"] = now
    if now * (1 if before > 0 else -1) < abs(before) * (1 - thresholds.max_label_association_drop):
        report.anomalies.append(
            Anomaly(
                name,
                "label_association",
                f"correlation with the label {now:+.3f} vs {before:+.3f} in the schema (rows shuffled or the column remapped?)",
            )
        )


def _check_label(series: pd.Series, spec: dict[str, Any], task: str, thresholds: Thresholds, report: ValidationReport) -> None:
    import numpy as np

    name = series.name
    add = report.anomalies.append
    nulls = float(series.isna().mean()) if len(series) else 0.0
    if nulls == 1.0 and len(series):
        add(Anomaly(name, "all_null", "every label is null"))
        return
    if nulls > thresholds.max_label_null_share:
        add(Anomaly(name, "label_nulls", f"{nulls:.2%} of rows have no label (NaN or null); they cannot train or be evaluated"))
    if task == "regression":
        values = numbers_of(series, len(series))
        infinite = int(np.isinf(values).sum())
        if infinite:
            add(Anomaly(name, "label_non_finite", f"{infinite} labels are +-inf"))
        finite = values[np.isfinite(values)]
        if spec.get("label_quantiles") and len(finite):
            before = np.asarray(spec["label_quantiles"])
            spread = (before[-1] - before[0]) or 1.0
            moved = float(np.max(np.abs(np.quantile(finite, [0.1, 0.5, 0.9]) - before)) / spread)
            if moved > thresholds.max_label_shift:
                add(Anomaly(name, "label_shift", f"label quantiles moved {moved:.2f} x the schema's 10-90% spread"))
        return
    shares = label_shares(category_keys(series))
    before = spec.get("shares", {})
    report.columns[name]["shares"] = shares
    unseen = {k: v for k, v in shares.items() if before and k not in before}
    if unseen:
        add(
            Anomaly(
                name,
                "unseen_label_class",
                f"label classes not in the schema: {', '.join(f'{k} ({v:.2%})' for k, v in unseen.items())}",
            )
        )
    if len(shares) == 1 and len(before) > 1:
        add(Anomaly(name, "single_class_label", f"every label is {next(iter(shares))!r}; the schema has {len(before)} classes"))
    moved = max((abs(shares.get(k, 0.0) - before.get(k, 0.0)) for k in set(shares) | set(before)), default=0.0)
    if before and moved > thresholds.max_label_shift:
        add(
            Anomaly(
                name,
                "label_shift",
                "class shares "
                + ", ".join(f"{k}: {before.get(k, 0):.1%} -> {shares.get(k, 0):.1%}" for k in sorted(set(shares) | set(before))),
            )
        )


def _column_stats(series: pd.Series) -> dict[str, Any]:
    family = dtype_family(series)
    stats: dict[str, Any] = {"type": family, "null_ratio": float(series.isna().mean()) if len(series) else 0.0}
    if _is_numeric_family(family) and series.notna().any():
        finite = finite_numbers(series)
        if len(finite):
            stats["min"], stats["max"] = float(finite.min()), float(finite.max())
    return stats
