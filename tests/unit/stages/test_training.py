import dataclasses
import shutil

import numpy as np
import pytest
from churn_setup import COLUMNS, MODEL, PIPELINE, built, stamps, store  # noqa: F401 (pytest fixtures)

from airflow_mlops.exceptions import ArtifactNotFound
from airflow_mlops.stages.features import read_features
from airflow_mlops.stages.training import load_booster, train


class TestTrain:
    def test_stores_the_model_with_its_transform_profile_and_settings(self, built, store):
        result = built.model
        version = result["model_version"]
        assert result["cached"] is False and len(version) == 12
        assert result["features_id"] == built.features["features_id"] and result["dataset_id"] == built.dataset["dataset_id"]
        mprefix, fprefix = f"models/{PIPELINE}/{version}", f"features/{PIPELINE}/{built.features['features_id']}"
        assert result["model_uri"] == f"file://{built.root}/{mprefix}"
        assert set(store.list(mprefix)) == {
            f"{mprefix}/{n}" for n in ("model.txt", "transform.json", "profile.json", "training.json")
        }
        for name in ("transform.json", "profile.json"):
            assert store.read_bytes(f"{mprefix}/{name}") == store.read_bytes(f"{fprefix}/{name}"), name
        training = store.read_json(f"{mprefix}/training.json")
        assert training["model_version"] == version and training["features_id"] == built.features["features_id"]
        assert training["params"] == MODEL.params and training["seed"] == 42 and training["num_boost_round"] == 20
        assert training["trees"] == 20, "no early stopping: one tree per round"

    def test_the_stored_model_scores_the_eval_rows(self, built, store):
        booster = load_booster(store, PIPELINE, built.model["model_version"])
        evaluation = read_features(store, PIPELINE, built.features["features_id"], "eval")
        assert booster.num_trees() == 20 and booster.feature_name() == COLUMNS.features
        p = booster.predict(evaluation[COLUMNS.features], num_threads=1)
        assert p.shape == (len(evaluation),) and ((p > 0) & (p < 1)).all()
        y = evaluation[COLUMNS.label].to_numpy()
        assert p[y == 1].mean() > p[y == 0].mean() + 0.1, "churners get higher scores"

    def test_second_call_is_cached_and_writes_nothing(self, built, store):
        before = stamps(store)
        again = train(store, PIPELINE, built.features["features_id"], MODEL)
        mprefix = f"models/{PIPELINE}/{built.model['model_version']}"
        assert again == {**built.model, "model_uri": store.uri(mprefix), "cached": True}
        assert stamps(store) == before

    def test_training_again_gives_a_byte_identical_model(self, built, store):
        version = built.model["model_version"]
        model = store.read_bytes(f"models/{PIPELINE}/{version}/model.txt")
        shutil.rmtree(store.local_path(f"models/{PIPELINE}"))
        again = train(store, PIPELINE, built.features["features_id"], MODEL)
        assert again["cached"] is False and again["model_version"] == version
        assert store.read_bytes(f"models/{PIPELINE}/{version}/model.txt") == model

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"seed": 43}, id="seed"),
            pytest.param({"num_boost_round": 21}, id="rounds"),
            pytest.param({"params": {**MODEL.params, "num_leaves": 8}}, id="params"),
        ],
    )
    def test_other_settings_other_version(self, built, store, change):
        other = train(store, PIPELINE, built.features["features_id"], dataclasses.replace(MODEL, **change))
        known = {m["model_version"] for m in (built.model, built.challenger, built.candidate)}
        assert other["cached"] is False and other["model_version"] not in known
        assert store.exists(f"models/{PIPELINE}/{other['model_version']}/model.txt")
        assert store.exists(f"models/{PIPELINE}/{built.model['model_version']}/model.txt"), "the first model is kept"

    def test_bagging_with_another_seed_learns_another_model(self, built, store):
        bagged = dataclasses.replace(MODEL, params={**MODEL.params, "bagging_fraction": 0.6, "bagging_freq": 1})
        first = train(store, PIPELINE, built.features["features_id"], bagged)
        second = train(store, PIPELINE, built.features["features_id"], dataclasses.replace(bagged, seed=43))
        eval_rows = read_features(store, PIPELINE, built.features["features_id"], "eval")[COLUMNS.features]
        p1 = load_booster(store, PIPELINE, first["model_version"]).predict(eval_rows, num_threads=1)
        p2 = load_booster(store, PIPELINE, second["model_version"]).predict(eval_rows, num_threads=1)
        assert not np.allclose(p1, p2)

    def test_early_stopping_is_recorded(self, built, store):
        early = dataclasses.replace(MODEL, num_boost_round=500, early_stopping_rounds=3)
        result = train(store, PIPELINE, built.features["features_id"], early)
        training = store.read_json(f"models/{PIPELINE}/{result['model_version']}/training.json")
        assert training["early_stopping_rounds"] == 3 and 0 < training["trees"] < 500
        assert load_booster(store, PIPELINE, result["model_version"]).num_trees() == training["trees"]

    def test_unknown_features(self, store):
        with pytest.raises(ArtifactNotFound, match=r"features/churn/nope/_SUCCESS\.json"):
            train(store, PIPELINE, "nope", MODEL)


