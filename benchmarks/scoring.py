"""Batch scoring at scale against raw ``Booster.predict`` on ready features plus the same Parquet write, in one run.

    .venv/bin/python benchmarks/scoring.py 1000000

Trains a model once on 200,000 rows of ``benchmarks/scale.py``'s data (20 numeric columns with 2% nulls, 5
categorical of 50 values, a binary label), puts it in production, then writes a scoring input of ROWS x 25 features
plus an id column as Parquet, and the same rows as ready model input (the transform applied, float64). Then, each
in its own process (so each peak RSS is its own):
  ours      the stage functions the scoring DAG runs: acquire (content-addressed snapshot), resolve_model,
            validate_input (serving mode, streamed), score (Arrow batches through the model's transform, sharded
            Parquet into the store), publish
  baseline  the ready features read whole, one Booster.predict over them, the same output table (id, score,
            class, model_version, dataset_id) written as the same Parquet parts
and prints seconds, rows/s, peak RSS and the ratio to the baseline, with and without acquire.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from measure import in_process, peak_rss_mb
from scale import CATEGORICAL, LABEL, NUMERIC, _table, make_data  # the benchmark's data, one owner (beside this file)

TRAIN_ROWS = 200_000
PIPELINE = "bench"
ID = "row_id"
GENERATE_ROWS = 1_000_000
"""Rows generated (and written) at a time."""


def setup(work: Path, rows: int) -> dict:
    """The production model, its accepted schema, the scoring input and its ready features (not measured)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.config.data import ValidationConfig
    from airflow_mlops.config.scoring import BATCH_ROWS
    from airflow_mlops.ml.transform import FeatureTransform
    from airflow_mlops.stages.data import Columns, acquire, validate
    from airflow_mlops.stages.evaluation import register
    from airflow_mlops.stages.features import preprocess
    from airflow_mlops.stages.training import TrainSettings, train
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.layout import model_prefix

    store = ArtifactStore.from_uri(str(work / "store"))
    make_data(TRAIN_ROWS, work / "train.csv")
    dataset_id = acquire(store, PIPELINE, str(work / "train.csv"))["dataset_id"]
    columns = Columns(LABEL, "classification", NUMERIC, CATEGORICAL)
    validate(store, PIPELINE, dataset_id, columns, ValidationConfig().model_dump(), run_id="train")
    prepared = preprocess(store, PIPELINE, dataset_id, columns, eval_fraction=0.2, histogram_bins=10, runner="DirectRunner")
    features_id = prepared["features_id"]
    version = train(store, PIPELINE, features_id, TrainSettings({"num_leaves": 31}, 20, 42, None))["model_version"]
    evaluation = {"model_version": version, "blessed": True, "metrics": {}, "reason": "benchmark"}
    register(store, PIPELINE, evaluation, lineage={"features_id": features_id, "dataset_id": dataset_id}, promote=True)

    transform = FeatureTransform(store.read_json(f"{model_prefix(PIPELINE, version)}/transform.json"))
    rng = np.random.default_rng(7)
    with pq.ParquetWriter(work / "input.parquet", _input(rng, 1, 0).schema) as inputs:
        ready = None
        for start in range(0, rows, GENERATE_ROWS):
            table = _input(rng, min(GENERATE_ROWS, rows - start), start)
            inputs.write_table(table, row_group_size=BATCH_ROWS)
            matrix = transform.apply_frame(table.to_pandas())
            block = pa.table({ID: table[ID], **{f"f{j}": matrix[:, j] for j in range(matrix.shape[1])}})
            if ready is None:
                ready = pq.ParquetWriter(work / "ready.parquet", block.schema)
            ready.write_table(block, row_group_size=BATCH_ROWS)
        ready.close()
    return {"rows": rows, "model_version": version}


def _input(rng, rows: int, start: int):
    import pyarrow as pa

    table = _table(rng, rows).drop_columns([LABEL])
    return table.add_column(0, ID, pa.array(range(start, start + rows), pa.int64()))


