"""The data plane at scale: each stage against a plain pandas baseline doing the same work, in one run.

    .venv/bin/python benchmarks/scale.py 1000000

Generates ROWS x 25 columns (20 numeric with 2% nulls, 5 categorical of 50 values, a binary label) as CSV,
then runs, each in its own process (so each peak RSS is its own):
  acquire     stages.data.acquire (read, normalize, content hash, snapshot)  vs  pandas.read_csv
  preprocess  stages.features.preprocess (Beam: fit, profile, split, transform, Parquet)
              vs  pandas: the same fit (mean/std, vocabulary) + transform + Parquet write
  evaluate    scoring the stored model through the batch transform  vs  LightGBM predict on ready features
  drift       stages.monitoring.drift_check over ROWS drifted logged requests (statistics on every row, the
              evidently report on a sample)  vs  evidently's DataDriftPreset over every row, same method and threshold
and prints seconds, the ratio to the baseline (below 1: faster), peak RSS, and whether both drift checks
found the same drifted columns.

    .venv/bin/python benchmarks/scale.py 10000000 --drift-only [--train-rows 100000]

runs only the drift pair over ROWS logged requests, after training on ``--train-rows`` rows (acquire, preprocess
and evaluate run untimed on them, to put a model with its reference profile in production).

    .venv/bin/python benchmarks/scale.py 1000000 --preprocess-only [--runner dask] [--workers 2]

runs only the preprocess pair (acquire untimed before it); ``--runner dask`` runs the Beam pipelines on Beam's
DaskRunner against a ``distributed.LocalCluster`` of ``--workers`` worker processes (one thread each) on 127.0.0.1,
started before the clock starts. ``MLOPS_BENCH_PROFILE=FILE`` writes a cProfile of the preprocess stage to FILE.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUMERIC = [f"n{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
LABEL = "label"
DRIFTED = 5
THRESHOLDS = {"method": "psi", "column_threshold": 0.1, "share_threshold": 0.2}
EVIDENTLY_MAX_ROWS = 2_000_000
"""Above this, evidently's DataDriftPreset over every row is not run (it needs about 2.4 GB per million rows)."""


def make_data(rows: int, path: Path, chunk: int = 1_000_000) -> None:
    """The CSV, written a million rows at a time through pyarrow's writer (the generator's memory stays small)."""
    import numpy as np
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(0)
    with pcsv.CSVWriter(path, _table(rng, 1).schema) as writer:
        for start in range(0, rows, chunk):
            writer.write_table(_table(rng, min(chunk, rows - start)))


def _table(rng, rows: int, drift: bool = False):
    """Rows of the benchmark's data; with ``drift``, the first five numeric columns move by half a standard
    deviation and ``c0`` puts half its rows on five values (the other 15 numeric and 4 categorical do not move)."""
    import numpy as np
    import pyarrow as pa

    data = {
        c: rng.normal(i + (0.5 * (1 + i / 10) if drift and i < DRIFTED else 0), 1 + i / 10, rows) for i, c in enumerate(NUMERIC)
    }
    nulls = {c: rng.random(rows) < 0.02 for c in NUMERIC}
    values = np.array([f"v{j}" for j in range(50)])
    data |= {c: values[rng.integers(0, 50, rows)] for c in CATEGORICAL}
    if drift:
        data["c0"] = np.where(rng.random(rows) < 0.5, values[rng.integers(0, 5, rows)], data["c0"])
    logit = data["n00"] * 0.5 - data["n01"] * 0.3 + (data["c0"] == "v1") * 1.0
    data[LABEL] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    columns = {c: pa.array(v, mask=nulls.get(c)) for c, v in data.items()}
    return pa.table(columns)


