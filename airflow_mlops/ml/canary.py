"""Canary analysis: canary against production over the same window of logged predictions; and the post-promotion
watch: the promoted model against a holdback on the model it replaced, over the same window too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_mlops.ml.evaluate import compute_metrics
from airflow_mlops.ml.metrics import DEFAULT_METRIC, HIGHER_IS_BETTER
from airflow_mlops.ml.multiclass import PROBABILITIES, js_distance, mean_probabilities, probability_matrix

if TYPE_CHECKING:
    import pandas as pd

BOOTSTRAP_ROUNDS = 300


@dataclass(frozen=True)
class Criteria:
    """Limits a canary must stay within (the config's ``canary.analysis`` section)."""

    max_error_rate_increase: float
    max_p95_latency_ratio: float
    p95_latency_floor_ms: float
    max_prediction_divergence: float
    min_label_quality_ratio: float
    min_labels: int
    confidence: float


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


def requests_of(rows: pd.DataFrame) -> int:
    """Requests (not rows: one request may carry many) among logged rows."""
    return int(rows["_request"].nunique()) if "_request" in rows else len(rows)


def _side(rows: pd.DataFrame, labels: pd.DataFrame, classes: Sequence[str] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """A version's figures, and its answered rows joined with their labels (finite labels only; for a multiclass
    version, whose ``classes`` are given, the labels of its classes, as class indexes, with the rows' probabilities)."""
    ok = rows[~rows["_error"]]
    figures: dict[str, Any] = {
        "requests": requests_of(rows),
        "rows": len(rows),
        "error_rate": float(rows["_error"].mean()) if len(rows) else 0.0,
        "p95_latency_ms": _p95_latency(rows),
        "mean_prediction": float(ok["_prediction"].mean()) if len(ok) else None,
    }
    labels = labels[np.isfinite(labels["label"].to_numpy(float))] if len(labels) else labels
    joined = ok.merge(labels, on="_id") if len(labels) else ok.iloc[:0]
    if classes is not None:
        from airflow_mlops.ml.transform import label_values

        index = label_values(joined["label"], len(joined), list(classes))
        figures["unseen_label_class_rows"] = int(np.isnan(index).sum())
        joined = joined.assign(label=index)[~np.isnan(index)]
    figures["labels"] = len(joined)
    return figures, joined


def _quality(task: str, joined: pd.DataFrame) -> float | None:
    if joined["label"].nunique() < 2:
        return None
    if task == "multiclass":  # class indexes against the logged class probabilities
        value = compute_metrics(task, joined["label"], probability_matrix(joined[PROBABILITIES]))[DEFAULT_METRIC[task]]
        return value if np.isfinite(value) else None
    return compute_metrics(task, joined["label"], joined["_prediction"])[DEFAULT_METRIC[task]]


def _ratio(canary: float, production: float, lower_is_better: bool) -> float:
    """Canary quality over production's (inverted where lower is better), guarded against zeros."""
    top, bottom = (production, canary) if lower_is_better else (canary, production)
    if bottom == 0:
        return 1.0 if top == 0 else float("inf")
    return top / bottom


def label_quality_comparison(
    task: str, canary: pd.DataFrame, production: pd.DataFrame | float, confidence: float
) -> dict[str, Any]:
    """The canary/production quality ratio on labelled rows, with a bootstrap interval at ``confidence``
    (each side resampled with replacement; seeded, so the same rows give the same interval).

    ``production`` may be a fixed figure instead of rows (a baseline measured earlier): only the canary is resampled.
    """
    lower = not HIGHER_IS_BETTER[DEFAULT_METRIC[task]]
    fixed = not hasattr(production, "iloc")
    c, p = _quality(task, canary), (production if fixed else _quality(task, production))
    if c is None or p is None:
        return {}
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(BOOTSTRAP_ROUNDS):
        cq = _quality(task, canary.iloc[rng.integers(0, len(canary), len(canary))])
        pq = p if fixed else _quality(task, production.iloc[rng.integers(0, len(production), len(production))])
        if cq is not None and pq is not None:
            ratios.append(_ratio(cq, pq, lower))
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail], method="nearest") if ratios else (float("nan"), float("nan"))
    return {
        "canary": c,
        "production": p,
        "ratio": _ratio(c, p, lower),
        "ratio_interval": [float(low), float(high)],
        "confidence": confidence,
    }


