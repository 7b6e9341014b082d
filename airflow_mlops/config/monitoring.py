"""``monitor``: the drift check, its schedule and the governed retrain requests it files."""

from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from airflow_mlops.config.base import Fraction, Strict, check_schedule


class DriftConfig(Strict):
    method: Literal["psi", "ks"] = Field(
        "psi", description="Per-column drift score against the reference profile: psi, or ks (approximate for discrete columns)."
    )
    column_threshold: Fraction = Field(0.2, description="A column drifts when its score passes this.")
    share_threshold: Fraction = Field(0.3, description="The data drifts when this share of columns drifts.")


class MonitorConfig(Strict):
    schedule: str = Field("@hourly", description="Schedule of the monitor DAG: cron expression or preset.")
    min_rows: PositiveInt = Field(500, description="New logged predictions needed before a drift check.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift thresholds.")
    cooldown_hours: float = Field(24, ge=0, description="Minimum time between two retrain requests.")
    request_max_open_hours: float = Field(
        72,
        gt=0,
        description="A retrain request still open this long after it was filed is closed as expired (its run was lost).",
    )
    check_seconds: float = Field(30.0, gt=0, le=3600, description="Time between counts of new logged predictions.")
    approval: Literal["auto", "manual"] = Field(
        "auto",
        description="auto: a drift's retrain request starts training at once; manual: it waits, pending, until an "
        "operator approves it in the ops UI (or dismisses it).",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str | None:
        return check_schedule(value)
