"""One error tree for the whole package."""

from __future__ import annotations


class MlopsError(Exception):
    """Base of every error raised by airflow-mlops."""


class ConfigError(MlopsError):
    """A pipeline config is invalid; the message names the file and key path."""


class DataValidationError(MlopsError):
    """New data breaks the accepted schema; the message names the report."""

    def __init__(self, message: str, report_uri: str | None = None) -> None:
        super().__init__(message)
        self.report_uri = report_uri


class ArtifactNotFound(MlopsError):
    """An artifact that should exist in the store does not."""


class RegistryConflict(MlopsError):
    """A compare-and-swap update of the registry kept losing to other writers."""


class ModelGateError(MlopsError):
    """A model cannot be evaluated or registered as asked."""


class ActionRefused(MlopsError):
    """An operator's control action (promote, rollback, pause, a retrain request's approval...) does not apply to the
    pipeline's current state; the message says why."""
