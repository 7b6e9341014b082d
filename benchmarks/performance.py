"""Realized performance at scale: the monitor's labels ingest and performance check over ROWS logged predictions
and ROWS labels, against a pandas merge plus scikit-learn's metric, in one run.

    .venv/bin/python benchmarks/performance.py [ROWS]      (default 1000000)

Writes, in a temporary artifact root, a production model's stored reference (eval-split replicates) and
calibrator, ROWS logged predictions over yesterday's first 20 hours (UTC) as hourly prediction-log files (the compacted layout),
and one label export of ROWS rows (2% of them for ids never served, 1% duplicates). Then runs, each in its own
process (so each peak RSS is its own):
  ours      stages.labels.ingest_labels (the export and the feedback log read, first label per id, the join to the
            prediction log one log file at a time, joined rows stored) + stages.performance.performance_check (ROC
            AUC per window, per version and per slice with seeded bootstrap intervals, the drop against the
            reference, the CBPE estimate over the window's predictions, the event)
  baseline  pandas: every log file read, the export read, drop_duplicates by id, an inner merge on id, then
            sklearn.metrics.roc_auc_score on the merged rows (one figure: no interval, slices or estimate)
and prints seconds, the ratio to the baseline, peak RSS, and both ROC AUC figures (they must agree).
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIPELINE = "bench"
VERSION = "v-bench"
CONTRACTS = ("month-to-month", "one-year", "two-year")


def make_data(work: Path, rows: int) -> None:
    """The store (registry, reference, calibrator, the prediction log) and the label export under ``work``."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.ml.estimation import fit_calibrator
    from airflow_mlops.ml.performance import reference_performance
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.layout import calibrator_key, log_hour_key, reference_performance_key
    from airflow_mlops.store.registry import ModelRegistry

    rng = np.random.default_rng(0)
    store = ArtifactStore.from_uri(str(work / "store"))
    registry = ModelRegistry(store, PIPELINE)
    registry.register(VERSION, status="blessed", metrics={}, lineage={}, reason="benchmark")
    registry.set_alias("production", VERSION, reason="benchmark")
    eval_p = rng.random(20_000)
    eval_y = (rng.random(20_000) < eval_p).astype(float)
    contract = rng.choice(CONTRACTS, 20_000)
    slices = {"contract": contract}
    store.write_json(
        reference_performance_key(PIPELINE, VERSION), reference_performance("classification", eval_y, eval_p, slices=slices)
    )
    store.write_json(calibrator_key(PIPELINE, VERSION), fit_calibrator(eval_p, eval_y))

    start = (time.time() // 86400 - 1) * 86400  # yesterday, 00:00 to 20:00 UTC: one window of the check
    ts = start + np.sort(rng.random(rows)) * 20 * 3600
    p = rng.random(rows)
    y = (rng.random(rows) < p).astype(float)
    ids = np.char.add("r", np.arange(rows).astype(str))
    log = pa.table(
        {
            "_ts": ts,
            "_id": ids,
            "_version": np.full(rows, VERSION),
            "_prediction": p,
            "_error": np.zeros(rows, dtype=bool),
            "_latency_ms": np.full(rows, 1.0),
            "_request": ids,
            "tenure": rng.gamma(2.0, 12.0, rows),
            "contract": rng.choice(CONTRACTS, rows),
        }
    )
    hours = np.floor(ts / 3600).astype("int64")
    for hour in np.unique(hours):
        when = pd.Timestamp(int(hour) * 3600, unit="s", tz="UTC")
        buffer = io.BytesIO()
        pq.write_table(log.filter(pa.array(hours == hour)), buffer)
        store.write_bytes(log_hour_key("predictions", PIPELINE, when.date().isoformat(), when.hour), buffer.getvalue())
    order = rng.permutation(rows)  # labels arrive out of order
    unknown = int(rows * 0.02)
    duplicated = order[: int(rows * 0.01)]
    labels = pd.DataFrame(
        {
            "id": np.concatenate([ids[order], np.char.add("never-", np.arange(unknown).astype(str)), ids[duplicated]]),
            "label": np.concatenate([y[order], np.ones(unknown), 1 - y[duplicated]]),  # a duplicate's later label loses
        }
    )
    (work / "labels").mkdir()
    labels.to_csv(work / "labels" / "export.csv", index=False)


def run(kind: str, work: Path) -> dict:
    """One measured run, in this process (called in a child process by :func:`main`); imports are not timed."""
    import pandas as pd
    import pyarrow.parquet  # noqa: F401
    from sklearn.metrics import roc_auc_score

    from airflow_mlops.stages.labels import LabelSource, ingest_labels
    from airflow_mlops.stages.performance import PerformanceSettings, performance_check
    from airflow_mlops.store.artifacts import ArtifactStore

    t0 = time.perf_counter()
    if kind == "ours":
        store = ArtifactStore.from_uri(str(work / "store"))
        source = LabelSource(uri=str(work / "labels" / "*.csv"))
        ingest = ingest_labels(store, PIPELINE, source, slices=["contract"], run_id="bench")
        settings = PerformanceSettings("classification", "roc_auc", 0.05, 200, 0.95, 24, "warn", ["contract"])
        result = performance_check(store, PIPELINE, settings, run_id="bench", ingest=ingest)
        windows = store.read_json(f"reports/{PIPELINE}/bench/performance.json")["windows"]
        labelled = [w for w in windows if w["labels"]]
        # yesterday's window holds every labelled prediction: its figure is the one a merge over all rows gives
        auc = labelled[0]["realized"]["value"] if len(labelled) == 1 else None
        figures = {"joined": ingest["joined"], "unknown": ingest["unknown"], "windows": len(labelled), "roc_auc": auc}
        figures["dropped"] = result["dropped"]
    else:
        files = sorted((work / "store" / "predictions" / PIPELINE).rglob("*.parquet"))
        log = pd.concat(pd.read_parquet(f, columns=["_id", "_version", "_prediction", "contract"]) for f in files)
        labels = pd.read_csv(work / "labels" / "export.csv", dtype={"id": str}).drop_duplicates("id", keep="first")
        merged = log.merge(labels, left_on="_id", right_on="id", how="inner")
        figures = {"joined": len(merged), "roc_auc": float(roc_auc_score(merged["label"], merged["_prediction"]))}
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **figures}


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
    with tempfile.TemporaryDirectory(prefix="mlops-bench-performance-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        make_data(work, rows)
        print(
            f"{rows} logged predictions and {rows} labels (+2% unknown ids, +1% duplicates) written in {time.perf_counter() - t0:.1f} s"
        )
        results = {}
        for kind in ("baseline", "ours"):
            code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import performance; print(json.dumps(performance.run({kind!r}, __import__('pathlib').Path({tmp!r}))))"
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        ours, base = results["ours"], results["baseline"]
        print(f"{'run':<10}{'seconds':>10}{'ratio':>8}{'peak RSS MB':>14}{'joined':>10}{'roc_auc':>10}")
        for kind, r in (("baseline", base), ("ours", ours)):
            ratio = r["seconds"] / base["seconds"]
            auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.4f}"
            print(f"{kind:<10}{r['seconds']:>10.2f}{ratio:>7.2f}x{r['peak_rss_mb']:>14.0f}{r['joined']:>10}{auc:>10}")
        print(
            f"ours: {ours['unknown']} labels for unknown ids counted, {ours['windows']} labelled window(s), dropped={ours['dropped']}"
        )


if __name__ == "__main__":
    main()
