"""A PostgreSQL table into a snapshot, against ``pandas.read_sql`` and ``COPY ... TO STDOUT``, in one run.

    .venv/bin/python benchmarks/sql_source.py 1000000

Creates a database of its own on the machine's PostgreSQL (127.0.0.1, user postgres) and a table of ROWS x 25
columns of ``benchmarks/scale.py``'s data plus an id (20 float columns with 2% nulls, 5 text columns of 50 values,
a label), loaded with COPY (not measured). Then, each in its own process (so each peak RSS is its own):
  ours      ``source: {sql, conn_id}`` as the acquire task runs it: the query through the connection's DbApiHook,
            streamed in chunks of 50,000 rows (the task's default) by a server-side cursor into a content-addressed snapshot
            (``operators.data.query_batches`` + ``stages.data.acquire_batches``)
  read_sql  ``pandas.read_sql`` of the query on a psycopg2 connection (the whole result at once), written as Parquet
  copy      ``COPY (query) TO STDOUT WITH CSV`` into memory, read by ``pyarrow.csv``, written as Parquet
and prints seconds, rows/s, peak RSS and the ratios. The database is dropped at the end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import in_process, peak_rss_mb
from scale import CATEGORICAL, LABEL, NUMERIC, _table  # the benchmark's data, one owner (beside this file)

QUERY = "select * from bench order by id"
GENERATE_ROWS = 500_000
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc"]


def setup(database: str, rows: int) -> None:
    import numpy as np
    import psycopg2
    import pyarrow as pa
    import pyarrow.csv as pcsv

    subprocess.run([*PSQL, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=True, capture_output=True)
    subprocess.run([*PSQL, f"CREATE DATABASE {database}"], check=True, capture_output=True)
    columns = ["id bigint"] + [f"{c} double precision" for c in NUMERIC] + [f"{c} text" for c in CATEGORICAL]
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database) as conn, conn.cursor() as cur:
        cur.execute(f"create table bench ({', '.join(columns)}, {LABEL} bigint)")
        rng = np.random.default_rng(5)
        for start in range(0, rows, GENERATE_ROWS):
            n = min(GENERATE_ROWS, rows - start)
            table = _table(rng, n).add_column(0, "id", pa.array(range(start, start + n), pa.int64()))
            buffer = io.BytesIO()
            pcsv.write_csv(table, buffer, pcsv.WriteOptions(include_header=False))
            buffer.seek(0)
            cur.copy_expert("copy bench from stdin with (format csv)", buffer)
        cur.execute("analyze bench")


def run(side: str, database: str, work: Path) -> dict:
    t0 = time.perf_counter()
    if side == "ours":
        from airflow_mlops.operators.data import SQL_CHUNK_ROWS, query_batches
        from airflow_mlops.stages.data import acquire_batches
        from airflow_mlops.store.artifacts import ArtifactStore

        os.environ["AIRFLOW_CONN_MLOPS_BENCH_PG"] = f"postgres://postgres@127.0.0.1:5432/{database}"
        store = ArtifactStore.from_uri(str(work / "store"))
        t0 = time.perf_counter()
        batches = query_batches("mlops_bench_pg", QUERY, SQL_CHUNK_ROWS, name="mlops_bench")
        result = acquire_batches(store, "bench", f"sql:mlops_bench_pg: {QUERY}", batches)
        rows = result["rows"]
    elif side == "read_sql":
        import pandas as pd
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database) as conn:
            frame = pd.read_sql(QUERY, conn)
        frame.to_parquet(work / "read_sql.parquet", index=False)
        rows = len(frame)
    else:
        import psycopg2
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database) as conn, conn.cursor() as cur:
            cur.copy_expert(f"copy ({QUERY}) to stdout with (format csv, header)", buffer)
        buffer.seek(0)
        table = pcsv.read_csv(buffer)
        pq.write_table(table, work / "copy.parquet")
        rows = table.num_rows
    return {
        "seconds": time.perf_counter() - t0,
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--side":
        print(json.dumps(run(sys.argv[2], sys.argv[3], Path(sys.argv[4]))))
        return 0
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    database = f"mlops_bench_sql_{os.getpid()}"
    try:
        t = time.perf_counter()
        setup(database, rows)
        print(f"{rows:,} rows x 25 columns (+ an id) in PostgreSQL in {time.perf_counter() - t:.1f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="mlops-bench-sql-") as tmp:
            results = {side: in_process(__file__, ["--side", side, database, tmp]) for side in ("ours", "read_sql", "copy")}
    finally:
        subprocess.run([*PSQL, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False, capture_output=True)
    names = {
        "ours": "ours: query_batches -> snapshot",
        "read_sql": "pandas.read_sql + Parquet",
        "copy": "COPY TO STDOUT + pyarrow.csv + Parquet",
    }
    print(f"{'':40}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>13}")
    for side, result in results.items():
        assert result["rows"] == rows, (side, result)
        print(f"{names[side]:40}{result['seconds']:10.2f}{rows / result['seconds']:12,.0f}{result['peak_rss_mb']:13.0f}")
    ours = results["ours"]
    for side in ("read_sql", "copy"):
        other = results[side]
        print(
            f"ours vs {side}: {ours['seconds'] / other['seconds']:.2f}x the time, "
            f"{ours['peak_rss_mb'] / other['peak_rss_mb']:.2f}x the peak RSS"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
