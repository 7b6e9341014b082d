from __future__ import annotations

import re

import boto3
import pytest

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.store.artifacts import ArtifactStore, LocalArtifactStore, S3ArtifactStore


@pytest.fixture(params=[pytest.param("local", id="local"), pytest.param("s3", id="s3")])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore.from_uri(f"file://{tmp_path}/root")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore.from_uri(f"s3://{bucket}/team/mlops", boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"))


class TestArtifactStore:
    def test_round_trip_and_list(self, store):
        store.write_json("models/p/v1/metrics.json", {"b": 1, "a": [1, 2]})
        store.write_text("models/p/v1/model.txt", "tree ü")
        store.write_bytes("models/p/v2/model.txt", b"other")
        store.write_bytes("models/pq/v1/model.txt", b"not under models/p")
        assert store.read_json("models/p/v1/metrics.json") == {"a": [1, 2], "b": 1}
        assert store.read_bytes("models/p/v1/metrics.json") == b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
        assert store.read_text("models/p/v1/model.txt") == "tree ü"
        assert store.list("models/p") == ["models/p/v1/metrics.json", "models/p/v1/model.txt", "models/p/v2/model.txt"]
        assert store.list("models/p/") == store.list("models/p")
        assert store.list("models/q") == []
        assert len(store.list("")) == 4
        assert store.exists("models/p/v2/model.txt") and not store.exists("models/p/v3/model.txt")

    def test_write_replaces(self, store):
        store.write_text("a/b.txt", "one")
        store.write_text("a/b.txt", "two")
        assert store.read_text("a/b.txt") == "two"
        assert store.list("a") == ["a/b.txt"], "no temp files left behind"

    def test_missing_artifact_names_its_uri(self, store):
        with pytest.raises(ArtifactNotFound, match=re.escape(store.uri("nope/x.json"))):
            store.read_bytes("nope/x.json")

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param("/abs", id="absolute"),
            pytest.param("a/../b", id="dotdot"),
            pytest.param("..", id="parent"),
            pytest.param("", id="empty"),
        ],
    )
    def test_bad_keys_rejected(self, store, key):
        with pytest.raises(MlopsError, match="Invalid artifact key"):
            store.write_bytes(key, b"x")
        with pytest.raises(MlopsError, match="Invalid artifact key"):
            store.read_bytes(key)

    def test_upload_and_download_dirs(self, store, tmp_path):
        src = tmp_path / "src"
        (src / "train").mkdir(parents=True)
        (src / "train" / "part-0.parquet").write_bytes(b"p0")
        (src / "transform.json").write_text("{}")
        keys = store.upload_dir(src, "features/p/f1")
        assert keys == ["features/p/f1/train/part-0.parquet", "features/p/f1/transform.json"]
        assert store.list("features/p/f1") == keys
        paths = store.download_prefix("features/p/f1", tmp_path / "dst")
        assert sorted(p.relative_to(tmp_path / "dst").as_posix() for p in paths) == ["train/part-0.parquet", "transform.json"]
        assert (tmp_path / "dst" / "train" / "part-0.parquet").read_bytes() == b"p0"

    def test_compare_and_swap(self, store):
        assert store.read_versioned("registry/p.json") == (None, None)
        assert not store.write_if_match("registry/p.json", b"x", "some-token"), "a token cannot match an absent key"
        assert store.write_if_match("registry/p.json", b"one", None)
        assert not store.write_if_match("registry/p.json", b"again", None), "create-if-absent must fail when present"
        data, token = store.read_versioned("registry/p.json")
        assert data == b"one" and token
        assert store.write_if_match("registry/p.json", b"two", token)
        assert not store.write_if_match("registry/p.json", b"stale", token), "a stale token must lose"
        assert store.read_bytes("registry/p.json") == b"two"
        assert store.list("registry") == ["registry/p.json"], "lock files are not artifacts"


class TestLocalArtifactStore:
    def test_local_path(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        store.write_text("models/p/v1/model.txt", "tree")
        assert store.local_path("models/p/v1/model.txt") == tmp_path.resolve() / "models/p/v1/model.txt"
        assert store.uri("models/p/v1/model.txt") == f"file://{tmp_path.resolve()}/models/p/v1/model.txt"

    def test_token_is_the_content_hash(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        store.write_bytes("k", b"abc")
        assert store.read_versioned("k") == (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


class TestS3ArtifactStore:
    def test_keys_live_under_the_prefix(self, s3_bucket):
        endpoint, bucket = s3_bucket
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        store = ArtifactStore.from_uri(f"s3://{bucket}/team/mlops/", client)
        store.write_text("a/b.txt", "x")
        assert client.get_object(Bucket=bucket, Key="team/mlops/a/b.txt")["Body"].read() == b"x"
        assert store.root_uri == f"s3://{bucket}/team/mlops"
        assert store.local_path("a/b.txt") is None
        assert store.read_versioned("a/b.txt")[1] == client.head_object(Bucket=bucket, Key="team/mlops/a/b.txt")["ETag"]


class TestFromUri:
    @pytest.mark.parametrize(
        "uri",
        [
            pytest.param("file:///tmp/x", id="file-uri"),
            pytest.param("/tmp/x", id="absolute"),
            pytest.param("relative/dir", id="relative"),
        ],
    )
    def test_local(self, uri):
        store = ArtifactStore.from_uri(uri)
        assert isinstance(store, LocalArtifactStore) and store.root.is_absolute()
        assert store.root_uri == f"file://{store.root}"

    def test_s3_without_client_uses_the_credential_chain(self, monkeypatch):
        monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", "http://127.0.0.1:1")
        store = ArtifactStore.from_uri("s3://bucket/prefix/")
        assert isinstance(store, S3ArtifactStore)
        assert store.uri("a/b") == "s3://bucket/prefix/a/b"
        assert store.client.meta.endpoint_url == "http://127.0.0.1:1"

    @pytest.mark.parametrize(
        "uri",
        [
            pytest.param("gs://bucket", id="gcs"),
            pytest.param("http://host/x", id="http"),
            pytest.param("s3://", id="s3-no-bucket"),
        ],
    )
    def test_unknown_scheme(self, uri):
        with pytest.raises(MlopsError, match=re.escape(uri)):
            ArtifactStore.from_uri(uri)
