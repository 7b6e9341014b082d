"""Schema inference and validation of new data against the accepted schema."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
MAX_DOMAIN = 1000  # category domains larger than this are not recorded


@dataclass(frozen=True)
class Thresholds:
    """How far new data may move from the schema before it is an anomaly (the config's ``validation`` section)."""

    min_rows: int
    max_null_ratio_increase: float
    max_out_of_range_share: float
    max_unseen_category_share: float


@dataclass(frozen=True)
class Anomaly:
    column: str
    kind: str  # empty_data | missing_column | extra_column | type_change | null_ratio | out_of_range | unseen_categories
    message: str


@dataclass
class ValidationReport:
    rows: int
    anomalies: list[Anomaly] = field(default_factory=list)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "anomalies": [asdict(a) for a in self.anomalies], "columns": self.columns}


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


def infer_schema(frame: pd.DataFrame, *, numeric: list[str], categorical: list[str], label: str, task: str) -> dict[str, Any]:
    """Describe every column of ``frame``: type, null ratio, numeric range, category domain."""
    columns: dict[str, dict[str, Any]] = {}
    label_kind = "categorical" if task == "classification" else "numeric"
    roles = {**dict.fromkeys(numeric, "numeric"), **dict.fromkeys(categorical, "categorical"), label: label_kind}
    for name in frame.columns:
        series = frame[name]
        family = dtype_family(series)
        role = roles.get(name, "passthrough")
        entry: dict[str, Any] = {"type": family, "role": role, "null_ratio": float(series.isna().mean()) if len(series) else 0.0}
        if role == "numeric":
            entry["min"] = float(series.min())
            entry["max"] = float(series.max())
        elif role == "categorical":
            domain = sorted(series.dropna().astype(str).unique().tolist())
            if len(domain) <= MAX_DOMAIN:
                entry["domain"] = domain
        columns[name] = entry
    return {"version": SCHEMA_VERSION, "label": label, "task": task, "rows": len(frame), "columns": columns}


def validate(frame: pd.DataFrame, schema: dict[str, Any], thresholds: Thresholds) -> ValidationReport:
    """Check ``frame`` against ``schema``; every problem found becomes an :class:`Anomaly`."""
    report = ValidationReport(rows=len(frame))
    add = report.anomalies.append
    if len(frame) < thresholds.min_rows:
        add(Anomaly("*", "empty_data", f"{len(frame)} rows; at least {thresholds.min_rows} required"))
    expected = schema["columns"]
    for name in frame.columns:
        if name not in expected:
            add(Anomaly(name, "extra_column", "column is not in the schema"))
    for name, spec in expected.items():
        if name not in frame.columns:
            add(Anomaly(name, "missing_column", f"{spec['role']} column of type {spec['type']} is missing"))
            continue
        series = frame[name]
        stats = report.columns[name] = _column_stats(series)
        family = stats["type"]
        if family != spec["type"] and not (_is_numeric_family(family) and _is_numeric_family(spec["type"])):
            add(Anomaly(name, "type_change", f"type changed from {spec['type']} to {family}"))
            continue
        jump = stats["null_ratio"] - spec["null_ratio"]
        if jump > thresholds.max_null_ratio_increase:
            add(
                Anomaly(
                    name,
                    "null_ratio",
                    f"null ratio {stats['null_ratio']:.3f} vs {spec['null_ratio']:.3f} in the schema (+{jump:.3f} > {thresholds.max_null_ratio_increase})",
                )
            )
        if spec["role"] == "numeric" and len(series.dropna()):
            outside = float(((series < spec["min"]) | (series > spec["max"])).sum() / max(series.notna().sum(), 1))
            stats["out_of_range_share"] = outside
            if outside > thresholds.max_out_of_range_share:
                add(
                    Anomaly(
                        name,
                        "out_of_range",
                        f"{outside:.1%} of values outside [{spec['min']:g}, {spec['max']:g}] (observed [{stats['min']:g}, {stats['max']:g}])",
                    )
                )
        if spec["role"] == "categorical" and "domain" in spec:
            values = series.dropna().astype(str)
            unseen_mask = ~values.isin(set(spec["domain"]))
            share = float(unseen_mask.mean()) if len(values) else 0.0
            stats["unseen_share"] = share
            if share > thresholds.max_unseen_category_share:
                examples = sorted(values[unseen_mask].unique().tolist())[:5]
                add(Anomaly(name, "unseen_categories", f"{share:.1%} of values are unseen categories, e.g. {examples}"))
    return report


def _column_stats(series: pd.Series) -> dict[str, Any]:
    family = dtype_family(series)
    stats: dict[str, Any] = {"type": family, "null_ratio": float(series.isna().mean()) if len(series) else 0.0}
    if _is_numeric_family(family) and series.notna().any():
        stats["min"] = float(series.min())
        stats["max"] = float(series.max())
    return stats


def render_report_html(report: ValidationReport, *, pipeline: str, dataset_id: str, schema_uri: str) -> str:
    """A self-contained HTML page listing the anomalies and per-column statistics."""
    from airflow_mlops.ml.report import page, table

    status = (report.ok, "PASSED" if report.ok else f"FAILED: {len(report.anomalies)} anomalies")
    anomalies = table(["column", "anomaly", "detail"], [(a.column, a.kind, a.message) for a in report.anomalies])
    columns = table(
        ["column", "type", "null ratio", "min", "max"],
        [(n, s.get("type"), s.get("null_ratio"), s.get("min"), s.get("max")) for n, s in sorted(report.columns.items())],
    )
    intro = f"Dataset {dataset_id}, {report.rows} rows, checked against {schema_uri}."
    return page(f"Data validation: {pipeline}", status, [("Anomalies", anomalies), ("Columns", columns)], intro=intro)
