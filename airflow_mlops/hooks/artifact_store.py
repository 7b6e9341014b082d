"""Airflow's way into the artifact store: S3 clients come from the Amazon provider's hook."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.store.artifacts import ArtifactStore


class ArtifactStoreHook(BaseHook):
    """Open the artifact store of a deployment.

    The root comes from ``artifact_root`` or from an ``mlops_artifacts`` connection whose extra holds
    ``artifact_root`` and optionally ``aws_conn_id`` (the connection form's two fields, declared in
    ``provider.yaml``). ``s3://`` roots get their boto3 client from
    :class:`~airflow.providers.amazon.aws.hooks.s3.S3Hook`, so ``endpoint_url`` in the AWS connection's extra
    serves any S3-compatible store. Opening an ``s3://`` root asks for its bucket once: a connection that is
    missing or cannot reach it fails right there, naming the connections and what was tried.

    :param artifact_root: ``file://...``, a local path or ``s3://bucket/prefix``.
    :param aws_conn_id: AWS connection for ``s3://`` roots.
    :param mlops_conn_id: connection to read the root from when ``artifact_root`` is not given.
    """

    conn_name_attr = "mlops_conn_id"
    default_conn_name = "mlops_default"
    conn_type = "mlops_artifacts"
    hook_name = "ML artifact store"

    def __init__(
        self, artifact_root: str | None = None, aws_conn_id: str | None = DEFAULT_AWS_CONN_ID, mlops_conn_id: str | None = None
    ) -> None:
        super().__init__()
        self.artifact_root = artifact_root
        self.aws_conn_id = aws_conn_id
        self.mlops_conn_id = mlops_conn_id

    def get_conn(self) -> ArtifactStore:
        return self.get_store()

    def location(self) -> tuple[str, str | None]:
        """The root and the AWS connection that reaches it: given, or from the ``mlops_artifacts`` connection."""
        if self.artifact_root:
            return self.artifact_root, self.aws_conn_id
        conn_id = self.mlops_conn_id or self.default_conn_name
        try:
            conn = self.get_connection(conn_id)
        except Exception as err:  # AirflowNotFoundException, or a secrets backend that failed
            raise MlopsError(
                f"Artifact store connection {conn_id!r} (type mlops_artifacts) could not be read: {err}. "
                f"Define it (e.g. AIRFLOW_CONN_{conn_id.upper()}) with 'artifact_root' in its extra, or give artifact_root."
            ) from err
        extra = conn.extra_dejson

        def field(name: str) -> Any:  # the form may store a field under its prefixed name
            return extra.get(name) or extra.get(f"extra__{self.conn_type}__{name}")

        if not field("artifact_root"):
            raise MlopsError(f"Connection {conn_id!r} has no 'artifact_root' in its extra (the form's Artifact root field).")
        return field("artifact_root"), field("aws_conn_id") or self.aws_conn_id

    def get_store(self) -> ArtifactStore:
        """The store at the configured root; an ``s3://`` root talks through the AWS connection's client."""
        root, aws_conn_id = self.location()
        if not root.startswith("s3://"):
            return ArtifactStore.from_uri(root)
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        where = f"artifact root {root} through AWS connection {aws_conn_id!r}"
        if self.mlops_conn_id and not self.artifact_root:
            where += f" (from connection {self.mlops_conn_id!r})"
        client = None
        try:
            client = S3Hook(aws_conn_id=aws_conn_id).get_conn()
            client.head_bucket(Bucket=root.removeprefix("s3://").partition("/")[0])
        except Exception as err:  # a boto3 error alone would not say which connection was used
            endpoint = client.meta.endpoint_url if client is not None else "not reached"
            raise MlopsError(f"Cannot reach the {where} (endpoint {endpoint}): {err}") from err
        return ArtifactStore.from_uri(root, s3_client=client)

    def test_connection(self) -> tuple[bool, str]:
        """The connection form's Test button: open the store and list one key (a local root must be a folder)."""
        try:
            store = self.get_store()
            if store.root_uri.startswith("file://"):
                from pathlib import Path

                folder = Path(store.root_uri.removeprefix("file://"))
                if not folder.is_dir():
                    return False, f"{store.root_uri} is not a folder on this machine"
            store.list("registry")
        except Exception as err:
            return False, str(err)
        return True, f"Artifact store {store.root_uri} is reachable"
