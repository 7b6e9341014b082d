"""Drift of logged predictions against the production model's reference profile."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.serving.predlog_reader import scan_log
from airflow_mlops.stages.features import read_features
from airflow_mlops.store.events import append_event, read_events
from airflow_mlops.store.layout import model_prefix, report_prefix, schema_key
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from airflow_mlops.ml.drift import DriftCounts, DriftResult
    from airflow_mlops.ml.sample import RowSample
    from airflow_mlops.ml.traffic import TrafficChecks
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def last_drift_check(store: ArtifactStore, pipeline: str) -> float:
    """Epoch seconds up to which logged predictions were already checked (0 before the first check)."""
    checks = [e["checked_until"] for e in read_events(store, pipeline) if e["kind"] == "drift_check"]
    return max(checks, default=0.0)


def new_logged_rows(store: ArtifactStore, pipeline: str) -> int:
    """Predictions logged since the last drift check (counted one log file at a time, reading only ``_ts``)."""
    return scan_log(store, pipeline, "predictions", last_drift_check(store, pipeline) + 1e-6, [], _RowCount).rows


class _RowCount:
    def __init__(self) -> None:
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.rows += len(table)


def drift_check(
    store: ArtifactStore,
    pipeline: str,
    *,
    method: str,
    column_threshold: float,
    share_threshold: float,
    run_id: str,
    quality: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare predictions logged since the last check with the production model's reference profile and record
    the check (``drift.json`` and an event). The statistics use every new row, read one log file at a time into
    mergeable counts (:class:`~airflow_mlops.ml.drift.DriftCounts`: PSI exact, numeric KS on a bounded uniform
    sample), so memory stays bounded by one file whatever the rows; the evidently report at ``report_uri`` is
    rendered afterwards by :func:`drift_report`, off the decision's path. A retry of a recorded check returns its
    result unchanged.

    With ``quality`` (the config's ``validation`` thresholds) the same rows also get the data-quality checks of
    validation that apply to requests (null ratios, unseen categories, out-of-range and infinite values) against
    the accepted schema: named in the result, the reason and ``traffic_quality.html``, whether or not they drift.
    """
    from airflow_mlops.ml.drift import DriftCounts
    from airflow_mlops.ml.sample import RowSample

    prefix = report_prefix(pipeline, run_id)
    if any(e.get("event_id") == f"drift-{run_id}" for e in read_events(store, pipeline)):
        log.info("Drift check of run %s already recorded; returning its result", run_id)
        return store.read_json(f"{prefix}/drift.json")
    since = last_drift_check(store, pipeline)
    production = ModelRegistry(store, pipeline).production()
    if production is None:
        raise ArtifactNotFound(f"{pipeline} has no production model to compare new data with.")
    profile = store.read_json(f"{model_prefix(pipeline, production)}/profile.json")
    schema = store.read_json_if_exists(schema_key(pipeline)) if quality is not None else None
    classes = store.read_json(f"{model_prefix(pipeline, production)}/transform.json").get("classes")

    reference = store.read_json_if_exists(f"{model_prefix(pipeline, production)}/metrics.json", {}).get("importance")

    def start() -> _CheckScan:
        attribution = RowSample(ATTRIBUTION_ROWS) if reference else None
        return _CheckScan(DriftCounts(profile, method), _traffic_checks(schema, quality), classes, production, attribution)

    columns = [*profile["numeric"], *profile["categorical"], "_version", "_error", *(["_prediction"] if classes else [])]
    scan = scan_log(store, pipeline, "predictions", since + 1e-6, columns, start)
    thresholds = {"column_threshold": column_threshold, "share_threshold": share_threshold}
    result = scan.drift.result(**thresholds)
    report_uri = store.uri(f"{prefix}/drift.html")
    checked_until = scan.until if scan.drift.rows else since
    issues = _traffic_quality(store, pipeline, scan.traffic, prefix, scan.drift.rows) if scan.drift.rows else []
    reason = result.reason
    class_drift = None
    if classes:
        threshold = column_threshold if method == "psi" else CLASS_SHARE_PSI
        class_drift = _class_share_drift(store, pipeline, production, classes, scan.predicted, threshold)
        if class_drift["drifted"]:
            reason += f"; predicted class shares drifted (PSI {class_drift['psi']:.3f} > {threshold})"
    attribution = None
    if scan.attribution is not None:
        attribution = _attribution_drift(store, pipeline, production, reference, scan.attribution.frame)
        if attribution.get("shifted"):
            reason += (
                "; feature attributions shifted ("
                + ", ".join(
                    f"{f}: share {attribution['features'][f]['reference']:.2f} -> {attribution['features'][f]['live']:.2f}"
                    for f in attribution["shifted"]
                )
                + ")"
            )
    if issues:
        reason += (
            f"; data quality: {len(issues)} issue(s) in requests ("
            + ", ".join(f"{a['column']}: {a['kind']}" for a in issues)
            + ")"
        )
    out = {
        **result.to_dict(),
        "reason": reason,
        **({"drifted": True} if class_drift and class_drift["drifted"] else {}),
        **({"predicted_class_drift": class_drift} if class_drift else {}),
        **({"attribution_drift": attribution} if attribution else {}),
        "data_quality": issues,
        "production_version": production,
        "report_uri": report_uri,
        "checked_from": since,
        "checked_until": checked_until,
        **thresholds,
    }
    store.write_json(f"{prefix}/drift.json", out)
    recorded = {k: out[k] for k in ("drifted", "reason", "scores", "rows", "checked_until", "report_uri", "data_quality")}
    append_event(store, pipeline, "drift_check", event_id=f"drift-{run_id}", **recorded)
    log.info("Drift check of %s over %d rows: %s", pipeline, result.rows, reason)
    return out


