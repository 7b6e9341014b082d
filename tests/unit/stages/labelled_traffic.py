"""Logged traffic at chosen times and label files for it: shared by the label and performance stage tests.

Prediction log parts are written straight into the store, named by the time their rows were logged (as the server
names them), so a test can place traffic in any window of the past without waiting for it.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from churn_setup import PIPELINE

from airflow_mlops.ml.synthetic import FEATURES
from airflow_mlops.stages.evaluation import score_raw
from airflow_mlops.store.layout import log_part_key

DAY0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
"""Midnight (UTC) twelve days ago: traffic is placed in the days after it, inside the labels' join lookback."""


def log_at(store, version: str, rows: pd.DataFrame, when: datetime, *, suffix: str = "t", scores=None) -> pd.DataFrame:
    """Log ``rows`` (churn rows) as scored by ``version`` (or with ``scores``) one second apart from ``when``, as one
    log part; returns the rows with their ``_prediction``."""
    scores = score_raw(store, PIPELINE, version, rows) if scores is None else np.asarray(scores, dtype=float)
    frame = pd.DataFrame(
        {
            "_ts": when.timestamp() + np.arange(len(rows), dtype=float),
            "_id": rows["customer_id"].to_numpy(),
            "_version": version,
            "_prediction": scores,
            "_error": False,
            "_latency_ms": 2.0,
            "_request": [f"r{i}" for i in range(len(rows))],
            **{k: rows[k].to_numpy() for k in FEATURES},
        }
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.write_bytes(log_part_key("predictions", PIPELINE, when, f"{suffix}{when:%H%M%S}"), buffer.getvalue())
    return rows.assign(_prediction=scores)


def write_labels(folder: Path, name: str, ids, labels, **extra) -> Path:
    """A label export (CSV) with ``id``, ``churned`` and any ``extra`` columns."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pd.DataFrame({"id": list(ids), "churned": list(labels), **extra}).to_csv(path, index=False)
    return path
