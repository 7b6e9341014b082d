"""Which pipelines the ops UI shows: the configs ``[mlops] configs`` names, their DAGs and runs, and their stores."""

from __future__ import annotations

import functools
import glob
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_mlops.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig
    from airflow_mlops.store.artifacts import ArtifactStore


def training_dag_id(pipeline: str) -> str:
    return f"mlops_{pipeline}_training"


def monitor_dag_id(pipeline: str) -> str:
    return f"mlops_{pipeline}_monitor"


def pipeline_of_dag(dag_id: str, tags: list[str] | tuple[str, ...] = ()) -> str | None:
    """The pipeline a DAG belongs to: its ``pipeline:<name>`` tag, else its id ``mlops_<name>_<kind>``; None."""
    for tag in tags:
        if tag.startswith("pipeline:"):
            return tag.removeprefix("pipeline:")
    found = re.fullmatch(r"mlops_([a-z][a-z0-9_]*)_(training|monitor)", dag_id)
    return found.group(1) if found else None


@dataclass(frozen=True)
class RunState:
    """One DAG run, as Airflow's DB has it."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    run_after: datetime | None


def configs_pattern() -> str:
    """``[mlops] configs`` (``AIRFLOW__MLOPS__CONFIGS``): folders, files or globs of pipeline YAMLs, comma-separated;
    default every ``*.yaml`` under ``[core] dags_folder``."""
    from airflow.configuration import conf

    return conf.get("mlops", "configs", fallback="") or str(Path(conf.get("core", "dags_folder")) / "**" / "*.yaml")


def config_files(pattern: str) -> list[Path]:
    """The YAML files ``pattern`` names (see :func:`configs_pattern`), sorted, each once."""
    found: set[Path] = set()
    for part in (p.strip() for p in pattern.split(",")):
        path = Path(part).expanduser()
        if path.is_dir():
            found.update(f for suffix in ("*.yaml", "*.yml") for f in path.rglob(suffix))
        else:
            found.update(Path(f) for f in glob.glob(str(path), recursive=True))
    return sorted(f for f in found if f.is_file())


@dataclass(frozen=True)
class Pipelines:
    """The pipelines found, by name, and the files that name a pipeline but could not be loaded (with why)."""

    configs: dict[str, PipelineConfig]
    errors: list[str] = field(default_factory=list)


def find_pipelines(pattern: str) -> Pipelines:
    """Load every pipeline config ``pattern`` names; YAML files that are no pipeline config are skipped.

    :param pattern: as :func:`configs_pattern` returns it.
    """
    from airflow_mlops.factories.loader import load_pipeline_config

    configs: dict[str, PipelineConfig] = {}
    errors: list[str] = []
    for path in config_files(pattern):
        try:
            config = load_pipeline_config(path)
        except ConfigError as err:
            if _names_a_pipeline(path):
                errors.append(str(err))
            continue
        if config.pipeline in configs:
            errors.append(f"{path}: pipeline {config.pipeline!r} is also defined in {configs[config.pipeline].config_path}")
            continue
        configs[config.pipeline] = config
    return Pipelines(dict(sorted(configs.items())), errors)


def _names_a_pipeline(path: Path) -> bool:
    try:
        return re.search(r"^pipeline\s*:", path.read_text(encoding="utf-8", errors="replace"), re.MULTILINE) is not None
    except OSError:
        return False


def open_store(config: PipelineConfig) -> ArtifactStore:
    """The pipeline's artifact store, opened as its tasks open it (root, or its ``mlops_artifacts`` connection)."""
    return _store(config.artifacts.root, config.artifacts.aws_conn_id, config.artifacts.conn_id)


@functools.lru_cache(maxsize=64)
def _store(root: str | None, aws_conn_id: str | None, conn_id: str | None) -> ArtifactStore:
    from airflow_mlops.hooks.artifact_store import ArtifactStoreHook

    return ArtifactStoreHook(artifact_root=root, aws_conn_id=aws_conn_id, mlops_conn_id=conn_id).get_store()