ATTRIBUTION_ROWS = 5_000
"""New rows of the production model (a uniform sample) the attribution drift explains: TreeSHAP's cost bounds it."""
ATTRIBUTION_SHIFT = 0.1
"""A feature's share of the total importance moving by more than this (absolute) is named as shifted."""


def _attribution_drift(
    store: ArtifactStore, pipeline: str, production: str, reference: Mapping[str, Any], rows: pd.DataFrame
) -> dict[str, Any]:
    """Each feature's share of importance (mean |contribution|, :mod:`airflow_mlops.ml.explain`) on a sample of
    the new rows the production model answered, against its share on the eval split at training
    (``metrics.json``'s ``importance``); the features whose share moved by more than :data:`ATTRIBUTION_SHIFT`."""
    from airflow_mlops.ml.explain import contributions, importance, shares
    from airflow_mlops.ml.transform import FeatureTransform
    from airflow_mlops.stages.training import load_booster

    before = reference["shares"]
    if not len(rows):
        return {"rows": 0, "threshold": ATTRIBUTION_SHIFT, "shifted": [], "note": "no new rows of the production model"}
    spec = store.read_json(f"{model_prefix(pipeline, production)}/transform.json")
    transform = FeatureTransform(spec)
    found = contributions(load_booster(store, pipeline, production), transform.apply_frame(rows.reset_index(drop=True)))
    now = shares(importance(found, transform.features))
    features = {f: {"reference": before.get(f, 0.0), "live": now[f], "change": now[f] - before.get(f, 0.0)} for f in now}
    shifted = sorted(
        (f for f, v in features.items() if abs(v["change"]) > ATTRIBUTION_SHIFT), key=lambda f: -abs(features[f]["change"])
    )
    return {"rows": len(rows), "threshold": ATTRIBUTION_SHIFT, "features": features, "shifted": shifted}


CLASS_SHARE_PSI = 0.2
"""The PSI above which a multiclass model's predicted class shares have drifted, when the drift method is not PSI
(with ``psi`` the column threshold applies)."""


def _class_share_drift(
    store: ArtifactStore, pipeline: str, production: str, classes: list[str], predicted: Any, threshold: float
) -> dict[str, Any]:
    """The production model's predicted class shares in the new rows against those on its eval split (PSI)."""
    from airflow_mlops.ml.multiclass import PREDICTED_CLASS_SHARES, class_share_drift

    total = int(predicted.sum())
    shares = {c: (float(n) / total if total else 0.0) for c, n in zip(classes, predicted.tolist(), strict=True)}
    metrics = store.read_json_if_exists(f"{model_prefix(pipeline, production)}/metrics.json", {})
    reference = metrics.get(PREDICTED_CLASS_SHARES)
    if not total or not reference:
        why = "no new predictions of the production model" if not total else "no reference class shares"
        return {"drifted": False, "psi": None, "threshold": threshold, "shares": shares, "reference": reference, "note": why}
    value = class_share_drift(reference, shares)
    return {
        "drifted": value > threshold,
        "psi": value,
        "threshold": threshold,
        "rows": total,
        "shares": shares,
        "reference": reference,
    }


