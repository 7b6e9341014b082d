"""Where every artifact lives under the store's root: the one owner of the key layout.

```
datasets/<pipeline>/<sha256>/             data.parquet, manifest.json
schemas/<pipeline>/schema.json            the accepted schema; versions/<n>.json every accepted version;
                                          volume.json: row counts of recent accepted datasets
features/<pipeline>/<features_id>/        train/ eval/ eval_raw/ transform.json profile.json _SUCCESS.json
models/<pipeline>/<version>/              model.txt transform.json profile.json training.json metrics.json lineage.json card.html
                                          reference_performance.json calibrator.json
registry/<pipeline>.json                  versions, statuses, aliases
reports/<pipeline>/<run_id>/              validation, evaluation and drift reports; tuning.json: the run's tuning trials
predictions/<pipeline>/<date>/part-*.parquet   the prediction log, as the server writes it; hour-HH.parquet once compacted
feedback/<pipeline>/<date>/               the labels sent back, laid out the same way
labels/<pipeline>/                        labels joined to the prediction log: joined/<prediction date>/<batch>.parquet,
                                          files/<digest>.json per label file read, batches/<batch>.json, state.json
events/<pipeline>.jsonl                   canary steps and decisions, drift checks, retrain requests
scores/<pipeline>/<dataset>-<version>/    batch scores of one input snapshot by one model version: part-NNNNN.parquet
                                          (unless scoring.output names another folder), _SUCCESS.json, scoring.json, log.json
```
"""

from __future__ import annotations

import re
from datetime import datetime

DONE = "_SUCCESS.json"
"""Written last into a features prefix: its presence marks the features complete."""

LOG_KINDS = ("predictions", "feedback")


def dataset_prefix(pipeline: str, dataset_id: str) -> str:
    return f"datasets/{pipeline}/{dataset_id}"


def schema_key(pipeline: str) -> str:
    return f"schemas/{pipeline}/schema.json"


def schema_version_key(pipeline: str, number: int) -> str:
    return f"schemas/{pipeline}/versions/{number}.json"


def volume_key(pipeline: str) -> str:
    return f"schemas/{pipeline}/volume.json"


def features_prefix(pipeline: str, features_id: str) -> str:
    return f"features/{pipeline}/{features_id}"


def model_prefix(pipeline: str, version: str) -> str:
    return f"models/{pipeline}/{version}"


def registry_key(pipeline: str) -> str:
    return f"registry/{pipeline}.json"


def report_prefix(pipeline: str, run_id: str) -> str:
    """Reports of one DAG run; characters a path or URL would mangle become ``_``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    return f"reports/{pipeline}/{safe}"


def tuning_key(pipeline: str, run_id: str) -> str:
    """The tuning trials of one DAG run (each trial's parameters, model version and metric, and the chosen one)."""
    return f"{report_prefix(pipeline, run_id)}/tuning.json"


def is_report_key(pipeline: str, key: str) -> bool:
    """Whether ``key`` is an HTML report of one of ``pipeline``'s runs (``reports/<pipeline>/<run>/<name>.html``)
    or a model card (``models/<pipeline>/<version>/card.html``): the pages a reader of the pipeline may open."""
    parts = key.split("/")
    if len(parts) != 4 or parts[1] != pipeline or any(not p or p.strip(".") == "" for p in parts):
        return False
    kind, _, folder, name = parts
    if kind == "reports":
        return report_prefix(pipeline, folder) == f"reports/{pipeline}/{folder}" and bool(re.fullmatch(r"[\w-]+\.html", name))
    return kind == "models" and name == "card.html" and bool(re.fullmatch(r"[\w.-]+", folder))


def reference_performance_key(pipeline: str, version: str) -> str:
    """A model's eval-split metrics with their bootstrap replicates: what its realized performance is judged against."""
    return f"{model_prefix(pipeline, version)}/reference_performance.json"


def calibrator_key(pipeline: str, version: str) -> str:
    """A classifier's calibrator (JSON), fitted on the eval split: estimated performance before labels."""
    return f"{model_prefix(pipeline, version)}/calibrator.json"


def labels_prefix(pipeline: str) -> str:
    return f"labels/{pipeline}"


def joined_labels_key(pipeline: str, day: str, batch: str) -> str:
    """The labels one ingest batch joined to predictions logged on ``day`` (UTC, ``YYYY-MM-DD``)."""
    return f"{labels_prefix(pipeline)}/joined/{day}/{batch}.parquet"


def label_file_key(pipeline: str, digest: str) -> str:
    """The record of one label file read (by name, size and version): it is not read again."""
    return f"{labels_prefix(pipeline)}/files/{digest}.json"


def label_query_key(pipeline: str, digest: str) -> str:
    """A ``monitor.labels.sql`` query's result, stored by content as a label export the ingest reads once."""
    return f"{labels_prefix(pipeline)}/queries/{digest}.parquet"


def label_batch_key(pipeline: str, batch: str) -> str:
    """One ingest batch's plan and counts: a retry finds its files and its arrival time there."""
    return f"{labels_prefix(pipeline)}/batches/{batch}.json"


def labels_state_key(pipeline: str) -> str:
    """How far the feedback log was read into the labels (epoch seconds of its last row read)."""
    return f"{labels_prefix(pipeline)}/state.json"


def scoring_id(dataset_id: str, model_version: str) -> str:
    """What batch scores are keyed by: the input snapshot's content and the model version (a rerun rewrites them)."""
    return f"{dataset_id[:16]}-{model_version}"


def scores_prefix(pipeline: str, scoring: str) -> str:
    """The folder of one :func:`scoring_id`'s scores and records in the store."""
    return f"scores/{pipeline}/{scoring}"


def events_key(pipeline: str) -> str:
    return f"events/{pipeline}.jsonl"


def log_prefix(kind: str, pipeline: str) -> str:
    """``predictions/<pipeline>`` or ``feedback/<pipeline>``: one folder per day below it."""
    if kind not in LOG_KINDS:
        raise ValueError(f"Unknown log kind {kind!r}; expected one of {LOG_KINDS}.")
    return f"{kind}/{pipeline}"


def log_day(key: str) -> str:
    """The ``YYYY-MM-DD`` folder of a log part key."""
    return key.split("/")[2]


def log_part_key(kind: str, pipeline: str, now: datetime, suffix: str) -> str:
    """A new part of a log, named by its write time (UTC) and a unique ``suffix``."""
    return f"{log_prefix(kind, pipeline)}/{now:%Y-%m-%d}/part-{now:%H%M%S%f}-{suffix}.parquet"


def log_hour_key(kind: str, pipeline: str, day: str, hour: int) -> str:
    """The compacted file of one hour of a log: the rows of every part written in that hour (UTC)."""
    return f"{log_prefix(kind, pipeline)}/{day}/hour-{hour:02d}.parquet"


def log_file_hour(key: str) -> datetime | None:
    """The start (UTC) of the hour a log part was written in (``part-HH...``), or an hourly file holds
    (``hour-HH``); None for a name that says no hour."""
    found = re.fullmatch(r"(?:part|hour)-(\d{2}).*\.parquet", log_file_name(key))
    if not found or int(found.group(1)) > 23:
        return None
    return datetime.fromisoformat(f"{log_day(key)}T{found.group(1)}:00:00+00:00")


def log_file_name(key: str) -> str:
    """The file name of a log key (the last path segment): what an hourly file lists of the parts it holds."""
    return key.rsplit("/", 1)[-1]


def is_log_part(key: str) -> bool:
    return log_file_name(key).startswith("part-")
