"""A multiclass pipeline with text classes over the stages: preprocess (classes from the accepted schema, labels
encoded to class indexes), training, the gate, the served model and batch scoring on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.ml.schema import infer_schema
from airflow_mlops.serving.batch import BatchScorer
from airflow_mlops.serving.models import ServedModel
from airflow_mlops.stages.data import Columns, acquire
from airflow_mlops.stages.evaluation import GateSettings, evaluate
from airflow_mlops.stages.features import preprocess, read_features
from airflow_mlops.stages.training import TrainSettings, train
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.layout import schema_key

PIPELINE = "tiers"
COLUMNS = Columns(label="tier", task="multiclass", numeric=["x1", "x2"], categorical=["region"])
PREPROCESS = {"eval_fraction": 0.3, "histogram_bins": 10, "runner": "DirectRunner"}
MODEL = TrainSettings(params={"num_leaves": 7}, num_boost_round=30, seed=1, early_stopping_rounds=None)


def make_tiers(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    region = rng.choice(["north", "south"], rows)
    logits = np.column_stack([2 * x1, 2 * x2, -2 * x1 + (region == "south")])
    tier = np.array(["gold", "silver", "bronze"])[np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)]
    return pd.DataFrame({"id": [f"r{i}" for i in range(rows)], "x1": x1, "x2": x2, "region": region, "tier": tier})


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiers")
    frame = make_tiers(900, seed=2)
    frame.to_csv(root / "tiers.csv", index=False)
    store = ArtifactStore.from_uri(str(root / "store"))
    dataset = acquire(store, PIPELINE, str(root / "tiers.csv"))
    with pytest.raises(ArtifactNotFound):  # the classes come from the accepted schema, which validate stores first
        preprocess(store, PIPELINE, dataset["dataset_id"], COLUMNS, **PREPROCESS)
    schema = infer_schema(frame, numeric=COLUMNS.numeric, categorical=COLUMNS.categorical, label="tier", task="multiclass")
    store.write_json(schema_key(PIPELINE), schema)
    features = preprocess(store, PIPELINE, dataset["dataset_id"], COLUMNS, **PREPROCESS)
    model = train(store, PIPELINE, features["features_id"], MODEL)
    return store, frame, features, model


def test_classes_are_stored_and_labels_are_class_indexes(pipeline):
    store, _, features, model = pipeline
    spec = store.read_json(f"models/{PIPELINE}/{model['model_version']}/transform.json")
    assert spec["classes"] == ["bronze", "gold", "silver"]
    train_rows = read_features(store, PIPELINE, features["features_id"], "train")
    raw = read_features(store, PIPELINE, features["features_id"], "eval_raw")
    assert set(train_rows["tier"].unique()) == {0.0, 1.0, 2.0}
    evals = read_features(store, PIPELINE, features["features_id"], "eval").set_index("_row_id")
    expected = raw.set_index("_row_id")["tier"].map({"bronze": 0.0, "gold": 1.0, "silver": 2.0})
    pd.testing.assert_series_equal(evals["tier"].sort_index(), expected.sort_index(), check_names=False)


def test_the_gate_judges_the_multiclass_metrics(pipeline):
    store, _, features, model = pipeline
    gate = GateSettings("roc_auc_macro", 0.7, 0.0, ["region"], "region", 0.5)
    result = evaluate(store, PIPELINE, model["model_version"], features["features_id"], gate, run_id="r1")
    assert result["blessed"], result["reason"]
    assert result["metrics"]["roc_auc_macro"] > 0.8 and {"recall:bronze", "recall:gold", "recall:silver"} <= set(
        result["metrics"]
    )
    assert set(result["slices"]["region"]) == {"north", "south"} and result["fairness_gap"] is not None


def test_the_server_and_batch_scoring_give_the_same_class_and_probabilities(pipeline):
    store, frame, _, model = pipeline
    version = model["model_version"]
    served = ServedModel.load(store, PIPELINE, version)
    rows = [{k: r[k] for k in ("x1", "x2", "region")} for r in frame.head(50).to_dict("records")]
    scores = served.predict(rows)
    outputs = [served.output(s) for s in scores]
    assert all(set(o["probabilities"]) == {"bronze", "gold", "silver"} for o in outputs)
    assert all(o["prediction"] == max(o["probabilities"], key=o["probabilities"].get) for o in outputs)

    spec = store.read_json(f"models/{PIPELINE}/{version}/transform.json")
    scorer = BatchScorer(
        spec,
        store.read_text(f"models/{PIPELINE}/{version}/model.txt"),
        ids=["id"],
        model_version=version,
        dataset_id="d",
        log_sample=1.0,
    )
    batch = pa.RecordBatch.from_pandas(frame.head(50)[["id", "x1", "x2", "region"]], preserve_index=False)
    table, sample, _ = scorer.score(batch, 0)
    assert table.column("class").to_pylist() == [o["prediction"] for o in outputs]
    np.testing.assert_array_equal(np.array(table.column("probabilities").to_pylist()), np.array(scores))
    np.testing.assert_array_equal(table.column("score").to_numpy(), np.array(scores).max(axis=1))
    assert sample["_prediction"].tolist() == [float(np.argmax(s)) for s in scores]
    np.testing.assert_array_equal(np.array(sample["_probabilities"].tolist()), np.array(scores))
