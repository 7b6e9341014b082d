"""What validation reports: the anomaly kinds, the report of one check and its HTML page."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ANOMALY_KINDS = {
    "empty_data": "fewer rows than validation.min_rows",
    "volume_change": "row count outside [min_volume_ratio, max_volume_ratio] x the median of the last accepted datasets, "
    "once there are validation.min_volume_history of them",
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
    notes: list[str] = field(default_factory=list)
    """What a check compared, or why it was not applied (e.g. volume_change with too short a history)."""
    volume: dict[str, Any] | None = None
    """The volume check's figures: rows, history_rows, min_history, allowed, applied (and median, ratio)."""

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "anomalies": [asdict(a) for a in self.anomalies],
            "warnings": [asdict(a) for a in self.warnings],
            "columns": self.columns,
            "notes": self.notes,
            "volume": self.volume,
        }


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
    notes = [("Notes", table(["note"], [(n,) for n in report.notes]))] if report.notes else []
    intro = f"Dataset {dataset_id}, {report.rows} rows, checked against {schema_uri}."
    return page(
        f"Data validation: {pipeline}",
        status,
        [("Anomalies", anomalies), ("Warnings", warnings), *notes, ("Columns", columns)],
        intro=intro,
    )