class _CheckScan:
    """What the drift check keeps of the new rows while it reads the log file by file: the drift counts, the
    traffic checks' counts (None: not checked), the last row's time and, for a multiclass production model
    (``classes``, ``version``), how often it predicted each class."""

    def __init__(
        self,
        drift: DriftCounts,
        traffic: TrafficChecks | None,
        classes: list[str] | None = None,
        version: str | None = None,
        attribution: RowSample | None = None,
    ) -> None:
        import numpy as np

        self.drift = drift
        self.traffic = traffic
        self.until = float("-inf")
        self.classes = classes
        self.predicted = np.zeros(len(classes or []), dtype=np.int64)
        self.version = version
        self.attribution = attribution

    def add(self, table: pa.Table) -> None:
        import pyarrow.compute as pc

        if not len(table):
            return
        self.until = max(self.until, pc.max(table["_ts"]).as_py())
        frame = table.to_pandas()
        self.drift.add(frame)
        if self.traffic is not None:
            self.traffic.add(frame)
        if self.attribution is not None:  # the production model's answered rows, for its attributions
            answered = frame["_version"].eq(self.version) & ~frame["_error"].fillna(True).astype(bool)
            self.attribution.add(frame.loc[answered, [c for c in frame.columns if not c.startswith("_")]])
        if self.classes and "_prediction" in frame:
            import numpy as np

            answered = frame["_version"].eq(self.version) & ~frame["_error"].fillna(True).astype(bool)
            index = frame.loc[answered, "_prediction"].to_numpy(dtype=float)
            index = index[np.isfinite(index) & (index >= 0) & (index < len(self.classes))].astype(np.int64)
            self.predicted += np.bincount(index, minlength=len(self.classes))


def _traffic_checks(schema: Mapping[str, Any] | None, quality: Mapping[str, Any] | None) -> TrafficChecks | None:
    """Validation's request checks against the accepted schema, fed file by file (None: no schema, or not asked)."""
    if schema is None or quality is None:
        return None
    from airflow_mlops.ml.traffic import TrafficChecks
    from airflow_mlops.ml.validation import Thresholds

    return TrafficChecks(dict(schema), Thresholds(**quality))


def _traffic_quality(
    store: ArtifactStore, pipeline: str, checks: TrafficChecks | None, prefix: str, rows: int
) -> list[dict[str, Any]]:
    """The traffic checks' report over the logged rows (``traffic_quality.html``); the anomalies, as dicts."""
    from dataclasses import asdict

    from airflow_mlops.ml.validation_report import render_report_html

    if checks is None:
        return []
    report = checks.report()
    html = render_report_html(
        report, pipeline=pipeline, dataset_id=f"{rows} logged requests", schema_uri=store.uri(schema_key(pipeline))
    )
    store.write_text(f"{prefix}/traffic_quality.html", html)
    for anomaly in report.anomalies:
        log.warning("Requests to %s: %s: %s: %s", pipeline, anomaly.column, anomaly.kind, anomaly.message)
    return [asdict(a) for a in report.anomalies]


REPORT_SAMPLE_ROWS = 50_000
"""Most new rows (and reference rows) the evidently report draws; the verdict's statistics use every row."""