def run(side: str, work: Path) -> dict:
    """One side, in this process: seconds (and per step), rows and peak RSS."""
    state = json.loads((work / "state.json").read_text())
    steps: dict[str, float] = {}
    peaks: dict[str, float] = {}  # peak RSS MB so far, after each step of ours
    t0 = time.perf_counter()
    if side == "ours":
        from airflow_mlops.config.data import ValidationConfig
        from airflow_mlops.stages.data import acquire
        from airflow_mlops.stages.scoring import publish, resolve_model, score, validate_input
        from airflow_mlops.store.artifacts import ArtifactStore

        store = ArtifactStore.from_uri(str(work / "store"))
        t0 = last = time.perf_counter()

        def step(name: str) -> None:
            nonlocal last
            now = time.perf_counter()
            steps[name], last = now - last, now
            peaks[name] = peak_rss_mb()

        acquired = acquire(store, PIPELINE, str(work / "input.parquet"))
        step("acquire")
        version = resolve_model(store, PIPELINE)["model_version"]
        checked = validate_input(store, PIPELINE, acquired["dataset_id"], ValidationConfig().model_dump(), run_id="bench")
        step("validate")
        result = score(store, PIPELINE, acquired["dataset_id"], version, id_columns=[ID], skip=checked["skip"])
        step("score")
        publish(store, PIPELINE, result, run_id="bench", source=str(work / "input.parquet"), anomalies=checked["anomalies"])
        step("publish")
        rows = result["rows"]
    else:
        import io

        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from airflow_mlops.config.scoring import BATCH_ROWS
        from airflow_mlops.stages.training import load_booster
        from airflow_mlops.store.artifacts import ArtifactStore

        store = ArtifactStore.from_uri(str(work / "store"))
        version = state["model_version"]
        booster = load_booster(store, PIPELINE, version)
        t0 = time.perf_counter()
        ready = pq.read_table(work / "ready.parquet")
        ids, matrix = ready[ID], np.column_stack([ready[c].to_numpy() for c in ready.column_names[1:]])
        del ready
        scores = booster.predict(matrix, num_threads=1)
        steps["predict"] = time.perf_counter() - t0
        out = Path(work / "baseline")
        out.mkdir(exist_ok=True)
        for i, start in enumerate(range(0, len(scores), BATCH_ROWS)):
            part = scores[start : start + BATCH_ROWS]
            n = len(part)
            table = pa.table(
                {
                    ID: ids.slice(start, n),
                    "score": pa.array(part, pa.float64()),
                    "class": pa.array((part >= 0.5).astype("int8")),
                    "model_version": pa.array([version] * n, pa.string()),
                    "dataset_id": pa.array(["-" * 64] * n, pa.string()),
                }
            )
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            (out / f"part-{i:05d}.parquet").write_bytes(buffer.getvalue())
        steps["write"] = time.perf_counter() - t0 - steps["predict"]
        rows = len(scores)
    return {
        "seconds": time.perf_counter() - t0,
        "steps": steps,
        "peaks": peaks,
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] in ("--setup", "--run"):
        work = Path(sys.argv[3])
        print(json.dumps(setup(work, int(sys.argv[2])) if sys.argv[1] == "--setup" else run(sys.argv[2], work)))
        return 0
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(prefix="mlops-scoring-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        state = in_process(__file__, ["--setup", str(rows), str(work)])
        (work / "state.json").write_text(json.dumps(state))
        print(f"{rows:,} rows x {len(NUMERIC) + len(CATEGORICAL)} features (+ an id) ready in {time.perf_counter() - t0:.1f} s")
        ours, base = in_process(__file__, ["--run", "ours", str(work)]), in_process(__file__, ["--run", "baseline", str(work)])
        print(f"{'':<34}{'seconds':>9}{'rows/s':>12}{'peak RSS MB':>13}")
        after = ours["seconds"] - ours["steps"]["acquire"]
        for name, seconds, rss in (
            ("ours: acquire+validate+score+publish", ours["seconds"], ours["peak_rss_mb"]),
            ("ours without acquire", after, ours["peak_rss_mb"]),
            ("baseline: predict + Parquet write", base["seconds"], base["peak_rss_mb"]),
        ):
            print(f"{name:<34}{seconds:>9.2f}{rows / seconds:>12,.0f}{rss:>13.0f}")
        print("ours, per step: " + ", ".join(f"{k} {v:.2f} s" for k, v in ours["steps"].items()))
        print("ours, peak RSS MB after each step: " + ", ".join(f"{k} {v:.0f}" for k, v in ours["peaks"].items()))
        print("baseline, per step: " + ", ".join(f"{k} {v:.2f} s" for k, v in base["steps"].items()))
        print(f"ratio to baseline: {ours['seconds'] / base['seconds']:.2f}x with acquire, {after / base['seconds']:.2f}x without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