def _slower(p95: float, other: float, criteria: Criteria) -> bool:
    """True when ``p95`` is above the latency SLO floor and more than the latency ratio times ``other``'s."""
    return p95 > criteria.p95_latency_floor_ms and p95 > other * criteria.max_p95_latency_ratio


def _worse_quality(quality: dict[str, Any], criteria: Criteria, against: str) -> str | None:
    """Why the label quality fails (its interval's upper bound is below the minimum ratio), or None."""
    low, high = quality["ratio_interval"]
    if high >= criteria.min_label_quality_ratio:
        return None
    return (
        f"label quality ratio {quality['ratio']:.3f} vs {against} ({criteria.confidence:.0%} interval {low:.3f}-{high:.3f})"
        f" < {criteria.min_label_quality_ratio}"
    )


def _compare(
    rows: pd.DataFrame,
    control: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    names: tuple[str, str],
    task: str,
    criteria: Criteria,
    classes: tuple[Sequence[str], Sequence[str]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The figures of ``rows`` and ``control`` (two versions' rows of one window; ``names`` name them in the figures
    and the reasons; ``classes``: each one's classes, for multiclass) and why ``rows`` fails against ``control``:
    error rate, p95 latency, and label quality where both sides have ``min_labels`` labelled rows."""
    own, other = classes if classes is not None else (None, None)
    (a, a_labelled), (b, b_labelled) = _side(rows, labels, own), _side(control, labels, other)
    figures: dict[str, Any] = {names[0]: a, names[1]: b}
    against, failures = names[1], []
    if a["error_rate"] - b["error_rate"] > criteria.max_error_rate_increase:
        failures.append(f"error rate {a['error_rate']:.3f} vs {against} {b['error_rate']:.3f}")
    if _slower(a["p95_latency_ms"], b["p95_latency_ms"], criteria):
        failures.append(f"p95 latency {a['p95_latency_ms']:.1f} ms vs {against} {b['p95_latency_ms']:.1f} ms")
    judged = task != "multiclass" or classes is not None  # a multiclass label is judged as its class index only
    if judged and min(len(a_labelled), len(b_labelled)) >= criteria.min_labels:
        quality = label_quality_comparison(task, a_labelled, b_labelled, criteria.confidence)
        if quality:
            a["label_quality"], b["label_quality"] = quality["canary"], quality["production"]
            figures["label_quality_ratio"], figures["label_quality"] = quality["ratio"], quality
            if why := _worse_quality(quality, criteria, against):
                failures.append(why)
    return figures, failures


def analyze(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    canary: str,
    production: str,
    task: str,
    criteria: Criteria,
    classes: Mapping[str, Sequence[str]] | None = None,
) -> Verdict:
    """Compare the two versions' rows of ``frame`` (the prediction log window) and judge the canary.

    The prediction divergence is the KS statistic of the two sides' predictions; for multiclass (``classes``: each
    version's classes) the Jensen-Shannon distance between the two sides' mean class probability vectors, by class."""
    c_rows, p_rows = frame[frame["_version"] == canary], frame[frame["_version"] == production]
    known = task == "multiclass" and classes and canary in classes and production in classes
    sides = (classes[canary], classes[production]) if known else None
    figures, failures = _compare(
        c_rows, p_rows, labels, names=("canary", "production"), task=task, criteria=criteria, classes=sides
    )
    if sides is not None:
        c_mean, p_mean = mean_probabilities(c_rows, sides[0]), mean_probabilities(p_rows, sides[1])
        figures["canary"]["mean_probabilities"], figures["production"]["mean_probabilities"] = c_mean, p_mean
        divergence, measure = js_distance(c_mean, p_mean), "JS"
    else:
        c_pred = c_rows.loc[~c_rows["_error"], "_prediction"].to_numpy(float)
        p_pred = p_rows.loc[~p_rows["_error"], "_prediction"].to_numpy(float)
        divergence, measure = ks_statistic(c_pred, p_pred), "KS"
    figures["prediction_divergence"] = divergence
    if divergence > criteria.max_prediction_divergence:
        failures.append(
            f"prediction distribution diverges from production ({measure} {divergence:.3f} > "
            f"{criteria.max_prediction_divergence})"
        )
    if failures:
        return Verdict(False, "; ".join(failures), figures)
    requests = figures["canary"]["requests"]
    return Verdict(True, f"canary within limits over {requests} requests ({measure} {divergence:.3f})", figures)


def watch(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    version: str,
    holdback: str,
    task: str,
    criteria: Criteria,
    classes: Mapping[str, Sequence[str]] | None = None,
) -> Verdict:
    """Judge a promoted ``version`` against the ``holdback`` version (the model it replaced, kept on a small share
    of the traffic while the watch lasts) over the same window ``frame``, by the canary's rules: error rate, p95
    latency (ratio and SLO floor) and label quality (the bootstrap interval rule). Both sides see the same load at
    the same time, so a busier machine slows both and fails neither. Prediction divergence is not judged: it was
    the canary's question, and the drift monitor watches inputs that move.
    """
    rows, control = frame[frame["_version"] == version], frame[frame["_version"] == holdback]
    known = task == "multiclass" and classes and version in classes and holdback in classes
    sides = (classes[version], classes[holdback]) if known else None
    figures, failures = _compare(rows, control, labels, names=("now", "holdback"), task=task, criteria=criteria, classes=sides)
    if failures:
        return Verdict(False, "; ".join(failures), figures)
    now, held = figures["now"]["requests"], figures["holdback"]["requests"]
    return Verdict(True, f"within limits against the holdback over {now} requests since promotion ({held} on it)", figures)


def watch_against_canary_time(
    rows: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    baseline: dict[str, Any],
    task: str,
    criteria: Criteria,
    classes: Sequence[str] | None = None,
) -> Verdict:
    """Without a holdback (``canary.watch.holdback_percent: 0``): judge a promoted model's rows since promotion
    against ``baseline``, the figures of its last passed canary step (``canary``: this model then, ``production``:
    the model it replaced, on the same traffic). Before against after: a change of load in between shows as a
    change of latency, which is why the watch prefers a holdback.

    Error rate and p95 latency may not pass the worse of the two by more than the canary limits allow; label
    quality, where both the rows since promotion (``min_labels``) and the baseline have it, is compared with the
    replaced model's by the same bootstrap rule as the canary.
    """
    now, joined = _side(rows, labels, classes if task == "multiclass" else None)
    then, before = baseline.get("canary") or {}, baseline.get("production") or {}
    figures: dict[str, Any] = {"now": now, "canary_time": then, "previous_production": before}
    failures = []
    allowed_errors = max(then.get("error_rate", 0.0), before.get("error_rate", 0.0))
    if now["error_rate"] - allowed_errors > criteria.max_error_rate_increase:
        failures.append(f"error rate {now['error_rate']:.3f} vs {allowed_errors:.3f} before promotion")
    allowed_p95 = max(then.get("p95_latency_ms", 0.0), before.get("p95_latency_ms", 0.0))
    if _slower(now["p95_latency_ms"], allowed_p95, criteria):
        failures.append(f"p95 latency {now['p95_latency_ms']:.1f} ms vs {allowed_p95:.1f} ms before promotion")
    replaced = before.get("label_quality")
    judged = task != "multiclass" or classes is not None
    if judged and replaced is not None and len(joined) >= criteria.min_labels:
        quality = label_quality_comparison(task, joined, float(replaced), criteria.confidence)
        if quality:
            now["label_quality"], figures["label_quality"] = quality["canary"], quality
            if why := _worse_quality(quality, criteria, "the replaced model's canary-time figure"):
                failures.append(why)
    if failures:
        return Verdict(False, "; ".join(failures), figures)
    return Verdict(True, f"within canary-time limits over {now['requests']} requests since promotion", figures)
