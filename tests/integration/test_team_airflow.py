"""The closed loop on a team's Airflow: `scripts/demo.sh --team` (PostgreSQL, CeleryExecutor with Redis, two
Celery workers, api-server, scheduler, dag-processor and triggerer as separate processes, S3 on a moto server
reached through an mlops_artifacts connection). A Celery worker is killed with SIGKILL while it runs the first
training; Airflow fails the orphaned task after its heartbeat timeout and retries it on the other worker, and the
loop ends with no duplicate artifacts or registry entries."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DEMO_REDIS_DB = 5  # make demo-team's


@contextlib.contextmanager
def redis_db_of_its_own():
    """A Redis DB number no other run holds, for the Celery broker (demo.sh flushes it first): claimed by a key in DB 0
    (SET NX, expiring after the demo's timeout) and given back after. Two runs on one DB take each other's tasks."""
    import redis

    claims = redis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        databases = int(claims.config_get("databases")["databases"])
    except (redis.ResponseError, KeyError):
        databases = 16
    token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex}"
    for number in range(1, databases):
        key = f"airflow-mlops-test:redis-db:{number}"
        if number != DEMO_REDIS_DB and claims.set(key, token, nx=True, ex=1800):
            break
    else:
        pytest.fail(f"every Redis DB (1 to {databases - 1}) is held by another run")
    try:
        yield number
    finally:  # given back only if still this run's
        claims.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end", 1, key, token)


@pytest.fixture
def database():
    """The name of a PostgreSQL database for this run (demo.sh makes it afresh), dropped afterwards, passed or not."""
    db = f"mlops_test_{os.getpid()}"
    yield db
    drop = f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", drop], check=False, capture_output=True)


def kill_worker_running(db: str, task_id: str, pids_file: Path, stop: threading.Event, killed: list) -> None:
    """Wait until the first try of ``task_id`` of the training DAG runs, then SIGKILL the Celery worker (and all its
    processes) whose process tree holds it.

    Not while any task instance is queued: a worker killed between taking a task from the broker and starting it
    (its state still queued) loses that task until the scheduler's task_queued_timeout (10 minutes) requeues it,
    whereas the tries a worker is running fail by their heartbeat timeout and are retried, which is what this tests."""
    import psutil
    import psycopg2

    while not stop.is_set():
        time.sleep(0.1)
        try:
            with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=db) as conn, conn.cursor() as cur:
                cur.execute(
                    "select pid from task_instance where dag_id = 'mlops_churn_training' and task_id = %s "
                    "and state = 'running' and try_number = 1 and pid is not null "
                    "and not exists (select 1 from task_instance where state = 'queued')",
                    (task_id,),
                )
                row = cur.fetchone()
        except psycopg2.Error:
            continue  # the database is being made
        if not row or not pids_file.exists():
            continue
        for worker in map(int, pids_file.read_text().split()):
            try:
                tree = [psutil.Process(worker), *psutil.Process(worker).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            if any(p.pid == row[0] for p in tree):
                for process in tree:
                    with contextlib.suppress(ProcessLookupError):  # one that ended meanwhile
                        os.kill(process.pid, signal.SIGKILL)
                killed.append(worker)
                return


def test_closed_loop_on_postgres_and_celery_survives_a_killed_worker(tmp_path, moto_server, database):
    import psycopg2

    # Everything this run writes is its own: the Airflow home, the exports, the database, the Redis DB, the S3 server.
    home, db = tmp_path / "airflow", database
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "MLOPS_", "DEMO_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "DEMO_DATA_DIR": str(tmp_path / "data"),
        "DEMO_PG_DB": db,
        "DEMO_S3_ENDPOINT": moto_server,
        "DEMO_HEARTBEAT_TIMEOUT": "20",
    }
    stop, killed = threading.Event(), []
    killer = threading.Thread(
        target=kill_worker_running, args=(db, "training.train", home / "demo-logs" / "worker-pids", stop, killed), daemon=True
    )
    killer.start()
    try:
        with redis_db_of_its_own() as redis_db:
            done = subprocess.run(
                ["bash", "scripts/demo.sh", "--team"],
                cwd=REPO,
                env=env | {"DEMO_REDIS_DB": str(redis_db)},
                capture_output=True,
                text=True,
                timeout=1500,
            )
    finally:
        stop.set()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert killed, "a worker was killed while it ran the first training"

    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=db) as conn, conn.cursor() as cur:
        cur.execute("select run_type, state from dag_run where dag_id = 'mlops_churn_training' order by id")
        runs = cur.fetchall()
        cur.execute(
            "select try_number, state from task_instance where dag_id = 'mlops_churn_training' and task_id = 'training.train' "
            "and run_id like 'scheduled%%'"
        )
        [(tries, state)] = cur.fetchall()
    assert runs == [("scheduled", "success"), ("asset_triggered", "success")], runs
    assert (tries, state) == (2, "success"), "the killed try was failed by its heartbeat timeout and retried"

    import boto3

    client = boto3.client(
        "s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="demo", aws_secret_access_key="demo"
    )
    store = ArtifactStore.from_uri("s3://mlops-demo/mlops", s3_client=client)
    doc = ModelRegistry(store, "churn").load()
    assert len(doc["versions"]) == 2, "v1 once (its retried training wrote the same version) and v2"
    models = {key.split("/")[2] for key in store.list("models/churn")}
    assert models == set(doc["versions"]), "no model directory beside the registered ones"
    assert len([k for k in store.list("models/churn") if k.endswith("/model.txt")]) == 2
    events = read_events(store, "churn")
    ids = [e["event_id"] for e in events if "event_id" in e]
    assert len(ids) == len(set(ids)), "no event recorded twice"
    assert [e["kind"] for e in events].count("retrain_request") == 1
    promoted = [e for e in events if e["kind"] == "promote"]
    assert [e["version"] for e in promoted][-1] == doc["aliases"]["production"]["version"]
    assert "v2 promoted" in done.stdout
