"""Many pipelines from one folder: every YAML's DAGs, and each broken file as an Airflow import error of its own.

Imported by ``airflow-mlops lint`` (the folder listing and the duplicate-name rule) without Airflow; the builders and
Airflow's DAG context are imported only when :func:`load_pipelines` builds DAGs.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_mlops.config.pipeline import PipelineConfig

log = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yaml", ".yml")


def config_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The pipeline YAMLs of ``folder`` (``*.yaml``, ``*.yml``; not its subfolders), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix in CONFIG_SUFFIXES and p.is_file())


def duplicate_pipeline(path: Path, config: PipelineConfig, owners: dict[str, Path]) -> str | None:
    """The error line when another file in ``owners`` (pipeline name -> file, filled as files are seen) already uses
    this config's pipeline name; None (and ``path`` recorded as its owner) otherwise."""
    other = owners.setdefault(config.pipeline, path)
    if other == path:
        return None
    return f"{path}: pipeline: already used by {other} (DAG ids must be unique). Got {config.pipeline!r} instead."


def pipeline_dags(config: PipelineConfig) -> list[DAG]:
    """Every DAG of one pipeline: the training DAG, the monitor DAG when the config has a ``monitor`` section, and
    the scoring DAG when it has a ``scoring`` section.

    The one place that says which DAGs a pipeline has: a new kind joins the list here.
    """
    from airflow_mlops.factories.builders import build_monitor_dag, build_training_dag

    dags = [build_training_dag(config)]
    if config.monitor is not None:
        dags.append(build_monitor_dag(config))
    if config.scoring is not None:
        from airflow_mlops.factories.scoring import build_scoring_dag

        dags.append(build_scoring_dag(config))
    return dags


def load_pipelines(folder: str | os.PathLike[str]) -> dict[str, DAG]:
    """Build the DAGs of every pipeline YAML in ``folder``; a broken file costs only its own pipeline.

    In a DAG file: ``globals().update(load_pipelines(Path(__file__).parent / "configs"))``. The DAGs also register
    themselves with the DAG file being imported (``with DAG(...)`` does that in Airflow 3), so a bare call loads them
    too. A file that cannot be loaded or built (bad YAML, an unknown key, a bad value, a pipeline name another file
    already uses) becomes an import error of that YAML file in the DagBag importing the DAG file, its message naming
    the file and key path of every problem; outside a DagBag it is logged and warned about (``UserWarning``).
    Files are taken in name order: of two files with the same pipeline name, the first one's DAGs load.

    :param folder: the folder of pipeline YAMLs (``*.yaml``, ``*.yml``, not its subfolders); error messages name the
        files under it as given.
    :return: every DAG built, by DAG id.
    """
    from airflow_mlops.factories.loader import load_pipeline_config

    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: no such folder of pipeline configs.")
    bag = _importing_dagbag()
    dags: dict[str, DAG] = {}
    owners: dict[str, Path] = {}
    paths = config_files(folder)
    if not paths:
        log.warning("No pipeline configs (*.yaml, *.yml) in %s", folder)
    for path in paths:
        try:
            config = load_pipeline_config(path)
            if duplicate := duplicate_pipeline(path, config, owners):
                raise ConfigError(duplicate)
            built = _build_whole(config)
        except ConfigError as err:
            _report(bag, path, str(err))
        except Exception:  # anything else a builder or Airflow raised: recorded with its traceback, as Airflow does
            _report(bag, path, f"{path}: the pipeline's DAGs could not be built:\n{traceback.format_exc()}")
        else:
            if bag is not None:
                bag.import_errors.pop(_error_key(bag, path), None)  # fixed since this bag last imported the DAG file
            dags.update((dag.dag_id, dag) for dag in built)
    return dags


def _build_whole(config: PipelineConfig) -> list[DAG]:
    """:func:`pipeline_dags`, all or nothing: a build that fails halfway leaves no DAG registered with the DAG file
    (a ``with DAG(...)`` block that raises still registers its half-built DAG on exit)."""
    context = _dag_context()
    before = set(context.autoregistered_dags) if context is not None else set()
    try:
        return pipeline_dags(config)
    except BaseException:
        if context is not None:
            context.autoregistered_dags.intersection_update(before)
        raise


def _dag_context() -> Any:
    """Airflow's DAG context (what ``with DAG(...)`` registers DAGs with), or None where this Airflow has none."""
    try:
        from airflow.sdk.definitions._internal.contextmanager import DagContext
    except ImportError:
        return None
    return DagContext if isinstance(getattr(DagContext, "autoregistered_dags", None), set) else None


def _importing_dagbag() -> Any | None:
    """The DagBag whose import of a DAG file is running this call (the nearest on the stack), or None.

    No DagBag can be on the stack unless Airflow's DagBag module is already imported, so nothing is imported here.
    """
    module = sys.modules.get("airflow.dag_processing.dagbag")
    bag_type = getattr(module, "DagBag", None)
    if bag_type is None:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if "self" in frame.f_code.co_varnames:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, bag_type) and isinstance(getattr(candidate, "import_errors", None), dict):
                return candidate
        frame = frame.f_back
    return None


def _error_key(bag: Any, path: Path) -> str:
    """Where the DagBag keeps an error of ``path``: relative to its bundle when the file is inside it (as Airflow keys
    the errors of DAG files), else the absolute path."""
    absolute = os.path.abspath(path)
    bundle = getattr(bag, "bundle_path", None)
    if bundle is not None:
        relative = os.path.relpath(absolute, os.path.abspath(bundle))
        if not relative.startswith(os.pardir + os.sep) and relative != os.pardir:
            return relative
    return absolute


def _report(bag: Any | None, path: Path, message: str) -> None:
    """Record ``message`` as the import error of the YAML file ``path`` (with the DagBag), or warn when no DagBag is
    importing; either way the other files' pipelines still load."""
    log.error("Pipeline config %s not loaded: %s", path, message)
    if bag is not None:
        bag.import_errors[_error_key(bag, path)] = message
    else:
        warnings.warn(message, UserWarning, stacklevel=3)
