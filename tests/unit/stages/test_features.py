import numpy as np
import pytest
from churn_setup import COLUMNS, PIPELINE, PREPROCESS, ROWS, built, stamps, store  # noqa: F401 (pytest fixtures)

from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.ml.transform import ROW_ID
from airflow_mlops.stages.features import preprocess, read_features
from airflow_mlops.store.artifacts import digest
from airflow_mlops.store.layout import DONE


class TestPreprocess:
    def test_writes_every_split_the_transform_the_profile_and_the_marker(self, built, store):
        result = built.features
        features_id = result["features_id"]
        assert result["cached"] is False and result["dataset_id"] == built.dataset["dataset_id"]
        assert features_id.startswith(built.dataset["dataset_id"][:16] + "-")
        prefix = f"features/{PIPELINE}/{features_id}"
        assert result["features_uri"] == f"file://{built.root}/{prefix}"
        keys = store.list(prefix)
        for split in ("train", "eval", "eval_raw"):
            assert any(k.startswith(f"{prefix}/{split}/") and k.endswith(".parquet") for k in keys), split
        assert {f"{prefix}/transform.json", f"{prefix}/profile.json", f"{prefix}/{DONE}"} <= set(keys)
        done = store.read_json(f"{prefix}/{DONE}")
        assert done == {k: v for k, v in result.items() if k != "cached"}
        assert done["transform_hash"] == digest(store.read_json(f"{prefix}/transform.json"))
        profile = store.read_json(f"{prefix}/profile.json")
        assert profile["rows"] == ROWS
        assert sorted(profile["numeric"]) == sorted(COLUMNS.numeric)
        assert sorted(profile["categorical"]) == sorted(COLUMNS.categorical)

    def test_row_counts_add_up_and_splits_are_disjoint(self, built, store):
        result = built.features
        assert result["rows"] == built.dataset["rows"] == ROWS
        assert result["train_rows"] + result["eval_rows"] == ROWS
        assert 0.15 < result["eval_rows"] / ROWS < 0.35, "about eval_fraction=0.25 of the rows"
        train = read_features(store, PIPELINE, result["features_id"], "train")
        evaluation = read_features(store, PIPELINE, result["features_id"], "eval")
        assert (len(train), len(evaluation)) == (result["train_rows"], result["eval_rows"])
        assert not set(train[ROW_ID]) & set(evaluation[ROW_ID])
        assert set(train.columns) == {ROW_ID, COLUMNS.label, *COLUMNS.features}
        assert all(train[c].dtype == np.float64 for c in COLUMNS.features), "model input is numeric"
        assert train[COLUMNS.label].isin([0.0, 1.0]).all()

    def test_eval_raw_holds_the_source_rows_of_the_eval_split(self, built, store):
        features_id = built.features["features_id"]
        raw = read_features(store, PIPELINE, features_id, "eval_raw")
        evaluation = read_features(store, PIPELINE, features_id, "eval")
        assert sorted(raw[ROW_ID]) == sorted(evaluation[ROW_ID])
        source = built.frame.set_index("customer_id").loc[raw["customer_id"]]
        assert raw["contract"].tolist() == source["contract"].tolist()
        np.testing.assert_allclose(raw["monthly_charges"], source["monthly_charges"])
        labels = evaluation.set_index(ROW_ID)[COLUMNS.label].loc[raw[ROW_ID]]
        assert labels.tolist() == raw["churned"].astype(float).tolist(), "the eval features keep each row's label"

    def test_second_call_is_cached_and_writes_nothing(self, built, store):
        before = stamps(store)
        again = preprocess(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, **PREPROCESS)
        assert again["cached"] is True
        assert again["features_id"] == built.features["features_id"]
        assert {k: v for k, v in again.items() if k not in ("cached", "features_uri")} == {
            k: v for k, v in built.features.items() if k not in ("cached", "features_uri")
        }
        assert stamps(store) == before

    def test_other_settings_other_features(self, built, store):
        other = preprocess(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, **{**PREPROCESS, "eval_fraction": 0.5})
        assert other["cached"] is False
        assert other["features_id"] != built.features["features_id"]
        assert other["features_id"][:16] == built.features["features_id"][:16], "same dataset"
        assert other["train_rows"] + other["eval_rows"] == ROWS and other["eval_rows"] > built.features["eval_rows"]
        assert store.exists(f"features/{PIPELINE}/{built.features['features_id']}/{DONE}"), "the first features are kept"

    def test_unfinished_features_are_recomputed(self, built, store):
        features_id = built.features["features_id"]
        store.local_path(f"features/{PIPELINE}/{features_id}/{DONE}").unlink()
        again = preprocess(store, PIPELINE, built.dataset["dataset_id"], COLUMNS, **PREPROCESS)
        assert again["cached"] is False and again["features_id"] == features_id
        assert again["transform_hash"] == built.features["transform_hash"], "the same transform, fitted again"
        assert store.exists(f"features/{PIPELINE}/{features_id}/{DONE}")


class TestReadFeatures:
    def test_unknown_split(self, built, store):
        with pytest.raises(ValueError, match=r"Unknown features split 'test'; expected one of \('train', 'eval', 'eval_raw'\)"):
            read_features(store, PIPELINE, built.features["features_id"], "test")

    def test_no_parquet(self, store):
        with pytest.raises(ArtifactNotFound, match=r"No Parquet files under file://.*/features/churn/nope/train"):
            read_features(store, PIPELINE, "nope", "train")
