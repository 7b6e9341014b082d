"""Schema inference and validation of new data against the accepted schema."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.ml.transform import category_keys, is_number_column, numbers_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SCHEMA_VERSION = 2
MAX_DOMAIN = 1000  # category domains larger than this are not recorded
SCHEMA_BINS = 10  # equal-frequency bins of a numeric column's recorded quantiles
MIN_ASSOCIATION = 0.15
"""A numeric feature's correlation with the label is checked only where the schema's is at least this strong."""
MIN_TRAFFIC_OUTLIERS = 5
"""Out-of-range values a window of requests needs before its share counts: a few hundred requests would
otherwise flag the two or three values just past a small training set's extremes."""
ANOMALY_KINDS = {
    "empty_data": "fewer rows than validation.min_rows",
    "volume_change": "row count outside [min_volume_ratio, max_volume_ratio] x the median of recent accepted datasets",
    "duplicate_rows": "share of rows repeated exactly above validation.max_duplicate_share",
    "missing_column": "a schema (or configured) column is missing",
    "extra_column": "a column the schema does not have (unless validation.allow_extra_columns)",
    "type_change": "a column changed type; for numbers read as text, the share of values that are not numbers",
    "all_null": "a feature or the label has no value at all",
    "null_ratio": "null ratio rose more than validation.max_null_ratio_increase",
    "infinite_values": "share of +-inf numbers above validation.max_infinite_share",
    "out_of_range": "share of numbers outside the schema's [min, max] above validation.max_out_of_range_share",
    "constant_column": "a column that varied in the schema has one value",
    "unseen_categories": "share of categories not in the schema's domain above validation.max_unseen_category_share",
    "distribution_shift": "a numeric column's PSI against the schema's quantiles above distribution_shift_threshold",
    "label_association": "a numeric feature lost more than max_label_association_drop of its correlation with the label",
    "label_nulls": "share of rows without a label above validation.max_label_null_share",
    "label_non_finite": "a regression label holds +-inf",
    "single_class_label": "a classification label with one class",
    "unseen_label_class": "a label class the schema does not have, at any share",
    "label_shift": "class shares (classification) or quantiles (regression) of the label moved more than max_label_shift",
}
"""Every anomaly kind validation reports, with what it means (the README's table)."""


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
    allow_extra_columns: bool
    distribution_shift_threshold: float
    distribution_shift_action: str  # off | warn | anomaly


@dataclass(frozen=True)
class Anomaly:
    column: str
    kind: str  # one of ANOMALY_KINDS
    message: str


@dataclass
class ValidationReport:
    rows: int
    anomalies: list[Anomaly] = field(default_factory=list)
    warnings: list[Anomaly] = field(default_factory=list)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "anomalies": [asdict(a) for a in self.anomalies],
            "warnings": [asdict(a) for a in self.warnings],
            "columns": self.columns,
        }


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


def _is_numeric_family(family: str) -> bool:
    return family in ("integer", "float")


def _finite(series: pd.Series) -> np.ndarray:
    """The finite numbers of a column (text that reads as a number counts; nulls, text and +-inf do not)."""
    import numpy as np

    values = numbers_of(series, len(series))
    return values[np.isfinite(values)]


def _label_shares(keys: pd.Series) -> dict[str, float]:
    counts = keys.dropna().value_counts(normalize=True)
    return {str(k): float(v) for k, v in sorted(counts.items())}


def _association(frame: pd.DataFrame, feature: str, label: str) -> float | None:
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
    label_kind = "categorical" if task == "classification" else "numeric"
    roles = {**dict.fromkeys(numeric, "numeric"), **dict.fromkeys(categorical, "categorical"), label: label_kind}
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
            finite = _finite(series)
            entry["distinct"] = int(min(len(np.unique(finite)), MAX_DOMAIN + 1))
            if len(finite):  # an all-null column records no range: new values are then checked by type only
                entry["min"], entry["max"] = float(finite.min()), float(finite.max())
                entry["quantiles"] = np.quantile(finite, np.linspace(0, 1, SCHEMA_BINS + 1)).tolist()
            if name != label and label in frame and numeric_label:
                entry["label_correlation"] = _association(frame, name, label)
        elif role == "categorical":
            keys = category_keys(series).dropna()
            domain = sorted(keys.unique().tolist())
            entry["distinct"] = len(domain)
            if len(domain) <= MAX_DOMAIN:
                entry["domain"] = domain
        if name == label:
            if task == "classification":
                entry["shares"] = _label_shares(category_keys(series))
            elif len(finite := _finite(series)):
                entry["label_quantiles"] = np.quantile(finite, [0.1, 0.5, 0.9]).tolist()
        columns[name] = entry
    return {"version": SCHEMA_VERSION, "label": label, "task": task, "rows": len(frame), "columns": columns}


