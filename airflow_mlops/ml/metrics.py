"""Which metrics exist, which task each belongs to, and which way is better: the one table the config
schema, the evaluation gate and the canary analysis read. Standard library only (imported at DAG parse time)."""

from __future__ import annotations

TASK_METRICS: dict[str, tuple[str, ...]] = {"classification": ("roc_auc", "log_loss", "accuracy"), "regression": ("rmse", "mae")}
HIGHER_IS_BETTER: dict[str, bool] = {"roc_auc": True, "log_loss": False, "accuracy": True, "rmse": False, "mae": False}
UNIT_INTERVAL_METRICS = ("roc_auc", "accuracy")
DEFAULT_METRIC: dict[str, str] = {"classification": "roc_auc", "regression": "rmse"}
"""A task's gate metric when the pipeline has no evaluation section, and the canary's label-quality metric."""
