"""Extra link from a task to the report it wrote (validation, evaluation, drift)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


class ReportLink(BaseOperatorLink):
    """The report a task saved under ``reports/<pipeline>/<run_id>/``."""

    name = "Report"
    key: ClassVar[str] = "mlops_report_uri"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=self.key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Context, report_uri: str) -> None:
        context["ti"].xcom_push(key=cls.key, value=report_uri)
