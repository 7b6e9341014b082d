"""Load a pipeline YAML: safe YAML, defaults merged in, every error named by file and key path.

Imported when DAG files are parsed and by ``airflow-mlops lint``: no Airflow, no heavy libraries.
"""

from __future__ import annotations

import copy
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_mlops.exceptions import ConfigError
from airflow_mlops.factories.schema import PipelineConfig


def load_pipeline_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read, merge with defaults and validate one pipeline config; raise ConfigError listing every problem."""
    config, errors = _load(path)
    if config is None:
        raise ConfigError("\n".join(errors))
    return config


def config_errors(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of a config file, one line each (empty when the file is valid)."""
    return _load(path)[1]


def _load(path: str | os.PathLike[str]) -> tuple[PipelineConfig | None, list[str]]:
    name = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        return None, [f"{name}: cannot read the file: {err.strerror or err}."]
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return None, [f"{name}: {where}invalid YAML: {getattr(err, 'problem', None) or err}."]
    if not isinstance(raw, dict):
        return None, [f"{name}: the top level must be a mapping of keys (pipeline, source, label, ...). Got {type(raw).__name__} instead."]
    merged = _merge(_defaults(), raw)
    _resolve_paths(merged, Path(path).resolve().parent)
    try:
        config = PipelineConfig.model_validate(merged)
    except ValidationError as err:
        return None, [line for e in err.errors() for line in _format(name, e)]
    config._config_path = name
    return config, []


def _defaults() -> dict[str, Any]:
    return yaml.safe_load(files("airflow_mlops.factories").joinpath("defaults.yaml").read_text())


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative local source paths are relative to the YAML file; the default root is $AIRFLOW_HOME/mlops."""
    source = raw.get("source")
    if isinstance(source, dict) and isinstance(source.get("uri"), str):
        uri = source["uri"]
        if uri and "://" not in uri and not uri.startswith(("/", "{{")):
            source["uri"] = os.path.normpath(base / uri)
    artifacts = raw.get("artifacts")
    if isinstance(artifacts, dict):
        root = artifacts.get("root")
        if root is None:
            home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
            artifacts["root"] = f"file://{home.resolve() / 'mlops'}"
        elif isinstance(root, str) and "://" not in root:
            artifacts["root"] = f"file://{Path(root).resolve()}"


def _format(name: str, error: dict[str, Any]) -> list[str]:
    loc = tuple(error["loc"])
    found = (error.get("ctx") or {}).get("issues")
    if error["type"] == "config_issue" and found:
        return [f"{name}: {_path(loc + tuple(sub))}: {message}." for sub, message in found]
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (not part of the pipeline config)"
    elif error["type"] == "missing":
        message = "required key is missing"
    got = "" if error["type"] in ("missing", "extra_forbidden") else f" Got {error['input']!r} instead."
    return [f"{name}: {_path(loc)}: {message}.{got}"]


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"
