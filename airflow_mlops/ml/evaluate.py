"""Holdout metrics and the evaluation gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from airflow_mlops.exceptions import ModelGateError
from airflow_mlops.ml.metrics import HIGHER_IS_BETTER, RECALL_PREFIX


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties get average ranks)."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=float)
    sorted_p = p[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def multiclass_metrics(y: np.ndarray, p: np.ndarray, classes: list[str] | None = None) -> dict[str, float]:
    """Metrics of class probabilities ``p`` (rows x classes) for class indexes ``y``: one-vs-rest ROC AUC averaged
    over the classes (``roc_auc_macro``) and weighted by their rows (``roc_auc_weighted``), both over the classes
    that have rows in and out of them (NaN when none does), log loss, accuracy of the most probable class, and each
    class's recall (``recall:<class>``, NaN for a class without rows; named by ``classes``, else by index)."""
    if p.ndim != 2:
        raise ModelGateError(f"multiclass predictions must be rows x classes, got shape {p.shape}")
    k = p.shape[1]
    index = y.astype(np.int64)
    aucs, weights = [], []
    for c in range(k):
        auc = roc_auc((index == c).astype(float), p[:, c])
        if np.isfinite(auc):
            aucs.append(auc)
            weights.append(float((index == c).sum()))
    picked = np.clip(p[np.arange(len(y)), np.clip(index, 0, k - 1)], 1e-15, 1.0)
    predicted = np.argmax(p, axis=1)
    out = {
        "roc_auc_macro": float(np.mean(aucs)) if aucs else float("nan"),
        "roc_auc_weighted": float(np.average(aucs, weights=weights)) if aucs else float("nan"),
        "log_loss": float(-np.mean(np.log(picked))),
        "accuracy": float(np.mean(predicted == index)),
    }
    names = classes if classes is not None else [str(c) for c in range(k)]
    for c, name in enumerate(names):
        members = index == c
        out[f"{RECALL_PREFIX}{name}"] = float(np.mean(predicted[members] == c)) if members.any() else float("nan")
    return {**out, "rows": float(len(y))}


def compute_metrics(task: str, y_true: Any, y_pred: Any, classes: list[str] | None = None) -> dict[str, float]:
    """Every metric of ``task`` for predictions (probabilities of class 1 for classification; rows x classes of
    probabilities for multiclass, whose labels are class indexes and whose recalls are named by ``classes``)."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if len(y) == 0:
        raise ModelGateError("The evaluation split is empty; cannot compute metrics.")
    if task == "multiclass":
        return multiclass_metrics(y, p, classes)
    if task == "classification":
        clipped = np.clip(p, 1e-15, 1 - 1e-15)
        return {
            "roc_auc": roc_auc(y, p),
            "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
            "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
            "rows": float(len(y)),
        }
    err = p - y
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "rows": float(len(y))}


def slice_metrics(task: str, metric: str, y_true: Any, y_pred: Any, groups: Any) -> dict[str, float]:
    """``metric`` per value of ``groups`` (slices with a single class get NaN for the ROC AUCs)."""
    y, p, g = np.asarray(y_true, float), np.asarray(y_pred, float), np.asarray(groups, dtype=object)
    return {str(v): compute_metrics(task, y[g == v], p[g == v])[metric] for v in sorted(set(g.tolist()), key=str)}


@dataclass(frozen=True)
class GateDecision:
    blessed: bool
    reason: str


def gate(
    metric: str,
    threshold: float | None,
    candidate: dict[str, float],
    production: dict[str, float] | None,
    *,
    must_beat_by: float = 0.0,
    fairness_gap: float | None = None,
    max_gap: float | None = None,
) -> GateDecision:
    """Bless when the candidate meets the threshold, is not worse than production by the margin,
    and (when asked) its metric gap across slices stays within the fairness limit."""
    lower = not HIGHER_IS_BETTER[metric]
    value = candidate[metric]
    if not np.isfinite(value):
        return GateDecision(False, f"{metric} is {value}: cannot judge the candidate")
    meets = threshold is None or (value <= threshold if lower else value >= threshold)
    if not meets:
        return GateDecision(False, f"{metric}={value:.4f} misses the {'maximum' if lower else 'minimum'} {threshold}")
    if max_gap is not None and fairness_gap is not None and fairness_gap > max_gap:
        return GateDecision(False, f"{metric} gap across slices {fairness_gap:.4f} exceeds the fairness limit {max_gap}")
    if production is None:
        return GateDecision(
            True, f"{metric}={value:.4f} meets the {'maximum' if lower else 'minimum'} {threshold}; no production model to beat"
        )
    prod = production[metric]
    improvement = prod - value if lower else value - prod
    if improvement < must_beat_by:
        return GateDecision(
            False, f"{metric}={value:.4f} vs production {prod:.4f}: improvement {improvement:+.4f} < required {must_beat_by}"
        )
    return GateDecision(
        True, f"{metric}={value:.4f} meets {threshold} and vs production {prod:.4f} improves by {improvement:+.4f}"
    )
