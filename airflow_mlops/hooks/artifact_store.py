"""Airflow's way into the artifact store: S3 clients come from the Amazon provider's hook."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.factories.schema import DEFAULT_AWS_CONN_ID
from airflow_mlops.store.artifacts import ArtifactStore


class ArtifactStoreHook(BaseHook):
    """Open the artifact store of a deployment.

    The root comes from ``artifact_root`` or from an ``mlops_artifacts`` connection whose extra holds
    ``artifact_root`` and optionally ``aws_conn_id``. ``s3://`` roots get their boto3 client from
    :class:`~airflow.providers.amazon.aws.hooks.s3.S3Hook`, so ``endpoint_url`` in the AWS
    connection's extra serves any S3-compatible store.

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

    def get_store(self) -> ArtifactStore:
        """The store at the configured root; an ``s3://`` root talks through the AWS connection's client."""
        root, aws_conn_id = self.artifact_root, self.aws_conn_id
        if not root:
            conn = self.get_connection(self.mlops_conn_id or self.default_conn_name)
            extra = conn.extra_dejson
            root = extra.get("artifact_root")
            aws_conn_id = extra.get("aws_conn_id", aws_conn_id)
            if not root:
                raise MlopsError(f"Connection {conn.conn_id!r} has no 'artifact_root' in its extra.")
        client = None
        if root.startswith("s3://"):
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            client = S3Hook(aws_conn_id=aws_conn_id).get_conn()
        return ArtifactStore.from_uri(root, s3_client=client)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "login", "password", "port"],
            "placeholders": {"extra": '{"artifact_root": "s3://bucket/mlops", "aws_conn_id": "aws_default"}'},
        }
