"""What the airflow-mlops sensors share: the deferrable conventions of Airflow's own providers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_mlops.config.base import DEFAULT_AWS_CONN_ID
from airflow_mlops.exceptions import MlopsError
from airflow_mlops.operators.base import ArtifactStoreMixin
from airflow_mlops.triggers import TriggerStatus

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger


class MlopsSensor(ArtifactStoreMixin, BaseSensorOperator):
    """Base of the lifecycle sensors: one check, run in the worker (``poke``) or, deferrable, once in the worker and
    then in the triggerer until it is done.

    The conventions are those of Airflow's providers: ``deferrable`` defaults to ``[operators] default_deferrable``;
    a deferrable sensor checks once before it defers (no triggerer round trip when the answer is there);
    ``poke_interval`` is the time between checks in both modes; ``timeout`` counts from the first check in both
    modes, across deferrals (a sensor that defers again after an event does not start its timeout over).

    :param pipeline: pipeline name.
    :param artifact_root: the artifact store (templated).
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots, used by the trigger as well.
    :param mlops_conn_id: instead of ``artifact_root``, an ``mlops_artifacts`` connection holding the root.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = ("artifact_root",)

    def __init__(
        self,
        *,
        pipeline: str,
        artifact_root: str | None = None,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        mlops_conn_id: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.locate_store(pipeline, artifact_root, aws_conn_id, mlops_conn_id, self.task_id)
        self.deferrable = deferrable

    def check(self) -> tuple[bool, Any]:
        """One check: (done, the task's result)."""
        raise NotImplementedError

    def trigger(self) -> BaseTrigger:
        """The trigger that repeats the check in the triggerer, firing a success event with its findings."""
        raise NotImplementedError

    def on_event(self, event: dict[str, Any]) -> tuple[bool, Any]:
        """(done, the task's result) from the trigger's success event; not done defers again."""
        raise NotImplementedError

    def timeout_message(self) -> str:
        """What a timeout says, in either mode: subclasses name what never came."""
        return f"{self.task_id}: timed out after {_seconds(self.timeout):.0f} s"

    def poke(self, context: Context) -> PokeReturnValue:
        done, result = self.check()
        return PokeReturnValue(is_done=done, xcom_value=result)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            with self._timeout_named():
                return super().execute(context)
        done, result = self.check()
        if done:
            return result
        self._defer(time.time() + _seconds(self.timeout))

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        with self._timeout_named():  # Airflow's own message when the trigger outlives the deferral's timeout
            return super().resume_execution(next_method, next_kwargs, context)

    @contextlib.contextmanager
    def _timeout_named(self) -> Iterator[None]:
        try:
            yield
        except AirflowSensorTimeout as err:
            raise AirflowSensorTimeout(self.timeout_message()) from err

    def execute_complete(self, context: Context, event: dict[str, Any], deadline: float | None = None) -> Any:
        if not event or event.get("status") != TriggerStatus.SUCCESS:
            raise MlopsError(f"{self.task_id} failed: {(event or {}).get('message')}\n{(event or {}).get('traceback', '')}")
        done, result = self.on_event(event)
        if not done:
            self._defer(deadline if deadline is not None else time.time() + _seconds(self.timeout))
        return result

    def _defer(self, deadline: float) -> None:
        left = deadline - time.time()
        if left <= 0:
            raise AirflowSensorTimeout(self.timeout_message())
        self.defer(
            trigger=self.trigger(), method_name="execute_complete", timeout=timedelta(seconds=left), kwargs={"deadline": deadline}
        )


def _seconds(timeout: Any) -> float:
    return timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
