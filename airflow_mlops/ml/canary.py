"""Canary analysis: canary against production over the same window of logged predictions."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_mlops.ml.evaluate import compute_metrics
from airflow_mlops.ml.metrics import DEFAULT_METRIC, HIGHER_IS_BETTER

if TYPE_CHECKING:
    import pandas as pd

MIN_LABELS = 20


@dataclass(frozen=True)
class Criteria:
    """Limits a canary must stay within (the config's ``canary.analysis`` section)."""

    max_error_rate_increase: float
    max_p95_latency_ratio: float
    p95_latency_slack_ms: float
    max_prediction_divergence: float
    min_label_quality_ratio: float


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    figures: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    if len(a) == 0 or len(b) == 0:
        return 1.0
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _p95_latency(rows: pd.DataFrame) -> float:
    """p95 over scoring calls, not rows: the rows of one request share one call's latency, and counting
    them all would let a single slow call of a large batch set the p95."""
    if not len(rows):
        return 0.0
    calls = rows.drop_duplicates(["_request", "_latency_ms"]) if "_request" in rows else rows
    return float(np.percentile(calls["_latency_ms"], 95))


def _side(rows: pd.DataFrame, labels: pd.DataFrame, task: str) -> dict[str, Any]:
    ok = rows[~rows["_error"]]
    figures: dict[str, Any] = {
        "requests": len(rows),
        "error_rate": float(rows["_error"].mean()) if len(rows) else 0.0,
        "p95_latency_ms": _p95_latency(rows),
        "mean_prediction": float(ok["_prediction"].mean()) if len(ok) else None,
    }
    joined = ok.merge(labels, on="_id") if len(labels) else ok.iloc[:0]
    figures["labels"] = len(joined)
    if len(joined) >= MIN_LABELS and joined["label"].nunique() > 1:
        figures["label_quality"] = compute_metrics(task, joined["label"], joined["_prediction"])[DEFAULT_METRIC[task]]
    return figures


def analyze(frame: pd.DataFrame, labels: pd.DataFrame, *, canary: str, production: str, task: str, criteria: Criteria) -> Verdict:
    """Compare the two versions' rows of ``frame`` (the prediction log window) and judge the canary."""
    c_rows, p_rows = frame[frame["_version"] == canary], frame[frame["_version"] == production]
    c, p = _side(c_rows, labels, task), _side(p_rows, labels, task)
    c_pred = c_rows.loc[~c_rows["_error"], "_prediction"].to_numpy(float)
    p_pred = p_rows.loc[~p_rows["_error"], "_prediction"].to_numpy(float)
    divergence = ks_statistic(c_pred, p_pred)
    figures = {"canary": c, "production": p, "prediction_divergence": divergence}
    failures = []
    if c["error_rate"] - p["error_rate"] > criteria.max_error_rate_increase:
        failures.append(f"error rate {c['error_rate']:.3f} vs production {p['error_rate']:.3f}")
    slower = c["p95_latency_ms"] - p["p95_latency_ms"]
    if slower > criteria.p95_latency_slack_ms and c["p95_latency_ms"] > p["p95_latency_ms"] * criteria.max_p95_latency_ratio:
        failures.append(f"p95 latency {c['p95_latency_ms']:.1f} ms vs production {p['p95_latency_ms']:.1f} ms")
    if divergence > criteria.max_prediction_divergence:
        failures.append(
            f"prediction distribution diverges from production (KS {divergence:.3f} > {criteria.max_prediction_divergence})"
        )
    if "label_quality" in c and "label_quality" in p:
        lower = not HIGHER_IS_BETTER[DEFAULT_METRIC[task]]
        ratio = (p["label_quality"] / c["label_quality"]) if lower else (c["label_quality"] / p["label_quality"])
        figures["label_quality_ratio"] = ratio
        if ratio < criteria.min_label_quality_ratio:
            failures.append(f"label quality ratio {ratio:.3f} < {criteria.min_label_quality_ratio}")
    if failures:
        return Verdict(False, "; ".join(failures), figures)
    return Verdict(True, f"canary within limits over {c['requests']} requests (KS {divergence:.3f})", figures)
