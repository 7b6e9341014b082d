"""Trial generation: grid and random search, deterministic, merged over the base parameters."""

import json
import subprocess
import sys

import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.tuning import generate_trials, space_size

BASE = {"num_leaves": 31, "learning_rate": 0.05, "min_data_in_leaf": 20}
MIXED = {
    "num_leaves": {"low": 4, "high": 64, "log": True},
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "feature_fraction": {"low": 0.5, "high": 1.0},
    "max_depth": [-1, 4, 8],
}


def random_trials(space, trials, seed=42):
    return generate_trials(search="random", space=space, trials=trials, seed=seed, base=BASE)


class TestGrid:
    def test_every_combination_in_sorted_key_order_over_the_base(self):
        trials = generate_trials(
            search="grid", space={"num_leaves": [7, 15], "learning_rate": [0.1, 0.3]}, trials=None, seed=1, base=BASE
        )
        assert trials == [
            {**BASE, "learning_rate": 0.1, "num_leaves": 7},
            {**BASE, "learning_rate": 0.1, "num_leaves": 15},
            {**BASE, "learning_rate": 0.3, "num_leaves": 7},
            {**BASE, "learning_rate": 0.3, "num_leaves": 15},
        ]
        assert [list(t) for t in trials] == [list(BASE)] * 4, "the base's key order is kept"

    def test_key_order_of_the_space_does_not_matter_and_the_seed_is_not_used(self):
        a = generate_trials(search="grid", space={"a": [1, 2], "b": ["x", "y"]}, trials=4, seed=1, base={})
        b = generate_trials(search="grid", space={"b": ["x", "y"], "a": [1, 2]}, trials=None, seed=2, base={})
        assert a == b

    @pytest.mark.parametrize(
        ("space", "trials", "message"),
        [
            pytest.param({"a": [1, 2]}, 3, "every one of its 2 combinations", id="trials-not-the-grid"),
            pytest.param({"a": {"low": 1, "high": 2}}, None, "a list of values", id="range"),
        ],
    )
    def test_refuses(self, space, trials, message):
        with pytest.raises(MlopsError, match=message):
            generate_trials(search="grid", space=space, trials=trials, seed=1, base={})


class TestRandom:
    def test_same_seed_same_trials_other_seed_other_trials(self):
        assert random_trials(MIXED, 8) == random_trials(MIXED, 8)
        assert random_trials(MIXED, 8) != random_trials(MIXED, 8, seed=43)
        assert random_trials(MIXED, 8)[:3] == random_trials(MIXED, 3), "more trials extend the same sequence"

    def test_the_same_trials_in_a_fresh_interpreter(self):
        """Parsed by another process (the DAG processor, a worker), the trials, and so the model versions, are equal."""
        code = (
            "import json; from airflow_mlops.ml.tuning import generate_trials; "
            f"print(json.dumps(generate_trials(search='random', space={MIXED!r}, trials=8, seed=42, base={BASE!r})))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == random_trials(MIXED, 8)

    def test_values_stay_in_their_ranges_with_their_types(self):
        trials = random_trials(MIXED, 50)
        for t in trials:
            assert isinstance(t["num_leaves"], int) and 4 <= t["num_leaves"] <= 64
            assert isinstance(t["learning_rate"], float) and 0.01 <= t["learning_rate"] <= 0.3
            assert 0.5 <= t["feature_fraction"] <= 1.0
            assert t["max_depth"] in (-1, 4, 8) and t["min_data_in_leaf"] == 20
            assert float(f"{t['learning_rate']:.6g}") == t["learning_rate"], "rounded to 6 significant digits"
        assert len({t["max_depth"] for t in trials}) == 3
        assert {t["num_leaves"] for t in trials} & {4, 5, 6, 7}, "log scale: small values are drawn often"

    def test_log_range_is_even_on_a_log_scale(self):
        values = [t["learning_rate"] for t in random_trials({"learning_rate": {"low": 0.001, "high": 1.0, "log": True}}, 200)]
        decades = [sum(1 for v in values if 10**-k <= v < 10 ** (1 - k)) for k in (3, 2, 1)]
        assert all(40 <= d <= 95 for d in decades), decades

    def test_no_combination_twice_even_when_the_space_is_small(self):
        space = {"a": [1, 2], "b": {"low": 1, "high": 3}}
        trials = random_trials(space, 6)
        assert space_size(space) == 6
        assert sorted((t["a"], t["b"]) for t in trials) == [(a, b) for a in (1, 2) for b in (1, 2, 3)]

    @pytest.mark.parametrize(
        ("space", "trials", "message"),
        [
            pytest.param({"a": [1, 2]}, 3, "only 2 distinct combinations", id="space-too-small"),
            pytest.param({"a": [1, 2]}, None, "needs a trial count", id="no-count"),
        ],
    )
    def test_refuses(self, space, trials, message):
        with pytest.raises(MlopsError, match=message):
            random_trials(space, trials)


class TestSpaceSize:
    @pytest.mark.parametrize(
        ("space", "size"),
        [
            pytest.param({"a": [1, 2, 3], "b": [True, False]}, 6, id="lists"),
            pytest.param({"a": {"low": 2, "high": 5}, "b": ["x"]}, 4, id="integer-range"),
            pytest.param({"a": {"low": 0.1, "high": 0.2}, "b": [1, 2]}, None, id="float-range"),
        ],
    )
    def test_size(self, space, size):
        assert space_size(space) == size


def test_unknown_search():
    with pytest.raises(MlopsError, match="unknown search 'bayes'"):
        generate_trials(search="bayes", space={"a": [1]}, trials=1, seed=1, base={})
