"""What every config section shares: the strict base model, field types, the issue type of cross-field
errors, schedules, DAG ids and :func:`field_default`."""

import re
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

DEFAULT_AWS_CONN_ID = "aws_default"
SCHEDULE_PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
    "@midnight",
)
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#-]+$")


def dag_id(pipeline: str, kind: str) -> str:
    """``mlops_<pipeline>_<kind>``: the id of a pipeline's ``training`` or ``monitor`` DAG."""
    return f"mlops_{pipeline}_{kind}"


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default of one config field, for operators and sensors used without a pipeline config."""
    return model.model_fields[name].get_default(call_default_factory=True)


Loc = tuple[str | int, ...]
NO_INPUT: Any = object()
"""Marks an issue without one offending value (its error line then has no ``Got ... instead``)."""


class Issue(NamedTuple):
    """One cross-field problem: where (relative to the model that found it), what, and the offending value."""

    loc: Loc
    message: str
    value: Any = NO_INPUT


def config_issues(found: list[Issue]) -> PydanticCustomError:
    """One pydantic error carrying several issues; the loader turns each into its own error line."""
    return PydanticCustomError("config_issue", "; ".join(i.message for i in found), {"issues": found})


def _scalar(value: Any) -> Any:
    """One clear error for a non-scalar parameter (instead of one per member of the union)."""
    if isinstance(value, bool | int | float | str):
        return value
    raise PydanticCustomError("scalar_type", "Input should be a number, a string or a boolean")


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Scalar = Annotated[int | float | str | bool, BeforeValidator(_scalar)]
Percent = Annotated[int, Field(ge=1, le=100)]


def check_schedule(value: str | None) -> str | None:
    """A preset (``@daily``) or a cron expression of 5 to 7 fields; Airflow checks the fields' values when it parses the DAG."""
    if value is None:
        return None
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            raise PydanticCustomError(
                "schedule",
                "unknown schedule preset; use one of {presets}, a cron expression or null",
                {"presets": ", ".join(SCHEDULE_PRESETS)},
            )
        return value
    fields = value.split()
    if not 5 <= len(fields) <= 7 or not all(_CRON_FIELD.match(f) for f in fields):
        raise PydanticCustomError("schedule", "not a cron expression (minute hour day month weekday) or an @preset")
    return value


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    # The validation code is built on first validation, not at import: a DAG file parse whose config comes from the
    # parse-time cache (see factories/loader.py) never validates, so it never pays for it.
    model_config = ConfigDict(extra="forbid", defer_build=True)
