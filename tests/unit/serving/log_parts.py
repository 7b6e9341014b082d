"""Log parts written straight into a store, as the server ships them, and the rows read back: shared by the reader
and compaction tests."""

import io
from datetime import datetime

import pandas as pd

from airflow_mlops.serving.predlog import prediction_row
from airflow_mlops.serving.predlog_reader import read_log
from airflow_mlops.store.layout import log_part_key


def write_part(store, when: datetime, rows: int, suffix: str = "x") -> None:
    frame = pd.DataFrame(
        [
            prediction_row(
                row_id=f"{when:%j%H%M%S}-{suffix}-{i}", version="v1", prediction=0.5, latency_ms=1.0, request_id="r", features={}
            )
            | {"_ts": when.timestamp() - i / 1000, "tenure": float(i)}
            for i in range(rows)
        ]
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.write_bytes(log_part_key("predictions", "p", when, suffix), buffer.getvalue())


def rows(store, since=0.0):
    return read_log(store, "p", "predictions", since).sort_values("_id").reset_index(drop=True)
