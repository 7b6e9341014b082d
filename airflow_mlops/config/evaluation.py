"""``evaluation``: the gate metric and threshold, slices and the fairness limit."""

from typing import Literal, Self

from pydantic import Field, model_validator

from airflow_mlops.config.base import Fraction, Issue, Strict, config_issues
from airflow_mlops.ml.metrics import HIGHER_IS_BETTER, UNIT_INTERVAL_METRICS


class FairnessConfig(Strict):
    column: str = Field(..., description="Categorical feature whose slices are compared.")
    max_gap: Fraction = Field(..., description="Largest allowed gap of the gate metric between slices.")


class EvaluationConfig(Strict):
    metric: Literal[tuple(HIGHER_IS_BETTER)] = Field(  # type: ignore[valid-type]
        ...,
        description="Gate metric: roc_auc, log_loss, accuracy (classification); roc_auc_macro, roc_auc_weighted "
        "(one-vs-rest ROC AUC, averaged over the classes or weighted by their support), log_loss, accuracy (multiclass); "
        "rmse, mae (regression).",
    )
    threshold: float = Field(
        ..., description="Minimum for roc_auc/roc_auc_macro/roc_auc_weighted/accuracy; maximum for log_loss/rmse/mae."
    )
    must_beat_production_by: float = Field(0.0, ge=0.0, description="Required improvement over production; 0 means not worse.")
    slices: list[str] = Field(default_factory=list, description="Categorical features to report the metric for, per value.")
    fairness: FairnessConfig | None = Field(None, description="Limit on the metric gap between slices of one column.")

    @property
    def higher_is_better(self) -> bool:
        """True for the ROC AUCs and accuracy (the threshold is a minimum), False for losses (the threshold is a maximum)."""
        return HIGHER_IS_BETTER[self.metric]

    @model_validator(mode="after")
    def _threshold_range(self) -> Self:
        if self.metric in UNIT_INTERVAL_METRICS and not 0.0 <= self.threshold <= 1.0:
            raise config_issues([Issue(("threshold",), f"must be between 0 and 1 for {self.metric}", self.threshold)])
        if self.metric not in UNIT_INTERVAL_METRICS and self.threshold < 0:
            raise config_issues(
                [Issue(("threshold",), f"must be >= 0 for {self.metric} (it is the largest loss allowed)", self.threshold)]
            )
        return self
