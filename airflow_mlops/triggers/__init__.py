"""Triggers that run in Airflow's triggerer for the deferrable sensors."""

from enum import StrEnum


class TriggerStatus(StrEnum):
    """The ``status`` of every event our triggers fire (kept here so sensors need not import a trigger to parse a DAG)."""

    SUCCESS = "success"
    ERROR = "error"
