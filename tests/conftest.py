"""Test environment: an isolated Airflow home with a migrated SQLite DB, and a moto S3 server over HTTP."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Under pytest-xdist (`make test`) every worker is a process of its own with its own Airflow home, DB, moto server,
# DAG folder and temp folders; ports are free ones picked per server, PostgreSQL databases and Redis DB numbers are
# named per test. WORKER is "gw0", "gw1", ... there and "" in a plain run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if "MLOPS_TEST_AIRFLOW_HOME" in os.environ:
    _HOME = Path(os.environ["MLOPS_TEST_AIRFLOW_HOME"]) / WORKER
    _HOME.mkdir(parents=True, exist_ok=True)
else:  # a home of this run's own goes with it
    _HOME = Path(tempfile.mkdtemp(prefix=f"mlops-test-airflow-{WORKER}-"))
    atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

# Airflow reads its config at import time: set the environment before anything imports it.
os.environ["AIRFLOW_HOME"] = str(_HOME)
# dag.test() needs the DAG in a bundle: tests write their DAG files into this folder (see `pipeline`).
DAGS = _HOME / "dags"
DAGS.mkdir(exist_ok=True)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")  # the DAG runs defer, as the demo's do
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _migrate() -> None:
    if (_HOME / ".migrated").exists():
        return
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    (_HOME / ".migrated").touch()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) under an isolated AIRFLOW_HOME."""
    _migrate()
    return _HOME


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """A real moto S3 server in its own process; yields its endpoint URL (http://127.0.0.1:PORT)."""
    with running_moto(["-m", "moto.server", "-H", "127.0.0.1", "-p"]) as url:
        yield url


@contextlib.contextmanager
def running_moto(args: list[str]):
    """Run ``python <args> PORT`` (a moto S3 server) until it answers; yields its endpoint URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, *args, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server {args} did not start") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_server, request):
    """A fresh bucket on the moto server; yields (endpoint_url, bucket_name)."""
    import boto3

    name = "mlops-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return moto_server, name


@pytest.fixture
def aws_connection(moto_server, monkeypatch) -> str:
    """An Airflow AWS connection (from the environment) whose extra points at the moto server."""
    import json

    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_TEST_S3", json.dumps(conn))
    return "mlops_test_s3"


DAG_FILE = """from airflow_mlops.factories import build_monitor_dag, build_training_dag, load_pipeline_config

config = load_pipeline_config({path!r})
training = build_training_dag(config)
monitor = build_monitor_dag(config) if config.monitor else None
"""


@pytest.fixture
def pipeline(airflow_db, tmp_path):
    """Write a pipeline YAML and its DAG file; ``make(config_dict) -> (config, training_dag)``; ``make.monitor``
    holds the monitor DAG of the last pipeline made with a monitor section."""
    import yaml

    from airflow_mlops.factories import build_monitor_dag, build_training_dag, load_pipeline_config

    written: list[Path] = []

    def make(config: dict):
        path = tmp_path / f"{config['pipeline']}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        dag_file = DAGS / f"test_{config['pipeline']}.py"
        dag_file.write_text(DAG_FILE.format(path=str(path)))
        written.append(dag_file)
        loaded = load_pipeline_config(path)
        if loaded.monitor:
            make.monitor = build_monitor_dag(loaded)
        return loaded, build_training_dag(loaded)

    yield make
    for dag_file in written:
        dag_file.unlink(missing_ok=True)


def run_dag(dag, ds: str):
    """Run (or clear and re-run) the DagRun of ``dag`` for ``ds`` with dag.test(); returns (run, {task_id: state})."""
    from datetime import datetime

    when = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    # run_after fixed to the logical date: the run id is stable, so a second call clears and re-runs that run.
    run = dag.test(logical_date=when, run_after=when)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.fixture
def model_server():
    """Start ``airflow-mlops serve`` on 127.0.0.1; ``start(root_uri, pipeline)`` returns an httpx client.

    Each server writes ahead to its own folder (``wal_dir``, a fresh temporary one unless given), so no test ships
    another's rows; it runs ``workers`` worker processes (1 unless given) in a process group of its own, and
    ``args`` are added to its command line. ``start.procs`` holds the processes (last started last)."""
    import httpx

    procs: list[subprocess.Popen] = []
    clients = []
    wal_root = Path(tempfile.mkdtemp(prefix="mlops-test-wal-"))

    def start(
        root_uri: str,
        pipeline: str,
        *,
        require_model: bool = True,
        wal_dir: Path | None = None,
        env: dict | None = None,
        workers: int = 1,
        args: list[str] = (),
    ):
        port = _free_port()
        wal_dir = wal_dir or Path(tempfile.mkdtemp(dir=wal_root))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_mlops.cli",
                "serve",
                "--artifact-root",
                root_uri,
                "--pipeline",
                pipeline,
                "--port",
                str(port),
                "--poll-seconds",
                "0.3",
                "--flush-seconds",
                "0.3",
                "--wal-dir",
                str(wal_dir),
                "--workers",
                str(workers),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its workers too can be killed at once (os.killpg)
        )
        procs.append(proc)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        clients.append(client)
        deadline = time.monotonic() + 60
        while True:
            try:
                status = client.get("/health").status_code
                if status == 200 or (status == 503 and not require_model):
                    return client
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"model server exited: {proc.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("model server did not become healthy")
            time.sleep(0.2)

    start.procs = procs
    yield start
    for client in clients:
        client.close()
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # a worker left behind by a killed supervisor
            os.killpg(proc.pid, 9)
    shutil.rmtree(wal_root, ignore_errors=True)


# The longest files, longest first (`--durations` of `make test`): pytest-xdist hands files out in collection order
# (`--dist loadfile --no-loadscope-reorder`), so these start at once on separate workers and the short files fill in
# around them, instead of one of them starting last and holding up the end of the run.
LONGEST_FIRST = (
    "tests/integration/test_team_airflow.py",
    "tests/integration/test_closed_loop.py",
    "tests/integration/test_model_server.py",
    "tests/integration/test_canary.py",
    "tests/browser/test_ops_ui.py",
    "tests/integration/test_training_dag.py",
    "tests/integration/test_kserve.py",
    "tests/integration/test_kubernetes_training_dag.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
