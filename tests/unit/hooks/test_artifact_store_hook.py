from __future__ import annotations

import json

import boto3
import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.hooks.artifact_store import ArtifactStoreHook
from airflow_mlops.store.artifacts import LocalArtifactStore, S3ArtifactStore


def read_object(endpoint: str, bucket: str, key: str) -> bytes:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").get_object(Bucket=bucket, Key=key)["Body"].read()


class TestArtifactStoreHook:
    def test_s3_client_comes_from_the_aws_connection(self, s3_bucket, aws_connection):
        endpoint, bucket = s3_bucket
        store = ArtifactStoreHook(artifact_root=f"s3://{bucket}/mlops", aws_conn_id=aws_connection).get_store()
        assert isinstance(store, S3ArtifactStore)
        store.write_json("registry/p.json", {"ok": True})
        assert json.loads(read_object(endpoint, bucket, "mlops/registry/p.json")) == {"ok": True}
        assert store.read_json("registry/p.json") == {"ok": True}

    def test_local_root_needs_no_connection(self, tmp_path):
        store = ArtifactStoreHook(artifact_root=str(tmp_path), aws_conn_id=None).get_store()
        assert isinstance(store, LocalArtifactStore) and store.root == tmp_path.resolve()
        store.write_text("a.txt", "x")
        assert (tmp_path / "a.txt").read_text() == "x"

    def test_constructor_does_no_lookups(self):
        hook = ArtifactStoreHook(mlops_conn_id="no_such_connection", aws_conn_id="no_such_aws_connection")
        assert (hook.artifact_root, hook.mlops_conn_id) == (None, "no_such_connection")

    def test_root_from_the_default_mlops_connection(self, tmp_path, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_MLOPS_DEFAULT", json.dumps({"conn_type": "mlops_artifacts", "extra": {"artifact_root": str(tmp_path)}})
        )
        assert ArtifactStoreHook().get_store().root == tmp_path.resolve()

    def test_s3_root_and_aws_connection_from_an_mlops_connection(self, s3_bucket, aws_connection, monkeypatch):
        endpoint, bucket = s3_bucket
        extra = {"artifact_root": f"s3://{bucket}/team", "aws_conn_id": aws_connection}
        monkeypatch.setenv("AIRFLOW_CONN_TEAM_ARTIFACTS", json.dumps({"conn_type": "mlops_artifacts", "extra": extra}))
        ArtifactStoreHook(mlops_conn_id="team_artifacts").get_store().write_text("k.txt", "hello")
        assert read_object(endpoint, bucket, "team/k.txt") == b"hello"

    def test_connection_without_root(self, monkeypatch):
        monkeypatch.setenv("AIRFLOW_CONN_EMPTY", json.dumps({"conn_type": "mlops_artifacts", "extra": {}}))
        with pytest.raises(MlopsError, match="no 'artifact_root'"):
            ArtifactStoreHook(mlops_conn_id="empty").get_store()