def drift_report(store: ArtifactStore, pipeline: str, *, run_id: str) -> dict[str, Any]:
    """Render evidently's data drift report for the check recorded by :func:`drift_check` in this run.

    The new rows are those the check read (logged between its ``checked_from`` and ``checked_until``), against the
    eval rows the production model was checked on. Each column's test is the verdict's own score (computed on every
    new row against the reference profile, with the same method and threshold), so the report never contradicts
    the decision; the plots use a seeded uniform sample of at most ``REPORT_SAMPLE_ROWS`` new rows, drawn while the
    log is read one file at a time (:class:`~airflow_mlops.ml.sample.RowSample`). Rendering again writes nothing.
    """
    from airflow_mlops.ml.drift import DriftResult
    from airflow_mlops.ml.sample import RowSample

    prefix = report_prefix(pipeline, run_id)
    check = store.read_json(f"{prefix}/drift.json")
    if store.exists(f"{prefix}/drift.html"):
        log.info("Drift report of run %s already rendered: %s", run_id, check["report_uri"])
        return {"report_uri": check["report_uri"], "rows": check["rows"], "cached": True}
    columns = list(check["scores"])

    def start() -> _ReportScan:
        return _ReportScan(RowSample(REPORT_SAMPLE_ROWS), check["checked_until"], columns)

    scan = scan_log(store, pipeline, "predictions", check["checked_from"] + 1e-6, columns, start)
    frame = scan.sample.frame
    if frame.empty:
        frame = _empty_log_rows(columns)
    result = DriftResult(**{k: check[k] for k in DriftResult.__dataclass_fields__})
    html = _drift_html(
        store,
        pipeline,
        check["production_version"],
        frame,
        result,
        column_threshold=check["column_threshold"],
        share_threshold=check["share_threshold"],
    )
    store.write_text(f"{prefix}/drift.html", html)
    rows = scan.sample.rows
    log.info("Drift report over %d new rows (plots on %d of them): %s", rows, len(frame), check["report_uri"])
    return {"report_uri": check["report_uri"], "rows": rows, "cached": False}


class _ReportScan:
    """The report's sample of the rows its check read (logged up to ``until``), ``columns`` of them."""

    def __init__(self, sample: RowSample, until: float, columns: list[str]) -> None:
        self.sample = sample
        self.until = until
        self.columns = columns

    def add(self, table: pa.Table) -> None:
        import pyarrow.compute as pc

        table = table.filter(pc.less_equal(table["_ts"], self.until))
        if len(table):
            frame = table.to_pandas()
            self.sample.add(frame.reindex(columns=self.columns))


def _empty_log_rows(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})


def _drift_html(
    store: ArtifactStore,
    pipeline: str,
    production: str,
    current: pd.DataFrame,
    result: DriftResult,
    *,
    column_threshold: float,
    share_threshold: float,
) -> str:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    lineage_key = f"{model_prefix(pipeline, production)}/lineage.json"
    features_id = store.read_json_if_exists(lineage_key, {}).get("features_id")
    columns = list(result.scores)
    reference = read_features(store, pipeline, features_id, "eval_raw")[columns] if features_id else current[columns].iloc[:0]

    preset = DataDriftPreset(
        columns=columns,
        per_column_method=dict.fromkeys(columns, _verdict_stattest(result.method)),
        threshold=column_threshold,
        drift_share=share_threshold,
    )
    with _REPORT_LOCK, tempfile.TemporaryDirectory() as tmp:
        _REPORT_SCORES.clear()
        _REPORT_SCORES.update(result.scores)
        path = Path(tmp) / "drift.html"
        Report([preset]).run(_sample(current[columns]), _sample(reference)).save_html(str(path))
        return path.read_text()


_REPORT_LOCK = threading.Lock()
_REPORT_SCORES: dict[str, float] = {}
"""The verdict's per-column scores while one report renders (evidently's tests are looked up by name)."""


def _verdict_stattest(method: str) -> str:
    """The name of an evidently stat test that answers each column with the verdict's own score (registered once)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, _registered_stat_tests, register_stattest
    from evidently.legacy.core import ColumnType

    name = f"mlops_profile_{method}"
    if name not in _registered_stat_tests:

        def score(reference_data: Any, current_data: Any, feature_type: Any, threshold: float) -> tuple[float, bool]:
            value = _REPORT_SCORES[current_data.name]
            return value, value > threshold

        kinds = [ColumnType.Categorical, ColumnType.Numerical]
        register_stattest(StatTest(name, f"{method.upper()} vs the reference profile (all rows)", kinds, 0.2), score)
    return name


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sample(REPORT_SAMPLE_ROWS, random_state=0) if len(frame) > REPORT_SAMPLE_ROWS else frame
