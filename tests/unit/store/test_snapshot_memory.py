"""A Parquet source is snapshotted batch by batch: Arrow's memory stays near one row group, not the file's size."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MEASURE = """
import sys, pyarrow as pa
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import snapshot_source
pool = pa.default_memory_pool()
before = pool.max_memory()
snap, _ = snapshot_source(ArtifactStore.from_uri(sys.argv[2]), "p", sys.argv[1])
print(snap.rows, pool.max_memory() - before)
"""


def test_a_parquet_source_is_read_without_holding_the_row_groups_before(tmp_path):
    """pyarrow's pre_buffer kept every row group iter_batches had read until the file ended (RSS grew with rows)."""
    rows, group = 2_400_000, 65_536  # 73 MiB of floats in 37 row groups
    table = pa.table({f"n{i}": np.random.default_rng(i).random(rows) for i in range(4)})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=group)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "in.parquet"), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(out[0]) == rows
    # about 46 MB read batch by batch (a few 131,072-row batches and the writer's row group); 135 MB with pre_buffer
    assert int(out[1]) < 64 << 20, f"Arrow's peak {int(out[1]) >> 20} MB for a {table.nbytes >> 20} MB file"
