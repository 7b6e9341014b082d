import boto3
import pytest

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError
from airflow_mlops.store.artifacts import ArtifactStore, LocalArtifactStore, S3ArtifactStore


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore.from_uri(f"file://{tmp_path}/root")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore.from_uri(f"s3://{bucket}/team/mlops", boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"))


class TestArtifactStore:
    def test_round_trip_and_list(self, store):
        store.write_json("models/p/v1/metrics.json", {"b": 1, "a": [1, 2]})
        store.write_text("models/p/v1/model.txt", "tree")
        store.write_bytes("models/p/v2/model.txt", b"other")
        assert store.read_json("models/p/v1/metrics.json") == {"a": [1, 2], "b": 1}
        assert store.read_text("models/p/v1/model.txt") == "tree"
        assert store.list("models/p") == ["models/p/v1/metrics.json", "models/p/v1/model.txt", "models/p/v2/model.txt"]
        assert store.list("models/q") == []
        assert store.exists("models/p/v2/model.txt") and not store.exists("models/p/v3/model.txt")

    def test_missing_artifact_names_its_uri(self, store):
        with pytest.raises(ArtifactNotFound, match=store.uri("nope/x.json").replace("/", ".")):
            store.read_bytes("nope/x.json")

    @pytest.mark.parametrize("key", [pytest.param("/abs", id="absolute"), pytest.param("a/../b", id="dotdot"), pytest.param("", id="empty")])
    def test_bad_keys_rejected(self, store, key):
        with pytest.raises(MlopsError, match="Invalid artifact key"):
            store.write_bytes(key, b"x")

    def test_upload_and_download_dirs(self, store, tmp_path):
        src = tmp_path / "src"
        (src / "train").mkdir(parents=True)
        (src / "train" / "part-0.parquet").write_bytes(b"p0")
        (src / "transform.json").write_text("{}")
        keys = store.upload_dir(src, "features/p/f1")
        assert keys == ["features/p/f1/train/part-0.parquet", "features/p/f1/transform.json"]
        paths = store.download_prefix("features/p/f1", tmp_path / "dst")
        assert sorted(p.relative_to(tmp_path / "dst").as_posix() for p in paths) == ["train/part-0.parquet", "transform.json"]
        assert (tmp_path / "dst" / "train" / "part-0.parquet").read_bytes() == b"p0"

    def test_compare_and_swap(self, store):
        assert store.read_versioned("registry/p.json") == (None, None)
        assert store.write_if_match("registry/p.json", b"one", None)
        assert not store.write_if_match("registry/p.json", b"again", None), "create-if-absent must fail when present"
        data, token = store.read_versioned("registry/p.json")
        assert data == b"one"
        assert store.write_if_match("registry/p.json", b"two", token)
        assert not store.write_if_match("registry/p.json", b"stale", token), "a stale token must lose"
        assert store.read_bytes("registry/p.json") == b"two"


class TestFromUri:
    @pytest.mark.parametrize("uri", ["file:///tmp/x", "/tmp/x", "relative/dir"])
    def test_local(self, uri):
        assert isinstance(ArtifactStore.from_uri(uri), LocalArtifactStore)

    def test_s3_without_client_uses_the_credential_chain(self, monkeypatch):
        monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", "http://127.0.0.1:1")
        store = ArtifactStore.from_uri("s3://bucket/prefix/")
        assert isinstance(store, S3ArtifactStore)
        assert store.uri("a/b") == "s3://bucket/prefix/a/b"
        assert store.client.meta.endpoint_url == "http://127.0.0.1:1"

    def test_unknown_scheme(self):
        with pytest.raises(MlopsError, match="Unsupported artifact root"):
            ArtifactStore.from_uri("gs://bucket")