def run_stage(stage: str, work: Path) -> dict:
    """One measurement, in this process: ``{"seconds": ..., ...}``."""
    import numpy as np
    import pandas as pd

    from airflow_mlops.stages.data import Columns, acquire
    from airflow_mlops.stages.features import read_features
    from airflow_mlops.stages.training import TrainSettings, load_booster, train
    from airflow_mlops.store.artifacts import ArtifactStore

    store = ArtifactStore.from_uri(str(work / "store"))
    columns = Columns(LABEL, "classification", NUMERIC, CATEGORICAL)
    state_file = work / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    t0 = time.perf_counter()
    if stage == "acquire":
        state["dataset_id"] = acquire(store, "bench", str(work / "data.csv"))["dataset_id"]
    elif stage == "read_csv":
        pd.read_csv(work / "data.csv")
    elif stage == "preprocess":
        state["features_id"] = _preprocess(store, state, columns)["features_id"]
        t0 = time.perf_counter() - state["preprocess_seconds"]  # the pipelines only, not a local cluster's start
    elif stage == "pandas_preprocess":
        frame = pd.read_parquet(next((work / "store" / "datasets" / "bench").glob("*/data.parquet")))
        out = {}
        for c in NUMERIC:
            mean, std = frame[c].mean(), frame[c].std(ddof=0)
            out[c] = ((frame[c] - mean) / std).fillna(0.0)
        for c in CATEGORICAL:
            vocabulary = frame[c].value_counts().index
            out[c] = frame[c].map({v: i + 1 for i, v in enumerate(vocabulary)}).fillna(0).astype(float)
        out[LABEL] = frame[LABEL].astype(float)
        pd.DataFrame(out).to_parquet(work / "pandas_features.parquet", index=False)
    elif stage == "evaluate":
        from airflow_mlops.stages.evaluation import score_raw

        if "model_version" not in state:
            settings = TrainSettings({"num_leaves": 31}, 20, 42, None)
            state["model_version"] = train(store, "bench", state["features_id"], settings)["model_version"]
        raw = read_features(store, "bench", state["features_id"], "eval_raw")
        t0 = time.perf_counter()
        score_raw(store, "bench", state["model_version"], raw)
    elif stage == "predict_features":
        features = read_features(store, "bench", state["features_id"], "eval")
        booster = load_booster(store, "bench", state["model_version"])
        matrix = features[NUMERIC + CATEGORICAL].to_numpy(dtype=np.float64)
        t0 = time.perf_counter()
        booster.predict(matrix, num_threads=1)
    elif stage == "drift":
        from airflow_mlops.stages.monitoring import drift_check, drift_report

        _log_drifted_predictions(store, state, rows=state["rows"])
        t0 = time.perf_counter()
        result = drift_check(store, "bench", run_id="bench", **THRESHOLDS)
        state["drifted"] = sorted(result["drifted_columns"])
        seconds = time.perf_counter() - t0
        drift_report(store, "bench", run_id="bench")
        state["report_seconds"] = time.perf_counter() - t0 - seconds
        t0 = time.perf_counter() - seconds
    elif stage == "evidently_drift":
        if state["rows"] > EVIDENTLY_MAX_ROWS:
            return {"seconds": float("nan"), "peak_rss_mb": float("nan")}
        from evidently import Report
        from evidently.presets import DataDriftPreset

        columns = NUMERIC + CATEGORICAL
        reference = pd.read_parquet(next((work / "store" / "datasets" / "bench").glob("*/data.parquet")), columns=columns)
        current = pd.concat(
            pd.read_parquet(p, columns=columns) for p in sorted((work / "store" / "predictions").rglob("*.parquet"))
        )
        preset = DataDriftPreset(
            columns=columns,
            method=THRESHOLDS["method"],
            threshold=THRESHOLDS["column_threshold"],
            drift_share=THRESHOLDS["share_threshold"],
        )
        t0 = time.perf_counter()
        snapshot = Report([preset]).run(current, reference)
        scores = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"] if "column" in m.get("config", {})}
        state["evidently_drifted"] = sorted(c for c, v in scores.items() if v >= THRESHOLDS["column_threshold"])
    seconds = time.perf_counter() - t0
    state_file.write_text(json.dumps(state))
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _preprocess(store, state: dict, columns) -> dict:
    """The preprocess stage on ``state["runner"]`` (DirectRunner, or dask on a local cluster of ``state["workers"]``)."""
    import contextlib
    import os

    from airflow_mlops.stages.features import preprocess

    runner, options = state.get("runner", "DirectRunner"), {}
    with contextlib.ExitStack() as stack:
        if runner == "dask":
            from distributed import LocalCluster

            cluster = LocalCluster(
                n_workers=state.get("workers", 2), processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            )
            stack.enter_context(cluster)
            options["dask_client_address"] = cluster.scheduler_address
        profile = os.environ.get("MLOPS_BENCH_PROFILE")
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            stack.callback(profiler.dump_stats, profile)
            stack.enter_context(profiler)
        t0 = time.perf_counter()
        result = preprocess(
            store,
            "bench",
            state["dataset_id"],
            columns,
            eval_fraction=0.2,
            histogram_bins=10,
            runner=runner,
            pipeline_options=options,
        )
        state["preprocess_seconds"] = time.perf_counter() - t0
    return result


