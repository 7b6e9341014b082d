"""What the airflow-mlops operators share: the pipeline, the artifact store, the column roles, the result branch."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import Asset, BaseOperator, Context

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID
from airflow_mlops.exceptions import MlopsError

if TYPE_CHECKING:
    from airflow_mlops.stages.data import Columns
    from airflow_mlops.store.artifacts import ArtifactStore


class ArtifactStoreMixin:
    """The pipeline's artifact store for an operator, sensor or trigger with ``artifact_root`` (or ``mlops_conn_id``,
    an ``mlops_artifacts`` connection that holds the root) and ``aws_conn_id``: opened on first use (never at parse
    time) through :class:`ArtifactStoreHook`, so ``s3://`` roots use the Airflow AWS connection."""

    artifact_root: str | None
    aws_conn_id: str | None
    mlops_conn_id: str | None = None

    def locate_store(
        self, pipeline: str, artifact_root: str | None, aws_conn_id: str | None, mlops_conn_id: str | None, task_id: str
    ) -> None:
        """Keep where the pipeline's store is; a task given neither an artifact root nor an ``mlops_artifacts``
        connection, or both, is refused when the DAG is parsed."""
        if (artifact_root is None) == (mlops_conn_id is None):
            raise MlopsError(
                f"{task_id}: give artifact_root or mlops_conn_id (an mlops_artifacts connection), exactly one of them."
            )
        self.pipeline, self.artifact_root, self.aws_conn_id, self.mlops_conn_id = (
            pipeline,
            artifact_root,
            aws_conn_id,
            mlops_conn_id,
        )

    @cached_property
    def store(self) -> ArtifactStore:
        from airflow_mlops.hooks.artifact_store import ArtifactStoreHook

        hook = ArtifactStoreHook(artifact_root=self.artifact_root, aws_conn_id=self.aws_conn_id, mlops_conn_id=self.mlops_conn_id)
        return hook.get_store()


LINEAGE = ("dataset", "features", "model")
"""What a pipeline's Assets stand for: its dataset snapshots, its feature sets, its blessed model versions."""


def lineage_asset(pipeline: str, kind: str) -> Asset:
    """The Asset of a pipeline's ``kind`` (one of :data:`LINEAGE`); each event's extra names the content id."""
    # Name only: a URI with a scheme makes Airflow load every provider's URI handlers (boto3 among them) at parse time.
    return Asset(name=f"mlops_{pipeline}_{kind}", group="mlops")


def followed_asset(name: str) -> Asset:
    """The Asset a source follows (``source.asset``): one of this package's (``mlops_...``, in its group) or any other."""
    return Asset(name=name, group="mlops") if name.startswith("mlops_") else Asset(name=name)


def asset_data_uri(name: str, extra: dict[str, Any]) -> str:
    """Where the data of an Asset event is, from its extra: a snapshot's ``dataset_uri`` (its ``data.parquet``), a
    scoring's ``output_uri`` (its ``part-*`` files) or a plain ``uri``."""
    if extra.get("dataset_uri"):
        return f"{extra['dataset_uri'].rstrip('/')}/data.parquet"
    if extra.get("output_uri"):
        folder = extra["output_uri"].rstrip("/")
        return f"{folder}/part-" if folder.startswith("s3://") else f"{folder}/part-*.parquet"
    if extra.get("uri"):
        return str(extra["uri"])
    raise MlopsError(f"The newest event of Asset {name!r} names no data (its extra has no dataset_uri, output_uri or uri).")


class SourceMixin:
    """For tasks that read the pipeline's source (``source_uri``, templated) with ``source_aws_conn_id``.

    In a run without a logical date (a retraining started by the retrain Asset, a manual trigger without one)
    ``ds`` and ``ds_nodash`` are the day the run was queued for (its ``run_after``), so a template such as
    ``data/{{ ds }}.csv`` picks that day's export.
    """

    source_uri: str | None
    source_aws_conn_id: str | None

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        if "ds" not in context and context.get("dag_run") is not None:
            day = context["dag_run"].run_after
            context.update(ds=day.strftime("%Y-%m-%d"), ds_nodash=day.strftime("%Y%m%d"))  # type: ignore[typeddict-item]
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]

    def source_client(self) -> Any:
        """A boto3 S3 client from the source's AWS connection for an ``s3://`` source, else None."""
        return source_client(self.source_uri, self.source_aws_conn_id)


