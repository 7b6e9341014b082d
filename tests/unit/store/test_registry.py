import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry


def open_store(root: str, endpoint: str | None) -> ArtifactStore:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1") if endpoint else None
    return ArtifactStore.from_uri(root, client)


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path):
    if request.param == "local":
        return f"file://{tmp_path}/root", None
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/mlops", endpoint


def bump(doc):
    doc.setdefault("counter", 0)
    doc["counter"] += 1


def _writer(root: str, endpoint: str | None, worker: int, n: int) -> None:
    registry = ModelRegistry(open_store(root, endpoint), "churn")
    for i in range(n):
        registry.update(bump)
        registry.register(f"w{worker}-{i}", status="blessed", metrics={}, lineage={}, reason="test")


class TestModelRegistry:
    def test_register_is_idempotent(self, location):
        registry = ModelRegistry(open_store(*location), "churn")
        first = registry.register("v1", status="blessed", metrics={"auc": 0.8}, lineage={"d": 1}, reason="good")
        again = registry.register("v1", status="rejected", metrics={"auc": 0.1}, lineage={}, reason="retry")
        assert again == first
        doc = registry.load()
        assert doc["revision"] == 1 and doc["last_blessed"] == "v1" and list(doc["versions"]) == ["v1"]

    def test_aliases(self, location):
        registry = ModelRegistry(open_store(*location), "churn")
        registry.register("v1", status="blessed", metrics={}, lineage={}, reason="")
        registry.register("v2", status="blessed", metrics={}, lineage={}, reason="")
        registry.register("bad", status="rejected", metrics={}, lineage={}, reason="worse")
        registry.set_alias("production", "v1")
        revision = registry.load()["revision"]
        registry.set_alias("production", "v1")
        assert registry.load()["revision"] == revision, "re-setting an alias writes nothing"
        registry.set_alias("production", "v2")
        assert registry.production() == "v2" and registry.load()["previous_production"] == "v1"
        with pytest.raises(MlopsError, match="not a registered, accepted version"):
            registry.set_alias("production", "bad")
        with pytest.raises(MlopsError, match="not a registered"):
            registry.set_alias("canary", "v9")
        registry.set_alias("production", None)
        assert registry.production() is None

    def test_unknown_status(self, location):
        with pytest.raises(MlopsError, match="Unknown registry status"):
            ModelRegistry(open_store(*location), "churn").register("v1", status="great", metrics={}, lineage={}, reason="")

    def test_concurrent_threads_lose_no_update(self, location):
        workers, n = 8, 6
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda w: _writer(*location, w, n), range(workers)))
        doc = ModelRegistry(open_store(*location), "churn").load()
        assert doc["counter"] == workers * n
        assert len(doc["versions"]) == workers * n
        assert doc["revision"] == 2 * workers * n

    def test_concurrent_processes_lose_no_update(self, location):
        workers, n = 4, 5
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_writer, args=(*location, w, n)) for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert all(p.exitcode == 0 for p in procs)
        doc = ModelRegistry(open_store(*location), "churn").load()
        assert doc["counter"] == workers * n and len(doc["versions"]) == workers * n
        assert doc["revision"] == 2 * workers * n
