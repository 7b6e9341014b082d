"""Extra link from a task to the report it wrote (validation, evaluation, drift), served by the ops UI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from airflow_mlops.exceptions import DataValidationError
from airflow_mlops.store.layout import is_report_key

if TYPE_CHECKING:
    import logging

    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


def report_url(report_uri: str, base_url: str | None = None) -> str:
    """The ops UI's page for a report in the store (``<[api] base_url>/mlops/reports/<pipeline>/<key>``).

    The key is the URI's last four segments (``reports/<pipeline>/<run>/<name>.html`` or
    ``models/<pipeline>/<version>/card.html``), whatever the store's root; a URI that is no report is returned as it is.

    :param report_uri: the report's URI in the artifact store (``file://...`` or ``s3://...``).
    :param base_url: the api-server's URL; default ``[api] base_url`` (a path from the site root when unset).
    """
    key = "/".join(report_uri.split("/")[-4:])
    pipeline = key.split("/")[1] if key.count("/") == 3 else ""
    if not is_report_key(pipeline, key):
        return report_uri
    if base_url is None:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    return f"{base_url.rstrip('/')}/mlops/reports/{quote(pipeline)}/{quote(key)}"


class ReportLink(BaseOperatorLink):
    """The report a task saved under ``reports/<pipeline>/<run_id>/``, opened through the ops UI.

    The task keeps the report's store URI in the ``mlops_report_uri`` XCom; the link is its ops UI page.
    """

    name = "Report"
    key: ClassVar[str] = "mlops_report_uri"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        uri = XCom.get_value(key=self.key, ti_key=ti_key)
        return report_url(uri) if uri else ""

    @classmethod
    def persist(cls, context: Context, report_uri: str) -> None:
        context["ti"].xcom_push(key=cls.key, value=report_uri)


@contextmanager
def report_on_failure(context: Context, log: logging.Logger, what: str) -> Iterator[None]:
    """Around a validation: when it fails with :class:`DataValidationError`, the task links its report (the task's
    report link) and logs ``what`` with the report's URI before failing."""
    try:
        yield
    except DataValidationError as err:
        ReportLink.persist(context, err.report_uri)
        log.error("%s; report: %s", what, err.report_uri)
        raise