def _log_drifted_predictions(store, state: dict, rows: int, part_rows: int = 100_000) -> None:
    """The model in production (with its features as the reference) and ``rows`` drifted requests in its prediction log."""
    import io
    from datetime import UTC, datetime

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.serving.predlog import PREDICTION_COLUMNS
    from airflow_mlops.stages.evaluation import register
    from airflow_mlops.store.layout import log_part_key

    evaluation = {"model_version": state["model_version"], "blessed": True, "metrics": {}, "reason": "benchmark"}
    lineage = {"features_id": state["features_id"], "dataset_id": state["dataset_id"]}
    register(store, "bench", evaluation, lineage=lineage, promote=True)
    rng = np.random.default_rng(1)
    for start in range(0, rows, part_rows):
        features = _table(rng, min(part_rows, rows - start), drift=True).drop_columns([LABEL])
        n = features.num_rows
        logged = {
            "_ts": pa.array(np.full(n, time.time())),
            "_id": pa.array([f"r{start + i}" for i in range(n)]),
            "_version": pa.array([state["model_version"]] * n),
            "_prediction": pa.array(rng.random(n)),
            "_error": pa.array(np.zeros(n, dtype=bool)),
            "_latency_ms": pa.array(np.ones(n)),
            "_request": pa.array([f"q{start // 100 + i // 100}" for i in range(n)]),
        }
        assert list(logged) == list(PREDICTION_COLUMNS)
        buffer = io.BytesIO()
        pq.write_table(pa.table({**logged, **dict(zip(features.column_names, features.columns, strict=True))}), buffer)
        store.write_bytes(log_part_key("predictions", "bench", datetime.now(UTC), f"{start:09d}"), buffer.getvalue())


PAIRS = [
    ("acquire", "read_csv"),
    ("preprocess", "pandas_preprocess"),
    ("evaluate", "predict_features"),
    ("drift", "evidently_drift"),
]


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--stage":
        print(json.dumps(run_stage(sys.argv[2], Path(sys.argv[3]))))
        return 0
    args = sys.argv[1:]
    drift_only = "--drift-only" in args
    train_rows = 100_000
    if "--train-rows" in args:
        at = args.index("--train-rows")
        train_rows = int(args[at + 1])
        del args[at : at + 2]
    preprocess_only = "--preprocess-only" in args
    bench_state: dict = {}
    for flag, key, kind in (("--runner", "runner", str), ("--workers", "workers", int)):
        if flag in args:
            at = args.index(flag)
            bench_state[key] = kind(args[at + 1])
            del args[at : at + 2]
    args = [a for a in args if a not in ("--drift-only", "--preprocess-only")]
    rows = int(args[0]) if args else 100_000
    with tempfile.TemporaryDirectory(prefix="mlops-scale-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        generated = train_rows if drift_only else rows
        make_data(generated, work / "data.csv")
        (work / "state.json").write_text(json.dumps({"rows": rows, **bench_state}))
        print(f"{generated:,} rows x {len(NUMERIC) + len(CATEGORICAL) + 1} columns generated in {time.perf_counter() - t0:.1f} s")
        if drift_only:
            print(f"(--drift-only: trained on {train_rows:,} rows; {rows:,} logged requests)")
            for stage in ("acquire", "preprocess", "evaluate"):
                out = subprocess.run([sys.executable, __file__, "--stage", stage, str(work)], capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr[-3000:])
                    return 1
        print(f"{'stage':<12}{'seconds':>10}{'baseline':>20}{'seconds':>10}{'ratio':>8}{'peak RSS MB':>14}")
        if preprocess_only:
            out = subprocess.run([sys.executable, __file__, "--stage", "acquire", str(work)], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:])
                return 1
        pairs = PAIRS[-1:] if drift_only else PAIRS[1:2] if preprocess_only else PAIRS
        for stage, baseline in pairs:
            figures = {}
            for name in (stage, baseline):
                out = subprocess.run([sys.executable, __file__, "--stage", name, str(work)], capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr[-3000:])
                    return 1
                figures[name] = json.loads(out.stdout.strip().splitlines()[-1])
            s, b = figures[stage], figures[baseline]
            ratio = s["seconds"] / b["seconds"]
            print(f"{stage:<12}{s['seconds']:>10.2f}{baseline:>20}{b['seconds']:>10.2f}{ratio:>7.2f}x{s['peak_rss_mb']:>14.0f}")
        state = json.loads((work / "state.json").read_text())
        if preprocess_only:
            workers = f", {state.get('workers', 2)} workers" if state.get("runner") == "dask" else ""
            print(f"(--preprocess-only: Beam runner {state.get('runner', 'DirectRunner')}{workers})")
            return 0
        print(f"drift report (evidently, on a sample of the new rows; its own task): {state['report_seconds']:.2f} s")
        print(f"drifted columns: {', '.join(state['drifted'])} (expected: n00-n{DRIFTED - 1:02d} and c0)")
        if "evidently_drifted" in state:
            same = "the same" if state["evidently_drifted"] == state["drifted"] else f"other: {state['evidently_drifted']}"
            print(f"evidently's DataDriftPreset ({THRESHOLDS['method']}, same threshold) decided {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
