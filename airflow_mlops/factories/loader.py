"""Load a pipeline YAML: safe YAML, defaults merged in, every error named by file and key path.

Imported when DAG files are parsed and by ``airflow-mlops lint``: no Airflow, no heavy libraries.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import json
import logging
import os
import re
import tempfile
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airflow_mlops import __version__
from airflow_mlops import config as config_package
from airflow_mlops.config.base import NO_INPUT
from airflow_mlops.config.pipeline import PipelineConfig, cross_field_issues
from airflow_mlops.exceptions import ConfigError

log = logging.getLogger(__name__)

MAX_REPR = 80


def load_pipeline_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read, merge with defaults and validate one pipeline config; raise ConfigError listing every problem.

    A valid config is kept in a parse-time cache keyed by the file's bytes and everything else its result depends
    on (see :func:`_cache_key`): the DAG processor parses every file again and again, and a cache hit rebuilds the
    validated config without validating (no pydantic validator is built or run).

    :param path: the YAML file; error messages name it as given.
    """
    key, folder = _cache_key(path), _cache_dir()
    cached = folder / f"{key}.json" if key and folder else None
    if cached is not None and cached.is_file():
        try:
            config = construct(PipelineConfig, json.loads(cached.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            log.debug("Ignoring an unreadable config cache entry %s", cached)
        else:
            config._config_path = str(path)
            return config
    config, errors = check_pipeline_config(path)
    if config is None:
        raise ConfigError("\n".join(errors))
    if cached is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(config.model_dump_json(), encoding="utf-8")
            partial.replace(cached)
            _prune(cached.parent)
    return config


CACHE_ENTRIES = 500
"""Cached configs kept; beyond that the least recently written go."""


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in entries[: max(0, len(entries) - CACHE_ENTRIES)]:
        old.unlink(missing_ok=True)


def _cache_key(path: str | os.PathLike[str]) -> str | None:
    """What a validated config depends on: the file's bytes, the folders relative paths resolve against (the file's
    for the source, the working one for the artifact root, the Airflow home for its default) and the code that
    validates it (its version and files); None if unreadable."""
    try:
        text = Path(path).read_bytes()
        modules = [Path(__file__), *sorted(Path(config_package.__file__).parent.glob("*.py"))]
        code = [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in modules]
    except OSError:
        return None
    folders = [str(Path(path).resolve().parent), os.getcwd(), os.environ.get("AIRFLOW_HOME")]  # relative paths resolve there
    parts = [text.decode("utf-8", "replace"), folders, __version__, code]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _cache_dir() -> Path | None:
    """A folder of this user's alone (``0700``) under the system's temporary folder; None (no cache) if it is not."""
    folder = Path(tempfile.gettempdir()) / f"airflow-mlops-config-cache-{os.getuid()}"
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_uid == os.getuid() and not folder.stat().st_mode & 0o077:
            return folder
    log.warning("Not caching pipeline configs: %s is not a folder of this user alone (mode 0700)", folder)
    return None


def construct(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """``model`` rebuilt from its own ``model_dump(mode="json")`` without validation: nested models and dates are
    restored; every other value is what validation produced when it was dumped."""
    values = {name: _restore(field.annotation, data[name]) for name, field in model.model_fields.items() if name in data}
    return model.model_construct(**values)


def _restore(annotation: Any, value: Any) -> Any:
    """``value`` (JSON) as the type ``annotation`` holds: models (also in lists, dict values and optional fields)
    and dates restored, anything else as it is."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if value is None:
        return None
    if origin is typing.Annotated:
        return _restore(args[0], value)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        chosen = next(
            (k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel) and isinstance(value, dict)), kinds[0]
        )
        return _restore(chosen, value)
    if origin is list and isinstance(value, list):
        return [_restore(args[0], v) for v in value]
    if origin is dict and isinstance(value, dict):
        return {k: _restore(args[1], v) for k, v in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        return construct(annotation, value)
    if annotation is dt.date and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def config_errors(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of a config file, one ``<file>: <key path>: <message>.`` line each; empty when the file is valid."""
    return check_pipeline_config(path)[1]


class _SafeUniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser where installed
    """``yaml.SafeLoader`` (no tags that build objects or run code) that also rejects a key written twice in one mapping.

    Plain ``safe_load`` keeps the last of two equal keys silently: a second ``features:`` block would hide the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r} in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads yes/no/on/off as booleans too, so a notify entry's unquoted `on: [failure]` became the key True;
# as in YAML 1.2, only true and false are booleans here (a boolean field still takes "yes" or "on": pydantic reads them).
_YAML12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_SafeUniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, _YAML12_BOOL if tag == "tag:yaml.org,2002:bool" else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def check_pipeline_config(path: str | os.PathLike[str]) -> tuple[PipelineConfig | None, list[str]]:
    """The config and no errors, or None and every error line: for callers that want both (``lint``)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        return None, [f"{name}: cannot read the file: {err.strerror or err}."]
    except UnicodeDecodeError as err:
        return None, [f"{name}: the file is not UTF-8 text: {err.reason}."]
    try:
        raw = yaml.load(text, Loader=_SafeUniqueKeyLoader)  # a SafeLoader subclass: no object-building tags
    except yaml.YAMLError as err:
        return None, [f"{name}: {_yaml_error(err)}."]
    if raw is None:
        return None, [f"{name}: the file is empty; a pipeline config needs at least pipeline, source, label, task and features."]
    if not isinstance(raw, dict):
        return None, [
            f"{name}: the top level must be a mapping of keys (pipeline, source, label, ...). Got {type(raw).__name__} instead."
        ]
    merged = merge_defaults(raw)
    _resolve_paths(merged, Path(path).resolve().parent)
    try:
        config = PipelineConfig.model_validate(merged)
    except ValidationError as err:
        return None, _error_lines(name, err, merged)
    config._config_path = name
    return config, []


def _yaml_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err)
    return f"{where}invalid YAML: {problem}"


def default_config() -> dict[str, Any]:
    """The package defaults as a fresh mapping: every config field's default other than None (the optional
    sections ``evaluation``, ``canary`` and ``monitor`` have none), nested sections as mappings."""
    out: dict[str, Any] = {}
    for name, field in PipelineConfig.model_fields.items():
        value = None if field.is_required() else field.get_default(call_default_factory=True)
        if value is not None:
            out[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return out


def merge_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """The package defaults with ``raw`` on top: ``raw`` wins, mappings merge recursively, lists are replaced."""
    return _merge(default_config(), raw)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative local sources (``source``, ``monitor.labels``, ``scoring.input``) and a relative ``scoring.output``
    resolve against the YAML file; a relative artifact root against the working directory.

    A null root is ``file://$AIRFLOW_HOME/mlops`` (``~/airflow`` when AIRFLOW_HOME is unset), unless ``conn_id`` names
    a connection that holds it. Jinja is kept as written.
    """
    monitor = raw.get("monitor")
    labels = monitor.get("labels") if isinstance(monitor, dict) else None
    scoring = raw.get("scoring") if isinstance(raw.get("scoring"), dict) else {}
    output = {"uri": scoring["output"]} if isinstance(scoring.get("output"), str) else None
    for source in (raw.get("source"), labels, scoring.get("input"), output):  # sources, label exports, scoring input, output
        if isinstance(source, dict) and isinstance(source.get("uri"), str):
            uri = source["uri"]
            if uri and "://" not in uri and not uri.startswith(("/", "{{", "~")):
                source["uri"] = os.path.normpath(base / uri)
            elif uri.startswith("~"):
                source["uri"] = os.path.expanduser(uri)
    if output is not None:
        scoring["output"] = output["uri"]
    artifacts = raw.get("artifacts")
    if isinstance(artifacts, dict):
        root = artifacts.get("root")
        if root is None and artifacts.get("conn_id") is None:
            home = Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()
            artifacts["root"] = f"file://{home.resolve() / 'mlops'}"
        elif isinstance(root, str) and root and "://" not in root:
            artifacts["root"] = f"file://{Path(root).expanduser().resolve()}"


def _error_lines(name: str, err: ValidationError, merged: dict[str, Any]) -> list[str]:
    """One line per problem: pydantic's field errors, then cross-field rules that could still be checked."""
    lines: list[str] = []
    failed: list[tuple[Any, ...]] = []
    cross_fields_ran = False  # the top-level model's own validator reports its issues at the empty location
    for error in err.errors(include_url=False):
        loc = tuple(error["loc"])
        found = (error.get("ctx") or {}).get("issues")
        if error["type"] == "config_issue" and found:
            lines += [_line(name, loc + tuple(issue.loc), issue.message, issue.value) for issue in found]
            cross_fields_ran = cross_fields_ran or not loc
            continue
        failed.append(loc)
        message, value = error["msg"], error.get("input", NO_INPUT)
        if error["type"] == "extra_forbidden":
            message = f"unknown key{_suggestion(loc)}"
        elif error["type"] == "missing":
            message, value = "required key is missing", NO_INPUT
        lines.append(_line(name, loc, message, value))
    # Field errors stop pydantic before the cross-field rules run; check those on the raw mapping now, except
    # where they concern a value that already has its own error.
    for issue in [] if cross_fields_ran else cross_field_issues(merged):
        if not any(issue.loc[: len(loc)] == loc for loc in failed):
            lines.append(_line(name, issue.loc, issue.message, issue.value))
    return lines


def _line(name: str, loc: Sequence[Any], message: str, value: Any) -> str:
    text = f"{name}: {key_path(loc)}: {message}."
    if value is not NO_INPUT:
        shown = repr(value)
        text += f" Got {shown if len(shown) <= MAX_REPR else shown[: MAX_REPR - 3] + '...'} instead."
    return text


def key_path(loc: Sequence[Any]) -> str:
    """``("canary", "steps", 1)`` -> ``canary.steps[1]`` (pydantic's ``[key]`` marker of a bad mapping key is left out:
    the path ends at the key)."""
    out = ""
    for part in (p for p in loc if p != "[key]"):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _suggestion(loc: tuple[Any, ...]) -> str:
    """``; did you mean 'x'?`` for a misspelt key, from the keys the model at that place accepts."""
    model: type[BaseModel] | None = PipelineConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if model is not None and isinstance(part, str) else None
        model = _model_of(field.annotation) if field is not None else None
    if model is None or not isinstance(loc[-1], str):
        return ""
    import difflib  # only when a file has an unknown key: not at every parse

    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed here: {', '.join(model.model_fields)})"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        model = _model_of(arg)
        if model is not None:
            return model
    return None
