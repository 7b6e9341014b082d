"""``model.tuning``: the hyperparameter search and each parameter's search space."""

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from airflow_mlops.config.base import Issue, Scalar, Strict, config_issues
from airflow_mlops.ml.metrics import HIGHER_IS_BETTER
from airflow_mlops.ml.train import RESERVED_PARAMS
from airflow_mlops.ml.tuning import MAX_TRIALS, SEARCHES, space_size


class SearchSpace(Strict):
    """One parameter's search space: YAML gives a list of values, or a range ``{low, high, log}`` (random search)."""

    values: list[Scalar] | None = Field(None, min_length=1, description="The values to choose from.")
    low: int | float | None = Field(None, description="A range's smallest value.")
    high: int | float | None = Field(None, description="A range's largest value (integers when both ends are integers).")
    log: bool = Field(False, description="Draw uniformly on a log scale (low must be > 0).")

    @model_validator(mode="before")
    @classmethod
    def _list_or_range(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"values": value}
        if not isinstance(value, Mapping | SearchSpace):
            raise PydanticCustomError("search_space", "give a list of values, or a range {low, high, log}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.values is not None:
            found = [
                Issue(("values", i), "repeats an earlier value", v)
                for i, v in enumerate(self.values)
                if (type(v), v) in {(type(w), w) for w in self.values[:i]}
            ]
            if self.low is not None or self.high is not None or self.log:
                found.append(Issue((), "give a list of values or a range {low, high, log}, not both"))
        elif self.low is None or self.high is None:
            found = [Issue((end,), "a range needs low and high") for end in ("low", "high") if getattr(self, end) is None]
        elif not self.low < self.high:
            found = [Issue(("high",), f"must be greater than low ({self.low})", self.high)]
        else:
            found = [Issue(("low",), "must be > 0 for a log range", self.low)] if self.log and self.low <= 0 else []
        if found:
            raise config_issues(found)
        return self

    def plain(self) -> list[Any] | dict[str, Any]:
        """As :func:`airflow_mlops.ml.tuning.generate_trials` takes it: the list, or ``{low, high, log}``."""
        return list(self.values) if self.values is not None else {"low": self.low, "high": self.high, "log": self.log}


class TuningConfig(Strict):
    search: Literal[SEARCHES] = Field(  # type: ignore[valid-type]
        "random", description="grid: every combination of the value lists; random: `trials` draws seeded by model.seed."
    )
    space: dict[str, SearchSpace] = Field(
        ...,
        min_length=1,
        description="LightGBM parameter -> a list of values, or (random only) {low, high, log}; each trial's values "
        "merge over model.params.",
    )
    trials: int | None = Field(
        None, ge=1, le=MAX_TRIALS, description="How many trials: required for random; grid runs every combination."
    )
    parallelism: PositiveInt = Field(4, le=MAX_TRIALS, description="Trials trained at the same time (in one DAG run).")
    metric: Literal[tuple(HIGHER_IS_BETTER)] | None = Field(  # type: ignore[valid-type]
        None,
        description="Metric on the eval split that picks the best trial (ties: the first); null: the gate's metric, "
        "or the task's default (roc_auc, rmse) without a gate.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        found = [
            Issue(("space", key), "reserved: the pipeline sets it (use model.seed; the objective follows task)", key)
            for key in self.space
            if key in RESERVED_PARAMS
        ]
        if self.search == "grid":
            found += [
                Issue(("space", key), "grid search needs a list of values (a range is for random search)")
                for key, values in self.space.items()
                if values.values is None
            ]
        if found:
            raise config_issues(found)
        size = space_size(self.plain_space())
        if self.search == "grid" and size > MAX_TRIALS:
            found.append(Issue(("space",), f"the grid has {size} combinations; at most {MAX_TRIALS} are allowed"))
        elif self.search == "grid" and self.trials is not None and self.trials != size:
            found.append(
                Issue(
                    ("trials",),
                    f"grid search runs every one of its {size} combinations: omit trials or set it to {size}",
                    self.trials,
                )
            )
        elif self.search == "random" and self.trials is None:
            found.append(Issue(("trials",), "random search needs a trial count"))
        elif self.search == "random" and size is not None and size < self.trials:
            found.append(Issue(("trials",), f"the space holds only {size} distinct combinations", self.trials))
        if found:
            raise config_issues(found)
        return self

    def plain_space(self) -> dict[str, Any]:
        """The space as plain data: lists, and ranges as ``{low, high, log}`` mappings."""
        return {key: values.plain() for key, values in self.space.items()}
