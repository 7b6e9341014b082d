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

    def test_a_missing_connection_names_itself_and_how_to_define_it(self):
        with pytest.raises(
            MlopsError, match=r"connection 'nowhere' \(type mlops_artifacts\) could not be read.*AIRFLOW_CONN_NOWHERE"
        ):
            ArtifactStoreHook(mlops_conn_id="nowhere").get_store()

    def test_an_unreachable_s3_root_names_the_connections_and_the_endpoint(self, monkeypatch):
        aws = {
            "conn_type": "aws",
            "login": "k",
            "password": "s",
            "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_DEAD_S3", json.dumps(aws))
        extra = {"artifact_root": "s3://bucket/mlops", "aws_conn_id": "dead_s3"}
        monkeypatch.setenv("AIRFLOW_CONN_TEAM", json.dumps({"conn_type": "mlops_artifacts", "extra": extra}))
        with pytest.raises(MlopsError) as err:
            ArtifactStoreHook(mlops_conn_id="team").get_store()
        message = str(err.value)
        assert "artifact root s3://bucket/mlops through AWS connection 'dead_s3' (from connection 'team')" in message
        assert "endpoint http://127.0.0.1:9" in message

    def test_test_connection(self, tmp_path, s3_bucket, aws_connection, monkeypatch):
        _, bucket = s3_bucket
        ok, message = ArtifactStoreHook(artifact_root=f"s3://{bucket}/mlops", aws_conn_id=aws_connection).test_connection()
        assert ok and message == f"Artifact store s3://{bucket}/mlops is reachable"
        assert ArtifactStoreHook(artifact_root=str(tmp_path)).test_connection()[0] is True
        ok, message = ArtifactStoreHook(artifact_root=str(tmp_path / "missing")).test_connection()
        assert not ok and message.endswith("is not a folder on this machine")
        ok, message = ArtifactStoreHook(artifact_root="s3://no-such-bucket/x", aws_conn_id=aws_connection).test_connection()
        assert not ok and "Cannot reach the artifact root s3://no-such-bucket/x" in message and "404" in message
