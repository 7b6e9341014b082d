"""Which metrics exist, which task each belongs to, and which way is better: the one table the config
schema, the evaluation gate and the canary analysis read. Standard library only (imported at DAG parse time)."""

from __future__ import annotations

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("roc_auc", "log_loss", "accuracy"),
    "multiclass": ("roc_auc_macro", "roc_auc_weighted", "log_loss", "accuracy"),
    "regression": ("rmse", "mae"),
}
HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "roc_auc_macro": True,
    "roc_auc_weighted": True,
    "log_loss": False,
    "accuracy": True,
    "rmse": False,
    "mae": False,
}
UNIT_INTERVAL_METRICS = ("roc_auc", "accuracy", "roc_auc_macro", "roc_auc_weighted")
DEFAULT_METRIC: dict[str, str] = {"classification": "roc_auc", "multiclass": "roc_auc_macro", "regression": "rmse"}
"""A task's gate metric when the pipeline has no evaluation section, and the canary's label-quality metric."""
TASKS = tuple(TASK_METRICS)
"""``task``: ``classification`` (binary), ``multiclass`` (one of the label's classes) or ``regression``."""
CLASS_LABEL_TASKS = ("classification", "multiclass")
"""The tasks whose label is categorical: the schema records its class shares."""
RECALL_PREFIX = "recall:"
"""A multiclass model's metrics hold ``recall:<class>`` for each class (reported, not a gate metric)."""
MULTICLASS_REALIZED_METRICS = ("accuracy", "log_loss")
"""The metrics realized performance judges for multiclass: means over rows of each row's hit or loss (the ROC AUCs
over classes are not bootstrapped on labelled traffic yet)."""