class TestLoadBooster:
    def test_unknown_version(self, store):
        with pytest.raises(ArtifactNotFound, match=r"models/churn/nope/model\.txt"):
            load_booster(store, PIPELINE, "nope")


class TestDevice:
    """model.device: this machine's LightGBM has no CUDA build, so asking for it must fail, never train on the CPU
    silently; with allow_cpu_fallback it trains on the CPU and says so."""

    def test_a_device_that_is_not_there_fails_with_what_to_do(self, built, store):
        from airflow_mlops.ml.train import DeviceUnavailable

        with pytest.raises(DeviceUnavailable, match=r"model.device 'cuda': LightGBM .* cannot train on it here") as err:
            train(store, PIPELINE, built.features["features_id"], dataclasses.replace(MODEL, device="cuda"))
        assert "-DUSE_CUDA=ON" in str(err.value) and "allow_cpu_fallback" in str(err.value)
        assert len({k.split("/")[2] for k in store.list(f"models/{PIPELINE}")}) == 3, "no model was stored"

    def test_the_cpu_fallback_trains_the_cpu_model_and_records_the_device(self, built, store):
        settings = dataclasses.replace(MODEL, device="cuda", allow_cpu_fallback=True)
        result = train(store, PIPELINE, built.features["features_id"], settings)
        assert result["model_version"] != built.model["model_version"], "asked for cuda: its own id"
        mprefix = f"models/{PIPELINE}/{result['model_version']}"
        training = store.read_json(f"{mprefix}/training.json")
        assert (training["device"], training["allow_cpu_fallback"]) == ("cpu", True) and training["lightgbm"]
        assert training["train_seconds"] > 0
        cpu_model = store.read_bytes(f"models/{PIPELINE}/{built.model['model_version']}/model.txt")
        assert store.read_bytes(f"{mprefix}/model.txt") == cpu_model, "the CPU path is byte-identical"

    def test_the_cpu_version_ids_do_not_change(self):
        from airflow_mlops.ml.train import lgb_params, model_version

        common = {"dataset_id": "d", "transform_hash": "t", "params": {"num_leaves": 7}, "num_boost_round": 20, "seed": 42}
        assert model_version(**common) == model_version(**common, device="cpu") != model_version(**common, device="cuda")
        assert "device_type" not in lgb_params("classification", {}, 42)
        assert lgb_params("classification", {}, 42, "cuda")["device_type"] == "cuda"


class TestTrainCommand:
    def test_the_command_a_pod_runs_trains_the_same_model(self, built, store):
        import json
        import subprocess
        import sys

        command = [sys.executable, "-m", "airflow_mlops.cli", "train", "--artifact-root", store.root_uri, "--pipeline", PIPELINE]
        command += ["--features-id", built.features["features_id"], "--params", json.dumps(MODEL.params)]
        command += ["--num-boost-round", str(MODEL.num_boost_round), "--seed", str(MODEL.seed)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["model_version"] == built.model["model_version"] and result["cached"] is True

    def test_bad_params_name_the_flag(self, built, store):
        import subprocess
        import sys

        command = [sys.executable, "-m", "airflow_mlops.cli", "train", "--artifact-root", store.root_uri, "--pipeline", PIPELINE]
        done = subprocess.run([*command, "--features-id", "x", "--params", "[1]"], capture_output=True, text=True)
        assert done.returncode == 2 and "--params: expected a JSON object" in done.stderr
