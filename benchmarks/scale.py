"""The data plane at scale: each stage against a plain pandas baseline doing the same work, in one run.

    .venv/bin/python benchmarks/scale.py 1000000

Generates ROWS x 25 columns (20 numeric with 2% nulls, 5 categorical of 50 values, a binary label) as CSV,
then runs, each in its own process (so each peak RSS is its own):
  acquire     stages.data.acquire (read, normalize, content hash, snapshot)  vs  pandas.read_csv
  preprocess  stages.features.preprocess (Beam: fit, profile, split, transform, Parquet)
              vs  pandas: the same fit (mean/std, vocabulary) + transform + Parquet write
  evaluate    scoring the stored model through the batch transform  vs  LightGBM predict on ready features
and prints seconds, the ratio to the baseline, and peak RSS.
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


def make_data(rows: int, path: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data = {c: rng.normal(i, 1 + i / 10, rows) for i, c in enumerate(NUMERIC)}
    for c in NUMERIC:
        data[c][rng.random(rows) < 0.02] = np.nan
    data |= {c: rng.choice([f"v{j}" for j in range(50)], rows) for c in CATEGORICAL}
    logit = data["n00"] * 0.5 - data["n01"] * 0.3 + (data["c0"] == "v1") * 1.0
    data[LABEL] = (rng.random(rows) < 1 / (1 + np.exp(-np.nan_to_num(logit)))).astype("int64")
    pd.DataFrame(data).to_csv(path, index=False)


def run_stage(stage: str, work: Path) -> dict:
    """One measurement, in this process: ``{"seconds": ..., ...}``."""
    import numpy as np
    import pandas as pd

    from airflow_mlops.stages.data import Columns, acquire
    from airflow_mlops.stages.features import preprocess, read_features
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
        result = preprocess(
            store, "bench", state["dataset_id"], columns, eval_fraction=0.2, histogram_bins=10, runner="DirectRunner"
        )
        state["features_id"] = result["features_id"]
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
    seconds = time.perf_counter() - t0
    state_file.write_text(json.dumps(state))
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


PAIRS = [("acquire", "read_csv"), ("preprocess", "pandas_preprocess"), ("evaluate", "predict_features")]


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--stage":
        print(json.dumps(run_stage(sys.argv[2], Path(sys.argv[3]))))
        return 0
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(prefix="mlops-scale-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        make_data(rows, work / "data.csv")
        print(f"{rows:,} rows x {len(NUMERIC) + len(CATEGORICAL) + 1} columns generated in {time.perf_counter() - t0:.1f} s")
        print(f"{'stage':<12}{'seconds':>10}{'baseline':>20}{'seconds':>10}{'ratio':>8}{'peak RSS MB':>14}")
        for stage, baseline in PAIRS:
            figures = {}
            for name in (stage, baseline):
                out = subprocess.run([sys.executable, __file__, "--stage", name, str(work)], capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr[-3000:])
                    return 1
                figures[name] = json.loads(out.stdout.strip().splitlines()[-1])
            s, b = figures[stage], figures[baseline]
            ratio = s["seconds"] / b["seconds"]
            print(f"{stage:<12}{s['seconds']:>10.2f}{baseline:>20}{b['seconds']:>10.2f}{ratio:>7.1f}x{s['peak_rss_mb']:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
