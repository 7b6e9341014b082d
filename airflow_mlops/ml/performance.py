"""Realized performance on labelled predictions: a metric with a seeded bootstrap interval, overall and per group
(model version, slice value), the reference it is judged against, and the drop from that reference.

The bootstrap is the canary's rule (:func:`airflow_mlops.ml.canary.label_quality_comparison`): ``BOOTSTRAP_ROUNDS``
resamples with replacement, seeded, the interval from the replicates' quantiles (``nearest``). A resample is drawn
as counts per row (one integer draw, one bincount) and every metric is a weighted sum over the rows, so one round
costs O(rows) and never sorts again: ROC AUC's ranks come from one ``np.unique`` of the scores, made once. The
point figures equal :func:`airflow_mlops.ml.evaluate.compute_metrics`'s (ties take average ranks, as there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from airflow_mlops.ml.canary import BOOTSTRAP_ROUNDS
from airflow_mlops.ml.metrics import HIGHER_IS_BETTER, MULTICLASS_REALIZED_METRICS, TASK_METRICS

SEED = 0
REFERENCE_CONFIDENCE = 0.95
"""Confidence of the interval stored with a reference (the replicates are stored too: any other is derived)."""


@dataclass(frozen=True)
class Figure:
    """A metric over some labelled rows, its bootstrap interval and the replicates it came from."""

    value: float
    low: float
    high: float
    rows: int
    replicates: np.ndarray = field(repr=False)

    def to_dict(self, *, replicates: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"value": _num(self.value), "interval": [_num(self.low), _num(self.high)], "rows": self.rows}
        if replicates:
            out["replicates"] = [_num(round(float(r), 6)) for r in self.replicates]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], confidence: float) -> Figure:
        """A stored figure; with its replicates the interval is taken again at ``confidence``."""
        reps = np.asarray([np.nan if r is None else r for r in data.get("replicates", [])], dtype=float)
        value = float("nan") if data.get("value") is None else float(data["value"])
        if len(reps):
            low, high = _interval(reps, confidence)
        else:
            low, high = (float("nan") if v is None else float(v) for v in data.get("interval", [None, None]))
        return cls(value, low, high, int(data.get("rows", 0)), reps)


def _num(value: float) -> float | None:
    """JSON-safe: NaN becomes None."""
    return None if value != value else float(value)


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail], method="nearest")
    return float(low), float(high)


def _prepared(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """What the metric sums per row: the score's rank group (roc_auc), or the row's loss or hit."""
    if metric == "roc_auc":
        return np.unique(p, return_inverse=True)[1].ravel()
    if metric == "accuracy":
        return ((p >= 0.5) == (y == 1)).astype(float)
    if metric == "log_loss":
        clipped = np.clip(p, 1e-15, 1 - 1e-15)
        return -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    if metric == "rmse":
        return (p - y) ** 2
    if metric == "mae":
        return np.abs(p - y)
    raise ValueError(f"Unknown metric {metric!r}; expected one of {', '.join(HIGHER_IS_BETTER)}.")


def _weighted(metric: str, prepared: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """The metric of rows counted ``w`` times each (a resample); NaN where it has no denominator."""
    total = w.sum()
    if total <= 0:
        return float("nan")
    if metric != "roc_auc":
        mean = float((w * prepared).sum() / total)
        return float(np.sqrt(mean)) if metric == "rmse" else mean
    groups = int(prepared.max()) + 1 if len(prepared) else 0
    pos = np.bincount(prepared, weights=w * y, minlength=groups)
    neg = np.bincount(prepared, weights=w * (1 - y), minlength=groups)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos <= 0 or n_neg <= 0:
        return float("nan")
    below = np.cumsum(neg) - neg  # negatives with a lower score; ties count half
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def bootstrap(
    metric: str,
    labels: Any,
    predictions: Any,
    *,
    confidence: float,
    groups: Any = None,
    names: Sequence[str] | None = None,
    overall: bool = True,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = SEED,
) -> dict[str, Figure]:
    """``metric`` with its bootstrap interval over all rows (key ``""``, unless ``overall`` is False) and, with
    ``groups`` (one value per row), per group value (its ``str``). Each round resamples all rows, then splits them:
    every group's replicate comes from the same resample.

    Above ``BOOTSTRAP_MAX_ROWS`` rows a round draws that many rows (with replacement) and its deviation from the
    full figure is scaled by ``sqrt(drawn / rows)`` (the m-out-of-n bootstrap): a million labels cost what 20,000
    do, and the interval is the one of all rows. The figures themselves always use every row.

    :param metric: one of :data:`airflow_mlops.ml.metrics.HIGHER_IS_BETTER`.
    :param labels: the true labels (0/1 for classification).
    :param predictions: the logged predictions (probabilities of class 1 for classification).
    :param confidence: of the interval, e.g. 0.95.
    :param groups: optional group of each row, or with ``names`` its index into them (e.g. Arrow's dictionary codes).
    :param names: the groups' names, when ``groups`` holds indices.
    :param overall: also the figure over all rows.
    :param rounds: bootstrap resamples.
    :param seed: the same rows and seed give the same intervals.
    """
    y, p = np.asarray(labels, dtype=float).ravel(), np.asarray(predictions, dtype=float).ravel()
    n = len(y)
    codes = np.zeros(n, dtype=np.int64)
    if groups is not None and names is not None:
        codes, names = np.asarray(groups, dtype=np.int64).ravel() + 1, ["", *(str(n) for n in names)]
    elif groups is not None:
        uniques, inverse = np.unique(np.asarray(groups).astype(str).ravel(), return_inverse=True)
        codes, names = inverse.ravel() + 1, ["", *uniques.tolist()]
    else:
        names = [""]
    parts = [None, *(np.flatnonzero(codes == j) for j in range(1, len(names)))]
    keep = list(range(0 if overall or groups is None else 1, len(parts)))
    values = {j: _metric(metric, y if parts[j] is None else y[parts[j]], p if parts[j] is None else p[parts[j]]) for j in keep}
    reps = {j: np.full(rounds, np.nan) for j in keep}
    rng = np.random.default_rng(seed)
    if 0 < n <= BOOTSTRAP_MAX_ROWS:  # exact: every row counted as often as it was drawn
        prepared = {
            j: _prepared(metric, y if parts[j] is None else y[parts[j]], p if parts[j] is None else p[parts[j]]) for j in keep
        }
        for r in range(rounds):
            counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            for j in keep:
                i = parts[j]
                reps[j][r] = _weighted(metric, prepared[j], y if i is None else y[i], counts if i is None else counts[i])
    elif n:  # m out of n, the rows put in score order once: sorted drawn positions are in score order too
        scale = np.sqrt(BOOTSTRAP_MAX_ROWS / n)
        per_row = _prepared(metric, y, p)  # the score's rank (roc_auc), or the row's loss or hit
        order = np.argsort(per_row, kind="stable")
        per_row, ys, cs = per_row[order], y[order], codes[order]
        for r in range(rounds):
            drawn = np.sort(rng.integers(0, n, BOOTSTRAP_MAX_ROWS))
            for j in keep:
                rows = drawn if j == 0 else drawn[cs[drawn] == j]
                reps[j][r] = values[j] + scale * (_sorted_metric(metric, per_row[rows], ys[rows]) - values[j])
    sizes = [n if i is None else len(i) for i in parts]
    return {names[j]: Figure(values[j], *_interval(reps[j], confidence), sizes[j], reps[j]) for j in keep}


def _sorted_metric(metric: str, per_row: np.ndarray, y: np.ndarray) -> float:
    """The metric of drawn rows from their per-row values: ranks in ascending order for roc_auc (no sort here)."""
    if not len(y):
        return float("nan")
    if metric != "roc_auc":
        mean = float(per_row.mean())
        return float(np.sqrt(mean)) if metric == "rmse" else mean
    starts = np.flatnonzero(np.r_[True, per_row[1:] != per_row[:-1]])  # one step per distinct score
    pos = np.add.reduceat(y, starts)
    neg = np.diff(np.r_[starts, len(y)]) - pos
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos <= 0 or n_neg <= 0:
        return float("nan")
    return float((pos * (np.cumsum(neg) - neg + 0.5 * neg)).sum() / (n_pos * n_neg))


BOOTSTRAP_MAX_ROWS = 20_000
"""Rows a bootstrap round draws at most (see :func:`bootstrap`)."""


def _metric(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    return _weighted(metric, _prepared(metric, y, p), y, np.ones(len(y)))


def reference_performance(
    task: str, labels: Any, predictions: Any, *, slices: Mapping[str, Any] | None = None, rounds: int = BOOTSTRAP_ROUNDS
) -> dict[str, Any]:
    """Every metric of ``task`` on the eval split with its bootstrap replicates, overall and per slice value: what a
    model's realized performance is later judged against (JSON-ready).

    :param task: ``classification``, ``multiclass`` (``MULTICLASS_REALIZED_METRICS`` only) or ``regression``.
    :param labels: the eval split's labels (class indexes for multiclass).
    :param predictions: the model's predictions on it (rows x classes of probabilities for multiclass).
    :param slices: column -> the eval rows' values of that column.
    :param rounds: bootstrap resamples.
    """
    out: dict[str, Any] = {"task": task, "rows": len(np.asarray(labels)), "rounds": rounds, "seed": SEED}
    out["confidence"] = REFERENCE_CONFIDENCE
    out["metrics"], out["slices"] = {}, {}
    multiclass = task == "multiclass"
    index, probabilities = labels, predictions
    for metric in MULTICLASS_REALIZED_METRICS if multiclass else TASK_METRICS[task]:
        if multiclass:
            labels, predictions = per_row_equivalent(metric, index, probabilities)
        overall = bootstrap(metric, labels, predictions, confidence=REFERENCE_CONFIDENCE, rounds=rounds)[""]
        out["metrics"][metric] = overall.to_dict(replicates=True)
        for column, values in (slices or {}).items():
            figures = bootstrap(metric, labels, predictions, confidence=REFERENCE_CONFIDENCE, groups=values, rounds=rounds)
            per_value = out["slices"].setdefault(column, {})
            for value, figure in figures.items():
                if value:
                    per_value.setdefault(value, {})[metric] = figure.to_dict(replicates=True)
    return out


def per_row_equivalent(metric: str, labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """A multiclass metric that is a mean over rows (``MULTICLASS_REALIZED_METRICS``) as the binary labels and scores
    whose binary metric is the same per row, so :func:`bootstrap` judges it unchanged: every label 1, and as the score
    the probability given to the row's class (``log_loss``: -log of it) or 1.0 where the most probable class is the
    row's, else 0.0 (``accuracy``). ``labels``: class indexes; ``probabilities``: rows x classes."""
    index = np.asarray(labels, dtype=float).astype(np.int64)
    p = np.asarray(probabilities, dtype=float).reshape(len(index), -1)
    if metric == "log_loss":
        score = p[np.arange(len(index)), index]
    elif metric == "accuracy":
        score = (np.argmax(p, axis=1) == index).astype(float) if len(index) else np.empty(0)
    else:
        raise ValueError(f"realized multiclass performance judges {', '.join(MULTICLASS_REALIZED_METRICS)}, not {metric}")
    return np.ones(len(index)), score


@dataclass(frozen=True)
class Drop:
    """How far realized performance fell below the reference (in the metric's units; a loss rising is a drop too)."""

    value: float
    low: float
    high: float

    def clears(self, max_drop: float) -> bool:
        """Whether the whole interval is above ``max_drop``."""
        return bool(self.low == self.low and self.low > max_drop)

    def to_dict(self) -> dict[str, Any]:
        return {"value": _num(self.value), "interval": [_num(self.low), _num(self.high)]}


def realized_drop(metric: str, realized: Figure, reference: Figure, confidence: float) -> Drop:
    """The drop from ``reference`` to ``realized`` with an interval from both sides' replicates (independent
    resamples, paired by round); a reference without replicates counts as a fixed figure."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    value = sign * (reference.value - realized.value)
    ref = reference.replicates if len(reference.replicates) else np.full(len(realized.replicates), reference.value)
    m = min(len(ref), len(realized.replicates))
    reps = sign * (ref[:m] - realized.replicates[:m])
    return Drop(value, *_interval(reps, confidence))


def estimated_drop(metric: str, estimate: float, rows: int, reference: Figure, confidence: float) -> Drop:
    """The drop from ``reference`` to an estimate over ``rows`` predictions, with a normal interval: the
    reference's bootstrap spread, and the same spread scaled to ``rows`` for the estimate's own sampling error."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    value = sign * (reference.value - estimate)
    finite = reference.replicates[np.isfinite(reference.replicates)]
    spread = float(np.std(finite)) if len(finite) > 1 else 0.0
    if not rows or not spread:
        return Drop(value, float("nan"), float("nan"))
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * spread * np.sqrt(1 + reference.rows / rows)
    return Drop(value, value - half, value + half)