def source_client(uri: str | None, aws_conn_id: str | None) -> Any:
    """A boto3 S3 client from ``aws_conn_id`` when ``uri`` is ``s3://``, else None."""
    if not uri or not uri.startswith("s3://"):
        return None
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


class MlopsBaseOperator(ArtifactStoreMixin, BaseOperator):
    """Base of the lifecycle operators.

    :param pipeline: the pipeline name; artifacts live under ``<kind>/<pipeline>/`` in the store.
    :param artifact_root: ``file://...``, a local path, or ``s3://bucket/prefix`` (templated).
    :param aws_conn_id: Airflow AWS connection used for ``s3://`` roots (its extra may set ``endpoint_url``).
    :param mlops_conn_id: instead of ``artifact_root``, an ``mlops_artifacts`` connection holding the root (and the
        AWS connection to reach it).
    """

    template_fields: Sequence[str] = ("artifact_root",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        pipeline: str,
        artifact_root: str | None = None,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        mlops_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Each key of the returned dict is also its own XCom, so ``op.output["dataset_id"]`` works downstream.
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.locate_store(pipeline, artifact_root, aws_conn_id, mlops_conn_id, self.task_id)

    def openlineage_io(self, inputs: list[str], outputs: list[str]) -> None:
        """The URIs this run read and wrote, as :meth:`get_openlineage_facets_on_complete` reports them."""
        self._openlineage_io = (inputs, outputs)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage's view of the run, when the openlineage provider is installed: the datasets it read and
        wrote (``s3://bucket`` or ``file`` namespaces, the key or path as the name), as :meth:`openlineage_io` set."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs, outputs = getattr(self, "_openlineage_io", ([], []))
        return OperatorLineage(
            inputs=[_openlineage_dataset(u) for u in inputs], outputs=[_openlineage_dataset(u) for u in outputs]
        )

    def record_lineage(self, context: Context, kind: str, extra: dict[str, Any]) -> None:
        """Put ``extra`` (content ids, metrics) on the event of the pipeline's ``kind`` Asset, when it is an outlet."""
        asset = lineage_asset(self.pipeline, kind)
        if any(outlet == asset for outlet in self.outlets):
            context["outlet_events"][asset].extra = extra


def _openlineage_dataset(uri: str) -> Any:
    """An OpenLineage dataset by the naming spec: ``s3://bucket`` + key, or ``file`` + path."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return Dataset(namespace=f"s3://{bucket}", name=key)
    return Dataset(namespace="file", name=uri.removeprefix("file://"))


class ColumnsOperator(MlopsBaseOperator):
    """Base of operators that need the pipeline's column roles.

    :param label_column: the label column.
    :param problem_type: ``classification`` or ``regression``.
    :param numeric: numeric feature columns.
    :param categorical: categorical feature columns.
    """

    def __init__(
        self, *, label_column: str, problem_type: str, numeric: list[str], categorical: list[str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.label_column = label_column
        self.problem_type = problem_type
        self.numeric = numeric
        self.categorical = categorical

    @property
    def columns(self) -> Columns:
        from airflow_mlops.stages.data import Columns

        return Columns(self.label_column, self.problem_type, list(self.numeric), list(self.categorical))


class ResultBranchOperator(BaseBranchOperator):
    """Follow ``true_task_id`` or ``false_task_id`` as an upstream task's result dict says (see ``decide``).

    :param result: the upstream result (an XComArg, templated).
    :param true_task_id: task to follow when ``decide(result)`` is true.
    :param false_task_id: task to follow otherwise.
    """

    template_fields: Sequence[str] = ("result",)

    def __init__(self, *, result: Any, true_task_id: str, false_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result = result
        self.true_task_id = true_task_id
        self.false_task_id = false_task_id

    def decide(self, result: dict[str, Any]) -> bool:
        raise NotImplementedError

    def choose_branch(self, context: Context) -> str:
        chosen = self.true_task_id if self.decide(self.result) else self.false_task_id
        self.log.info("Following %s (%s)", chosen, self.result.get("reason", ""))
        return chosen