def validate(
    frame: pd.DataFrame, schema: dict[str, Any], thresholds: Thresholds, *, history_rows: list[int] | None = None
) -> ValidationReport:
    """Check ``frame`` against ``schema`` (and its row count against ``history_rows``, the row counts of recent
    accepted datasets); every problem found becomes an :class:`Anomaly`, a distribution shift set to ``warn``
    a warning."""
    report = ValidationReport(rows=len(frame))
    _check_table(frame, schema, thresholds, history_rows or [], report)
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
    need not look like a dataset's (volume, duplicates, constant values, shifts are not checked)."""
    report = ValidationReport(rows=len(frame))
    for name, spec in schema["columns"].items():
        if spec["role"] not in ("numeric", "categorical") or name == schema.get("label"):
            continue
        if name not in frame.columns:
            report.anomalies.append(Anomaly(name, "missing_column", f"requests do not send this {spec['role']} feature"))
            continue
        report.columns[name] = _column_stats(frame[name])
        _check_column(frame, name, spec, None, thresholds, report, traffic=True)
    return report


def _check_table(
    frame: pd.DataFrame, schema: dict[str, Any], thresholds: Thresholds, history: list[int], report: ValidationReport
) -> None:
    import statistics

    add = report.anomalies.append
    rows = len(frame)
    if rows < thresholds.min_rows:
        add(Anomaly("*", "empty_data", f"{rows} rows; at least {thresholds.min_rows} required"))
    if history:
        usual = statistics.median(history)
        ratio = rows / usual if usual else float("inf")
        if not thresholds.min_volume_ratio <= ratio <= thresholds.max_volume_ratio:
            add(
                Anomaly(
                    "*",
                    "volume_change",
                    f"{rows} rows is {ratio:.2f}x the median of the last {len(history)} accepted datasets ({usual:g}); "
                    f"allowed [{thresholds.min_volume_ratio:g}, {thresholds.max_volume_ratio:g}]x",
                )
            )
    if rows:
        duplicates = float(frame.duplicated().mean())
        report.columns["*"] = {"duplicate_share": duplicates}
        if duplicates > thresholds.max_duplicate_share:
            add(Anomaly("*", "duplicate_rows", f"{duplicates:.1%} of rows repeat an earlier row exactly"))
    if not thresholds.allow_extra_columns:
        for name in frame.columns:
            if name not in schema["columns"]:
                add(Anomaly(name, "extra_column", "column is not in the schema (set validation.allow_extra_columns to accept)"))


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
    *,
    traffic: bool = False,
) -> None:
    """The checks of one feature; for ``traffic``, only those :func:`check_traffic` lists."""
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
            if outside > thresholds.max_out_of_range_share and (not traffic or beyond.sum() >= MIN_TRAFFIC_OUTLIERS):
                add(
                    Anomaly(
                        name,
                        "out_of_range",
                        f"{outside:.1%} of values outside [{spec['min']:g}, {spec['max']:g}] (observed [{finite.min():g}, {finite.max():g}])",
                    )
                )
        if traffic:
            return
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
        if not traffic and spec.get("distinct", 0) > 1 and len(keys) and keys.nunique() == 1:
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
    now = _association(frame, name, label)
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
    shares = _label_shares(category_keys(series))
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
        finite = _finite(series)
        if len(finite):
            stats["min"], stats["max"] = float(finite.min()), float(finite.max())
    return stats


def render_report_html(report: ValidationReport, *, pipeline: str, dataset_id: str, schema_uri: str) -> str:
    """A self-contained HTML page listing the anomalies and per-column statistics."""
    from airflow_mlops.ml.report import page, table

    status = (report.ok, "PASSED" if report.ok else f"FAILED: {len(report.anomalies)} anomalies")
    anomalies = table(["column", "anomaly", "detail"], [(a.column, a.kind, a.message) for a in report.anomalies])
    warnings = table(["column", "warning", "detail"], [(a.column, a.kind, a.message) for a in report.warnings])
    columns = table(
        ["column", "type", "null ratio", "min", "max"],
        [(n, s.get("type"), s.get("null_ratio"), s.get("min"), s.get("max")) for n, s in sorted(report.columns.items())],
    )
    intro = f"Dataset {dataset_id}, {report.rows} rows, checked against {schema_uri}."
    return page(
        f"Data validation: {pipeline}",
        status,
        [("Anomalies", anomalies), ("Warnings", warnings), ("Columns", columns)],
        intro=intro,
    )
