"""Training overhead: our training path against raw ``lgb.train`` on the same rows, params and machine, in one run.

    .venv/bin/python benchmarks/training.py            # 1,000,000 training rows
    .venv/bin/python benchmarks/training.py 100000     # fewer

Generates the data of benchmarks/scale.py (20 numeric columns with 2% nulls, 5 categorical of 50 values, a binary
label) with enough rows that the train split holds ROWS, acquires and preprocesses it (Beam; not timed), then
runs, each in its own process:
  lgb.train   the baseline: ``lgb.train`` on an in-memory frame of the same features with the pipeline's exact
              LightGBM parameters (``ml.train.lgb_params``: same seed, threads and settings), Dataset built inside
  stage       ``stages.training.train``: read the train split from the store, train, write the model and its files
  cli         ``airflow-mlops train ...`` as a fresh process (what the training pod runs): interpreter start,
              imports, then the stage
and prints seconds and the ratio to the baseline (goal: at most 1.05). Each measured run trains from scratch (the
model the previous run stored is deleted first: the content cache would otherwise skip training).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import CATEGORICAL, LABEL, NUMERIC, make_data

PIPELINE = "bench"
EVAL_FRACTION = 0.05
PARAMS = {"num_leaves": 31, "learning_rate": 0.05, "min_data_in_leaf": 20}
"""The pipeline's default ``model.params``."""
ROUNDS = 200
"""The default ``model.num_boost_round``."""
SEED = 42


def settings(rounds: int):
    from airflow_mlops.stages.training import TrainSettings

    return TrainSettings(dict(PARAMS), rounds, SEED, None)


def run_variant(variant: str, work: Path, rounds: int) -> dict:
    """One measurement, in this process: ``{"seconds": ...}``."""
    from airflow_mlops.store.artifacts import ArtifactStore

    store = ArtifactStore.from_uri(str(work / "store"))
    state = json.loads((work / "state.json").read_text())
    _forget_models(store)
    if variant == "lgb.train":
        import lightgbm as lgb

        from airflow_mlops.ml.train import lgb_params
        from airflow_mlops.stages.features import read_features

        frame = read_features(store, PIPELINE, state["features_id"], "train")[[*NUMERIC, *CATEGORICAL, LABEL]]
        t0 = time.perf_counter()
        dataset = lgb.Dataset(frame[NUMERIC + CATEGORICAL], frame[LABEL], categorical_feature=CATEGORICAL)
        booster = lgb.train(lgb_params("classification", PARAMS, SEED), dataset, num_boost_round=rounds)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "trees": booster.num_trees(), "rows": len(frame)}
    if variant == "stage":
        import lightgbm  # noqa: F401  the libraries' import time is the cli's figure, not the data path's
        import pyarrow.parquet  # noqa: F401

        from airflow_mlops.ml.train import train_model  # noqa: F401
        from airflow_mlops.stages.training import train

        t0 = time.perf_counter()
        result = train(store, PIPELINE, state["features_id"], settings(rounds))
        return {"seconds": time.perf_counter() - t0, "cached": result["cached"]}
    if variant == "cli":
        command = [str(Path(sys.executable).with_name("airflow-mlops")), "train", "--artifact-root", str(work / "store")]
        command += ["--pipeline", PIPELINE, "--features-id", state["features_id"], "--params", json.dumps(PARAMS)]
        command += ["--num-boost-round", str(rounds), "--seed", str(SEED)]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return {"seconds": time.perf_counter() - t0}
    raise ValueError(f"unknown variant {variant!r}")


def _forget_models(store) -> None:
    """Delete the stored models (this store holds the benchmark's alone), so the next run trains instead of reusing."""
    from airflow_mlops.store.layout import model_prefix

    shutil.rmtree(store.local_path(model_prefix(PIPELINE, "")), ignore_errors=True)


def prepare(rows: int, work: Path) -> None:
    """Source data whose train split has about ``rows`` rows, acquired and preprocessed into the store."""
    from airflow_mlops.stages.data import Columns, acquire
    from airflow_mlops.stages.features import preprocess
    from airflow_mlops.store.artifacts import ArtifactStore

    store = ArtifactStore.from_uri(str(work / "store"))
    make_data(round(rows / (1 - EVAL_FRACTION)), work / "data.csv")
    dataset = acquire(store, PIPELINE, str(work / "data.csv"))
    columns = Columns(LABEL, "classification", NUMERIC, CATEGORICAL)
    features = preprocess(
        store, PIPELINE, dataset["dataset_id"], columns, eval_fraction=EVAL_FRACTION, histogram_bins=10, runner="DirectRunner"
    )
    (work / "state.json").write_text(json.dumps({"features_id": features["features_id"]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000, help="training rows (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"boosting rounds (default {ROUNDS})")
    parser.add_argument("--repeat", type=int, default=1, help="measurements of each variant; the fastest is shown")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, Path(args.work), args.rounds)))
        return 0
    with tempfile.TemporaryDirectory(prefix="mlops-training-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        prepare(args.rows, work)
        state = json.loads((work / "state.json").read_text())
        print(f"data generated, acquired and preprocessed in {time.perf_counter() - t0:.1f} s (not timed below)")
        figures: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            for variant in ("lgb.train", "stage", "cli"):
                command = [sys.executable, __file__, str(args.rows), "--rounds", str(args.rounds)]
                command += ["--variant", variant, "--work", str(work)]
                out = subprocess.run(command, capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr[-3000:])
                    return 1
                figures.setdefault(variant, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = {v: min(runs, key=lambda r: r["seconds"]) for v, runs in figures.items()}
        base = best["lgb.train"]
        print(f"{base['rows']:,} training rows x {len(NUMERIC) + len(CATEGORICAL)} features, {args.rounds} rounds")
        print(f"{'variant':<12}{'seconds':>10}{'ratio':>9}   (features_id {state['features_id']})")
        for variant, figure in best.items():
            print(f"{variant:<12}{figure['seconds']:>10.2f}{figure['seconds'] / base['seconds']:>8.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
