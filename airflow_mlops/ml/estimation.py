"""Performance estimated before labels arrive: confidence-based estimation (CBPE, as in NannyML) for binary classifiers.

At training, :func:`fit_calibrator` fits an isotonic map from the model's scores to the observed rate of positives on
the eval split; it is plain JSON, stored beside the model. In the monitor, :func:`calibrate` turns logged scores into calibrated
probabilities and :func:`estimate_performance` computes the metrics the labels would give *in expectation*: a row with
calibrated probability p is a positive with probability p, so it adds p to the expected positives and 1 - p to the
expected negatives at whichever side of the threshold its prediction falls. This holds while the calibration holds,
that is under covariate shift but not under concept drift (a changed link between inputs and label), which only
realized performance from labels can show.

numpy is imported inside each function: importing this module costs nothing at DAG parse time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsError

if TYPE_CHECKING:
    import numpy as np

KIND = "isotonic"
VERSION = 1
MAX_KNOTS = 200
"""The most (score, probability) points a calibrator keeps: a few KiB of JSON whatever the eval split's size."""


def fit_calibrator(scores: Any, labels: Any, *, max_knots: int = MAX_KNOTS) -> dict[str, Any]:
    """Isotonic calibration of binary-classifier scores, fitted by pool-adjacent-violators, as JSON-ready data.

    The fitted map is a non-decreasing step function over the scores; the calibrator keeps one knot per step at the
    step's mean score and its rate of positives (steps merged by weight to at most ``max_knots``), and
    :func:`calibrate` interpolates linearly between knots, flat beyond the first and last.

    :param scores: the model's predicted probabilities of class 1 on the eval split.
    :param labels: the eval split's labels, 0 or 1.
    :param max_knots: the most knots kept.
    """
    import numpy as np

    x = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels, dtype=float).ravel()
    if len(x) != len(y):
        raise MlopsError(f"Calibrator: {len(x)} scores but {len(y)} labels; they must pair up row by row.")
    if len(x) == 0:
        raise MlopsError("Calibrator: the eval split is empty; there is nothing to calibrate on.")
    if not np.isfinite(x).all():
        raise MlopsError(f"Calibrator: {int((~np.isfinite(x)).sum())} scores are NaN or infinite.")
    if not np.isin(y, (0.0, 1.0)).all():
        raise MlopsError(f"Calibrator: labels must be 0 or 1. Got {np.unique(y[~np.isin(y, (0.0, 1.0))])[:5].tolist()}.")
    if max_knots < 1:
        raise MlopsError(f"Calibrator: max_knots must be >= 1. Got {max_knots} instead.")
    # One block per distinct score (ties must share one value), then pool adjacent violators.
    unique, inverse = np.unique(x, return_inverse=True)
    weight = np.bincount(inverse).astype(float)
    positives = np.bincount(inverse, weights=y)
    score_sum = unique * weight
    w, s, t = _pool_adjacent_violators(weight.tolist(), positives.tolist(), score_sum.tolist())
    w, s, t = np.array(w), np.array(s), np.array(t)
    if len(w) > max_knots:
        # Consecutive blocks into at most max_knots groups of about equal weight; weighted means of consecutive
        # blocks of a non-decreasing sequence are still non-decreasing.
        group = np.floor((np.cumsum(w) - w) / w.sum() * max_knots).astype(int)
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        w, s, t = (np.add.reduceat(a, starts) for a in (w, s, t))
    return {
        "kind": KIND,
        "version": VERSION,
        "x": (t / w).tolist(),
        "y": (s / w).clip(0.0, 1.0).tolist(),
        "rows": len(x),
        "positives": int(y.sum()),
    }


def _pool_adjacent_violators(
    weight: list[float], positives: list[float], score_sum: list[float]
) -> tuple[list[float], list[float], list[float]]:
    """Merge adjacent blocks until their rates (positives / weight) strictly increase; one pass with a stack.

    Runs over distinct scores, once per training, not per logged row."""
    w: list[float] = []
    s: list[float] = []
    t: list[float] = []
    for wi, si, ti in zip(weight, positives, score_sum, strict=True):
        while w and s[-1] * wi >= si * w[-1]:  # rate of the last block >= rate of the new one: pool them
            wi, si, ti = wi + w.pop(), si + s.pop(), ti + t.pop()
        w.append(wi)
        s.append(si)
        t.append(ti)
    return w, s, t


