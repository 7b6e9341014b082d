from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from conftest import running_moto

from airflow_mlops.exceptions import MlopsError, RegistryConflict
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry

# moto's server is threaded and checks If-Match / If-None-Match before it writes, without a lock: two
# racing conditional writes with the same token can both succeed (seen about once in 300 rounds of 16
# racers). Real S3 makes the check and the write atomic; this server, one request at a time, gives the
# concurrency tests that guarantee.
SERIAL_MOTO = """import sys
from werkzeug.serving import run_simple
from moto.server import DomainDispatcherApplication, create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)
"""


@pytest.fixture(scope="module")
def serial_moto_server():
    """A moto S3 server over HTTP that serves one request at a time; yields its endpoint URL."""
    with running_moto(["-c", SERIAL_MOTO]) as url:
        yield url


def open_store(root: str, endpoint: str | None) -> ArtifactStore:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1") if endpoint else None
    return ArtifactStore.from_uri(root, client)


@pytest.fixture(params=[pytest.param("local", id="local"), pytest.param("s3", id="s3")])
def location(request, tmp_path) -> tuple[str, str | None]:
    """(root URI, S3 endpoint or None) of an empty store."""
    if request.param == "local":
        return f"file://{tmp_path}/root", None
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/mlops", endpoint


@pytest.fixture(params=[pytest.param("local", id="local"), pytest.param("s3", id="s3")])
def contended_location(request, tmp_path) -> tuple[str, str | None]:
    """Like ``location``, with S3 on a server whose conditional writes are atomic (see SERIAL_MOTO)."""
    if request.param == "local":
        return f"file://{tmp_path}/root", None
    endpoint = request.getfixturevalue("serial_moto_server")
    bucket = f"race-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/mlops", endpoint


def bump(doc: dict) -> None:
    doc["counter"] = doc.get("counter", 0) + 1


def _writer(root: str, endpoint: str | None, worker: int, n: int) -> None:
    registry = ModelRegistry(open_store(root, endpoint), "churn")
    for i in range(n):
        registry.update(bump)
        registry.register(f"w{worker}-{i}", status="blessed", metrics={"i": i}, lineage={}, reason="test")


def assert_nothing_lost(location: tuple[str, str | None], workers: int, n: int) -> None:
    doc = ModelRegistry(open_store(*location), "churn").load()
    assert doc["counter"] == workers * n
    assert sorted(doc["versions"]) == sorted(f"w{w}-{i}" for w in range(workers) for i in range(n))
    assert doc["revision"] == 2 * workers * n


class TestModelRegistry:
    def test_empty(self, location):
        registry = ModelRegistry(open_store(*location), "churn")
        assert registry.load() == {"pipeline": "churn", "revision": 0, "versions": {}, "aliases": {}, "last_blessed": None}
        assert registry.production() is None and registry.get("v1") is None

    def test_register_is_idempotent(self, location):
        registry = ModelRegistry(open_store(*location), "churn")
        first = registry.register("v1", status="blessed", metrics={"auc": 0.8}, lineage={"d": 1}, reason="good")
        assert first["status"] == "blessed" and first["metrics"] == {"auc": 0.8} and first["registered_at"]
        again = registry.register("v1", status="rejected", metrics={"auc": 0.1}, lineage={}, reason="retry")
        assert again == first == registry.get("v1")
        doc = registry.load()
        assert doc["revision"] == 1 and doc["last_blessed"] == "v1" and list(doc["versions"]) == ["v1"]

    def test_rejected_is_not_last_blessed(self, location):
        registry = ModelRegistry(open_store(*location), "churn")
        registry.register("v1", status="blessed", metrics={}, lineage={}, reason="")
        registry.register("v2", status="rejected", metrics={}, lineage={}, reason="worse")
        assert registry.load()["last_blessed"] == "v1"

    def test_aliases(self, location):
        registry = ModelRegistry(open_store(*location), "churn")
        for version, status in [("v1", "blessed"), ("v2", "blessed"), ("bad", "rejected")]:
            registry.register(version, status=status, metrics={}, lineage={}, reason="")
        registry.set_alias("production", "v1", reason="first")
        revision = registry.load()["revision"]
        registry.set_alias("production", "v1", reason="first")
        assert registry.load()["revision"] == revision, "re-setting an alias to the same value writes nothing"
        doc = registry.set_alias("production", "v2", reason="better")
        assert doc["aliases"]["production"] == {"version": "v2", "reason": "better"}
        assert registry.production() == "v2" and registry.load()["previous_production"] == "v1"
        registry.set_alias("canary", "v1", weight=10)
        assert registry.alias("canary") == "v1" and registry.load()["previous_production"] == "v1"
        with pytest.raises(MlopsError, match="not a registered, accepted version"):
            registry.set_alias("production", "bad")
        with pytest.raises(MlopsError, match="not a registered"):
            registry.set_alias("canary", "v9")
        assert registry.production() == "v2" and registry.alias("canary") == "v1", "a refused alias changes nothing"
        registry.set_alias("production", None)
        assert registry.production() is None and "production" not in registry.load()["aliases"]

    def test_unknown_status(self, location):
        with pytest.raises(MlopsError, match="Unknown registry status"):
            ModelRegistry(open_store(*location), "churn").register("v1", status="great", metrics={}, lineage={}, reason="")

    def test_gives_up_when_always_beaten(self, location):
        registry, rival = (ModelRegistry(open_store(*location), "churn") for _ in range(2))

        def beaten(doc: dict) -> None:
            rival.update(bump)  # another writer lands between our read and our write, every time
            doc["mine"] = True

        with pytest.raises(RegistryConflict, match="after 3 conflicting attempts"):
            registry.update(beaten, max_attempts=3)
        doc = registry.load()
        assert doc["counter"] == 3 and "mine" not in doc

    def test_concurrent_threads_lose_no_update(self, contended_location):
        workers, n = 8, 5  # 10 updates per thread: 5 counter bumps, 5 registrations
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda w: _writer(*contended_location, w, n), range(workers)))
        assert_nothing_lost(contended_location, workers, n)

    def test_concurrent_processes_lose_no_update(self, contended_location):
        workers, n = 4, 5
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_writer, args=(*contended_location, w, n)) for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * workers
        assert_nothing_lost(contended_location, workers, n)
