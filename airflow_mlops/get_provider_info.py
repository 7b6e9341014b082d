"""Provider metadata for Airflow's provider manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml


def get_provider_info() -> dict[str, Any]:
    """``provider.yaml`` as a dict."""
    return yaml.safe_load(files("airflow_mlops").joinpath("provider.yaml").read_text())