def calibrate(calibrator: dict[str, Any], scores: Any) -> np.ndarray:
    """Calibrated probabilities of class 1 for ``scores``, in [0, 1] (NaN stays NaN).

    :param calibrator: what :func:`fit_calibrator` returned, or its JSON read back.
    :param scores: the model's raw predicted probabilities of class 1.
    """
    import numpy as np

    kind, version = calibrator.get("kind"), calibrator.get("version")
    if kind != KIND or version != VERSION:
        raise MlopsError(
            f"Calibrator kind {kind!r} version {version!r} is not one this airflow-mlops reads "
            f"(it reads kind {KIND!r} version {VERSION}); refit it by retraining the model."
        )
    x = np.asarray(calibrator.get("x", []), dtype=float)
    y = np.asarray(calibrator.get("y", []), dtype=float)
    if x.ndim != 1 or len(x) == 0 or x.shape != y.shape or (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
        raise MlopsError("Calibrator: 'x' and 'y' must be non-empty, of equal length and non-decreasing.")
    return np.interp(np.asarray(scores, dtype=float), x, y).clip(0.0, 1.0)


def estimate_performance(probabilities: Any, threshold: float = 0.5) -> dict[str, float]:
    """CBPE: the expected confusion matrix, accuracy, precision, recall and ROC AUC of calibrated probabilities.

    A row is predicted positive when its probability is >= ``threshold``; it adds p to the expected true positives and
    1 - p to the expected false positives (predicted negative: p to false negatives, 1 - p to true negatives). The
    expected ROC curve takes the rows by probability, highest first: the cumulative sums of p and 1 - p are the
    expected true and false positives at each cut (rows of equal probability make one step), and the area under it
    is the expected ROC AUC (trapezoids). Metrics without a denominator are NaN: all of them for no rows, precision
    with no predicted positive, recall and ROC AUC with no expected positive (or, for ROC AUC, negative). Rows all of
    one probability strictly between 0 and 1 give ROC AUC 0.5, as ties do in the realized metric.

    :param probabilities: calibrated probabilities of class 1 (see :func:`calibrate`), in [0, 1].
    :param threshold: the decision threshold, in [0, 1].
    """
    import numpy as np

    p = np.asarray(probabilities, dtype=float).ravel()
    if not 0.0 <= threshold <= 1.0:
        raise MlopsError(f"Estimated performance: threshold must be in [0, 1]. Got {threshold} instead.")
    bad = ~((p >= 0.0) & (p <= 1.0))  # NaN is bad too
    if bad.any():
        raise MlopsError(
            f"Estimated performance: {int(bad.sum())} of {len(p)} probabilities are NaN or outside [0, 1] "
            f"(e.g. {p[bad][:3].tolist()}); pass calibrated probabilities."
        )
    predicted = p >= threshold
    tp, fp = float(p[predicted].sum()), float((1.0 - p[predicted]).sum())
    fn, tn = float(p[~predicted].sum()), float((1.0 - p[~predicted]).sum())
    rows = len(p)
    return {
        "rows": rows,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": _ratio(tp + tn, rows),
        "precision": _ratio(tp, tp + fp) if predicted.any() else math.nan,
        "recall": _ratio(tp, tp + fn),
        "roc_auc": _expected_roc_auc(p),
    }


def _expected_roc_auc(p: np.ndarray) -> float:
    import numpy as np

    positives, negatives = float(p.sum()), float((1.0 - p).sum())
    if len(p) == 0 or positives <= 0.0 or negatives <= 0.0:
        return math.nan
    # np.unique sorts ascending; walk it backwards so the highest probabilities come first.
    _, inverse = np.unique(p, return_inverse=True)
    step_tp = np.bincount(inverse, weights=p)[::-1]
    step_fp = np.bincount(inverse, weights=1.0 - p)[::-1]
    tpr = np.r_[0.0, np.cumsum(step_tp)] / positives
    fpr = np.r_[0.0, np.cumsum(step_fp)] / negatives
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan
