"""The model server under load: ours against MLServer and a bare Starlette endpoint, one model, one run.

    make bench-serving
    .venv/bin/python benchmarks/serving.py [--workers N] [--threads 2] [--connections 16] [--duration 15]

Trains one LightGBM model on 25 features (20 numeric, 5 categorical of 50 values; the synthetic data of
benchmarks/scale.py) through the stages, registers it as production with a second version as a 10% canary in a
temporary artifact root, then starts each server in turn on 127.0.0.1 and loads it with wrk (one row per
request; a Lua script sets the POST body and the bearer token; ``--latency`` gives p50 and p99):

  mlserver  MLServer 1.7.1 with mlserver-lightgbm 1.7.1 (its default settings), in a venv of its own made once
            with uv and kept under <tmp>/airflow-mlops-bench/; the V2 infer route on the transformed row
  bare      a Starlette endpoint on uvicorn calling booster.predict on the transformed row
  ours      airflow-mlops serve with the raw row: door checks, the transform, canary routing, the prediction
            log (write-ahead file and Parquet parts), the answered ids for feedback, metrics, a bearer token

bare and ours run the same number of worker processes (``--workers``, default: the number of cores). Each server
gets a short warm-up before its measured run. Prints requests/s, p50, p99 and non-2xx answers per server, and ours
against each of the others.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import CATEGORICAL, LABEL, NUMERIC, make_data  # the same synthetic table

PIPELINE = "bench"
MLSERVER = ("mlserver==1.7.1", "mlserver-lightgbm==1.7.1", "uvloop==0.21.0")
"""uvloop 0.22 made ``asyncio.get_event_loop()`` raise without a running loop, which stops MLServer 1.7.1's
inference workers at start: it gets the last uvloop before that."""
MLSERVER_VENV = Path(tempfile.gettempdir()) / "airflow-mlops-bench" / "mlserver-1.7.1"
TOKEN = "bench-token"
CANARY_PERCENT = 10

BARE_APP = '''"""A bare endpoint: the booster on one transformed row, nothing else."""
import os

import lightgbm as lgb
import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

booster = lgb.Booster(model_file=os.environ["BENCH_MODEL"])


async def predict(request):
    row = np.array([(await request.json())["features"]], dtype=float)
    return JSONResponse({"prediction": float(booster.predict(row, num_threads=1)[0])})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
'''

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def train_models(work: Path) -> tuple[str, str, str]:
    """Two versions of one model in ``work/store`` (production, and a canary at ``CANARY_PERCENT``); returns the
    store's URI and both versions."""
    from airflow_mlops.stages.data import Columns, acquire
    from airflow_mlops.stages.evaluation import register
    from airflow_mlops.stages.features import preprocess
    from airflow_mlops.stages.training import TrainSettings, train
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.registry import ModelRegistry

    make_data(20_000, work / "data.csv")
    store = ArtifactStore.from_uri(str(work / "store"))
    dataset = acquire(store, PIPELINE, str(work / "data.csv"))["dataset_id"]
    columns = Columns(LABEL, "classification", NUMERIC, CATEGORICAL)
    features = preprocess(store, PIPELINE, dataset, columns, eval_fraction=0.2, histogram_bins=10, runner="DirectRunner")
    versions = []
    for seed in (1, 2):
        version = train(store, PIPELINE, features["features_id"], TrainSettings({"num_leaves": 31}, 100, seed, None))
        evaluation = {"model_version": version["model_version"], "blessed": True, "metrics": {}, "reason": "benchmark"}
        register(store, PIPELINE, evaluation, lineage={"dataset_id": dataset}, promote=seed == 1)
        versions.append(version["model_version"])
    ModelRegistry(store, PIPELINE).set_alias("canary", versions[1], weight=CANARY_PERCENT)
    return store.root_uri, versions[0], versions[1]


