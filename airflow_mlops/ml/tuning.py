"""Hyperparameter search: the trials of a ``model.tuning`` section, generated when the DAG is parsed.

Pure and deterministic (standard library only; the config schema and the DAG builder import it): the same space,
trial count and seed give the same trials on every parse and every machine, so each trial's model version, and
with it the content cache of its training, is stable.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_mlops.exceptions import MlopsError

SEARCHES = ("grid", "random")
MAX_TRIALS = 256
"""The most trials one tuning run may have: each is a mapped task instance of the training DAG."""
SIGNIFICANT_DIGITS = 6
"""Sampled floats are rounded to this many significant digits: readable, and the same on every machine."""
DRAWS_PER_TRIAL = 1000
"""Random search redraws a combination it already has; it gives up after this many draws per trial."""


def is_range(values: Any) -> bool:
    """A ``{low, high, log}`` range (random search only), as opposed to a list of values."""
    return isinstance(values, Mapping)


def space_size(space: Mapping[str, Any]) -> int | None:
    """How many distinct combinations ``space`` holds; None when a float range makes it unbounded."""
    size = 1
    for values in space.values():
        if not is_range(values):
            size *= len(values)
        elif _integer_range(values):
            size *= int(values["high"]) - int(values["low"]) + 1
        else:
            return None
    return size


def generate_trials(
    *, search: str, space: Mapping[str, Any], trials: int | None, seed: int, base: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every trial's full LightGBM parameters: ``base`` (``model.params``) with the trial's values on top.

    :param search: ``grid`` (every combination of the value lists, in sorted key order) or ``random`` (``trials``
        draws, no combination twice, from a generator seeded by ``seed``).
    :param space: parameter -> list of values, or (random only) ``{"low", "high", "log"}``: integers when both
        ends are integers, log-uniform with ``log``.
    :param trials: random: how many; grid: None or the grid's size.
    :param seed: the random search's seed (``model.seed``).
    :param base: the parameters every trial starts from.
    """
    keys = sorted(space)
    if search == "grid":
        if any(is_range(space[k]) for k in keys):
            raise MlopsError("grid search needs a list of values for every parameter")
        combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[k] for k in keys))]
        if trials is not None and trials != len(combos):
            raise MlopsError(f"grid search runs every one of its {len(combos)} combinations; got trials={trials}")
    elif search == "random":
        if trials is None:
            raise MlopsError("random search needs a trial count")
        combos = _random_combos(space, keys, trials, random.Random(seed))
    else:
        raise MlopsError(f"unknown search {search!r}; use one of {', '.join(SEARCHES)}")
    return [{**base, **combo} for combo in combos]


def _random_combos(space: Mapping[str, Any], keys: Sequence[str], trials: int, rng: random.Random) -> list[dict[str, Any]]:
    size = space_size(space)
    if size is not None and size < trials:
        raise MlopsError(f"the space holds only {size} distinct combinations; got trials={trials}")
    combos: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for _ in range(trials * DRAWS_PER_TRIAL):
        combo = {key: _draw(space[key], rng) for key in keys}
        marker = tuple((type(v).__name__, v) for v in combo.values())
        if marker not in seen:
            seen.add(marker)
            combos.append(combo)
            if len(combos) == trials:
                return combos
    raise MlopsError(f"drew only {len(combos)} distinct combinations of the {trials} asked for; widen the space")


def _draw(values: Any, rng: random.Random) -> Any:
    if not is_range(values):
        return values[rng.randrange(len(values))]
    low, high, log = values["low"], values["high"], values.get("log", False)
    if _integer_range(values):
        if not log:
            return rng.randint(int(low), int(high))
        drawn = math.floor(math.exp(rng.uniform(math.log(low), math.log(high + 1))))
        return min(int(high), max(int(low), drawn))
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _integer_range(values: Mapping[str, Any]) -> bool:
    return all(isinstance(values[end], int) and not isinstance(values[end], bool) for end in ("low", "high"))
