import numpy as np
import pandas as pd
import pytest

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.ml.train import model_version, train_model

KW = {"features": ["a", "b"], "categorical": ["b"], "label": "y", "task": "classification", "num_boost_round": 30, "seed": 7}


@pytest.fixture(scope="module")
def frame():
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.normal(size=600)
    b = rng.integers(0, 4, 600).astype(float)
    y = ((a + (b == 2) + rng.normal(scale=0.5, size=600)) > 0.5).astype(float)
    return pd.DataFrame({"_row_id": [f"{i:08x}" for i in range(600)], "a": a, "b": b, "y": y})


class TestTrainModel:
    def test_same_inputs_give_byte_identical_model(self, frame):
        first = train_model(frame, params={"num_leaves": 7}, **KW).model_to_string()
        shuffled = frame.sample(frac=1.0, random_state=1)
        again = train_model(shuffled, params={"num_leaves": 7}, **KW).model_to_string()
        assert first == again

    def test_other_seed_other_model(self, frame):
        params = {"num_leaves": 7, "bagging_fraction": 0.7, "bagging_freq": 1}
        assert (
            train_model(frame, params=params, **KW).model_to_string()
            != train_model(frame, params=params, **{**KW, "seed": 8}).model_to_string()
        )

    def test_reserved_params_rejected(self, frame):
        with pytest.raises(MlopsError, match="objective"):
            train_model(frame, params={"objective": "huber"}, **KW)

    def test_early_stopping(self, frame):
        booster = train_model(frame, params={}, early_stopping_rounds=3, **{**KW, "num_boost_round": 500})
        assert booster.num_trees() < 500


class TestModelVersion:
    def test_content_derived(self):
        base = {"dataset_id": "d", "transform_hash": "t", "params": {"a": 1}, "num_boost_round": 10, "seed": 1}
        assert model_version(**base) == model_version(**base)
        assert model_version(**base) != model_version(**{**base, "params": {"a": 2}})
        assert len(model_version(**base)) == 12


class TestEarlyStoppingHoldout:
    def test_row_id_digits_read_as_arrays_match_int_parsing(self):
        from airflow_mlops.ml.train import _last_hex_digits

        ids = pd.Series([f"{i:016x}" for i in np.random.default_rng(0).integers(0, 2**62, 5000)])
        np.testing.assert_array_equal(_last_hex_digits(ids), [int(r[-4:], 16) for r in ids])