def sample_row(store_uri: str, version: str) -> tuple[dict, list[float]]:
    """A raw row of the benchmark's data and its model input under ``version``'s transform."""
    import numpy as np

    from airflow_mlops.ml.transform import FeatureTransform
    from airflow_mlops.store.artifacts import ArtifactStore

    rng = np.random.default_rng(7)
    raw = {c: round(float(rng.normal(i, 1 + i / 10)), 4) for i, c in enumerate(NUMERIC)}
    raw |= {c: f"v{rng.integers(0, 50)}" for c in CATEGORICAL}
    spec = ArtifactStore.from_uri(store_uri).read_json(f"models/{PIPELINE}/{version}/transform.json")
    return raw, FeatureTransform(spec).apply(raw)


def mlserver_python() -> Path:
    """The Python of MLServer's own venv, made with uv on first use (the registry must be reachable then) and again
    when ``MLSERVER`` changes."""
    python, wanted = MLSERVER_VENV / "bin" / "python", "\n".join(MLSERVER)
    made = MLSERVER_VENV / "requirements.txt"
    if not made.exists() or made.read_text() != wanted:
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        print(f"Creating {MLSERVER_VENV} with {' '.join(MLSERVER)}", flush=True)
        subprocess.run([uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(MLSERVER_VENV)], check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), *MLSERVER], check=True)
        made.write_text(wanted)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], url: str, log: Path, **kwargs) -> subprocess.Popen:
    """Start a server (its own process group) and wait until ``url`` answers 200."""
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"{command[:4]} did not start; its log:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    except ProcessLookupError:
        pass


def load(url: str, body: dict, work: Path, args: argparse.Namespace, *, token: str | None = None) -> dict:
    """Warm up, then one measured wrk run: requests/s, p50/p99 in ms and non-2xx answers."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(json.dumps(body)), auth=auth))
    common = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "-s", str(script), "--latency"]
    subprocess.run([*common, "-d3s", url], check=True, capture_output=True)
    out = subprocess.run([*common, f"-d{args.duration}s", url], check=True, capture_output=True, text=True).stdout
    latency = {p: _ms(v, unit) for p, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency["50"],
        "p99": latency["99"],
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_mlserver(model: Path, features: list[float], work: Path, args: argparse.Namespace) -> dict:
    folder = work / "mlserver"
    (folder / "bench").mkdir(parents=True)
    shutil.copy(model, folder / "bench" / "model.txt")
    settings = {"name": "bench", "implementation": "mlserver_lightgbm.LightGBMModel", "parameters": {"uri": "./model.txt"}}
    (folder / "bench" / "model-settings.json").write_text(json.dumps(settings))
    port = free_port()
    ports = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1"}
    (folder / "settings.json").write_text(json.dumps(ports))
    proc = start(
        [str(mlserver_python().parent / "mlserver"), "start", str(folder)],
        f"http://127.0.0.1:{port}/v2/models/bench/ready",
        work / "mlserver.log",
    )
    try:
        body = {"inputs": [{"name": "input-0", "shape": [1, len(features)], "datatype": "FP64", "data": features}]}
        return load(f"http://127.0.0.1:{port}/v2/models/bench/infer", body, work, args)
    finally:
        stop(proc)


def run_bare(model: Path, features: list[float], work: Path, args: argparse.Namespace) -> dict:
    (work / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(work), "--port", str(port)]
    command += ["--workers", str(args.workers), "--log-level", "warning"]
    env = {**os.environ, "BENCH_MODEL": str(model)}
    proc = _start_bare(command, port, work, env)
    try:
        return load(f"http://127.0.0.1:{port}/predict", {"features": features}, work, args)
    finally:
        stop(proc)


def _start_bare(command: list[str], port: int, work: Path, env: dict) -> subprocess.Popen:
    """The bare app has no GET route: it is up when a POST is answered."""
    proc = subprocess.Popen(
        command, stdout=(work / "bare.log").open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=b'{"features": [0]}', method="POST")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(request, timeout=1)
        except urllib.error.HTTPError:
            return proc  # it answers (a 500 on the one-feature row)
        except OSError:
            time.sleep(0.3)
            continue
        return proc
    stop(proc)
    raise RuntimeError(f"the bare endpoint did not start:\n{(work / 'bare.log').read_text()[-3000:]}")


def run_ours(store_uri: str, raw: dict, work: Path, args: argparse.Namespace, *, explain: bool = False) -> dict:
    (work / "tokens").write_text(TOKEN + "\n")
    port = free_port()
    command = [sys.executable, "-m", "airflow_mlops.cli", "serve", "--artifact-root", store_uri, "--pipeline", PIPELINE]
    command += ["--port", str(port), "--workers", str(args.workers), "--wal-dir", str(work / "wal")]
    command += ["--predict-token-file", str(work / "tokens")]
    proc = start(command, f"http://127.0.0.1:{port}/health", work / "ours.log")
    try:
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health").read())
        if not health["canary"]:
            raise RuntimeError(f"the canary is not served: {health}")
        body = {"instances": [raw], "explain": True} if explain else {"instances": [raw]}
        return load(f"http://127.0.0.1:{port}/predict", body, work, args, token=TOKEN)
    finally:
        stop(proc)


def explain_costs(store_uri: str, version: str, raw: dict) -> dict[int, tuple[float, float]]:
    """Seconds of ``ServedModel.predict`` and of ``ServedModel.explain`` on 1, 32 and 1000 copies of ``raw``."""
    import statistics

    from airflow_mlops.serving.models import ServedModel
    from airflow_mlops.store.artifacts import ArtifactStore

    model = ServedModel.load(ArtifactStore.from_uri(store_uri), PIPELINE, version)
    costs = {}
    for rows in (1, 32, 1000):
        batch = [raw] * rows
        timings = {"predict": [], "explain": []}
        for _ in range(30):
            for name, call in (("predict", model.predict), ("explain", model.explain)):
                t0 = time.perf_counter()
                call(batch)
                timings[name].append(time.perf_counter() - t0)
        costs[rows] = (statistics.median(timings["predict"]), statistics.median(timings["explain"]))
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes of bare and ours")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--duration", type=int, default=15, help="seconds of each measured run")
    parser.add_argument(
        "--servers",
        default="mlserver,bare,ours,explain",
        help="which servers to run (comma-separated; explain: ours with explain: true)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (servers' logs) and print it")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install -y wrk; `make bench-serving` does it)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-serving-"))
    try:
        if "mlserver" in args.servers:
            mlserver_python()
        t0 = time.perf_counter()
        store_uri, production, canary = train_models(work)
        print(
            f"trained and registered {production} (production) and {canary} ({CANARY_PERCENT}% canary) in "
            f"{time.perf_counter() - t0:.0f} s"
        )
        raw, features = sample_row(store_uri, production)
        model = Path(store_uri.removeprefix("file://")) / "models" / PIPELINE / production / "model.txt"
        runs = {
            "mlserver": lambda: run_mlserver(model, features, work, args),
            "bare": lambda: run_bare(model, features, work, args),
            "ours": lambda: run_ours(store_uri, raw, work, args),
            "explain": lambda: run_ours(store_uri, raw, work, args, explain=True),
        }
        costs = explain_costs(store_uri, production, raw)
        results = {name: run() for name, run in runs.items() if name in args.servers.split(",")}
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, one row per request, {os.cpu_count()} cores; "
        f"bare and ours with {args.workers} workers"
    )
    print(f"{'server':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in results.items():
        print(f"{name:<10}{r['rps']:>10,.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['non_2xx']:>10}")
    ours = results.get("ours")
    if ours and (explained := results.get("explain")):
        print(f"explain/ours    throughput {explained['rps'] / ours['rps']:.2f}x   p99 {explained['p99'] / ours['p99']:.2f}x")
    print("in process, the production model on the same row repeated (median of 30):")
    for rows, (predict, explain) in costs.items():
        print(
            f"  {rows:>5} rows: predict {predict * 1e3:.3f} ms, predict + explain {(predict + explain) * 1e3:.3f} ms ({(predict + explain) / predict:.2f}x)"
        )
    for name in ("mlserver", "bare"):
        if not ours or not (other := results.get(name)):
            continue
        print(f"ours/{name:<9} throughput {ours['rps'] / other['rps']:.2f}x   p99 {ours['p99'] / other['p99']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
