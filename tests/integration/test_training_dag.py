"""The training DAG built from YAML, run for real with dag.test() on a migrated Airflow DB."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
from conftest import run_dag

from airflow_mlops.ml.synthetic import make_churn
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry

pytestmark = pytest.mark.slow

CHURN_FEATURES = {
    "numeric": ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"],
    "categorical": ["contract", "payment_method", "region"],
}
TRAINING_TASKS = [
    "data.acquire",
    "data.validate",
    "features.preprocess",
    "training.train",
    "evaluation.evaluate",
    "evaluation.gate",
]


def churn_config(name: str, tmp_path, **overrides) -> dict:
    config = {
        "pipeline": name,
        "schedule": None,
        "artifacts": {"root": str(tmp_path / "artifacts")},
        "source": {"uri": str(tmp_path / "data" / "{{ ds }}.csv")},
        "label": "churned",
        "task": "classification",
        "features": CHURN_FEATURES,
        "model": {"num_boost_round": 60, "params": {"num_leaves": 15}},
        "evaluation": {"metric": "roc_auc", "threshold": 0.6, "slices": ["contract"]},
    }
    config.update(overrides)
    return config


def write_day(tmp_path, ds: str, frame) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    frame.to_csv(tmp_path / "data" / f"{ds}.csv", index=False)


def asset_events(run) -> dict[str, dict]:
    """The extras of the Asset events ``run`` emitted, by Asset name."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter_by(source_dag_id=run.dag_id, source_run_id=run.run_id).all()
        return {event.asset.name: dict(event.extra) for event in events}


def xcom(run, task_id: str, key: str = "return_value"):
    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id=task_id, key=key).one()
        return XComModel.deserialize_value(row)


def store_of(config) -> ArtifactStore:
    return ArtifactStore.from_uri(config.artifacts.root)


class TestTrainingDag:
    def test_synthetic_churn_end_to_end_then_a_second_day_against_production(self, pipeline, tmp_path):
        source = {"uri": str(tmp_path / "data" / "{{ ds }}.csv"), "wait": {"timeout_minutes": 3, "poke_seconds": 0.5}}
        config, dag = pipeline(churn_config("churn_e2e", tmp_path, source=source))
        write_day(tmp_path, "2026-11-01", make_churn(2500, seed=1))
        run, states = run_dag(dag, "2026-11-01")
        assert run.state == "success", states
        assert all(states[t] == "success" for t in TRAINING_TASKS) and states["registry.bless"] == "success"
        assert states["registry.reject"] == "skipped"

        store = store_of(config)
        registry = ModelRegistry(store, "churn_e2e")
        v1 = xcom(run, "training.train")["model_version"]
        assert registry.production() == v1
        entry = registry.get(v1)
        assert entry["status"] == "blessed"
        assert entry["lineage"]["dataset_id"] == xcom(run, "data.acquire")["dataset_id"]
        assert entry["lineage"]["transform_hash"] and entry["lineage"]["code_version"]
        for name in ("model.txt", "transform.json", "profile.json", "metrics.json", "card.html", "lineage.json"):
            assert store.exists(f"models/churn_e2e/{v1}/{name}"), name
        assert store.exists("schemas/churn_e2e/schema.json")
        evaluation = xcom(run, "evaluation.evaluate")
        assert 0.6 < evaluation["metrics"]["roc_auc"] < 1.0
        lineage = asset_events(run)  # Airflow's Asset views: which data made which model
        dataset_id, features_id = entry["lineage"]["dataset_id"], entry["lineage"]["features_id"]
        assert lineage["mlops_churn_e2e_dataset"]["dataset_id"] == dataset_id
        features = lineage["mlops_churn_e2e_features"]
        assert (features["dataset_id"], features["features_id"]) == (dataset_id, features_id)
        model = lineage["mlops_churn_e2e_model"]
        assert (model["model_version"], model["dataset_id"], model["features_id"]) == (v1, dataset_id, features_id)
        assert model["metrics"]["roc_auc"] == evaluation["metrics"]["roc_auc"]
        assert set(evaluation["slices"]["contract"]) == {"month-to-month", "one-year", "two-year"}

        # Day two: the export lands late (the run waits for it, deferred); a new candidate is judged against
        # production on the same eval rows.
        late = threading.Timer(3.0, write_day, args=(tmp_path, "2026-11-02", make_churn(2500, seed=2)))
        late.start()
        run2, states2 = run_dag(dag, "2026-11-02")
        assert run2.state == "success", states2
        assert xcom(run2, "data.wait_for_source") == {"source": str(tmp_path / "data" / "2026-11-02.csv"), "files": 1}
        evaluation2 = xcom(run2, "evaluation.evaluate")
        assert evaluation2["production_version"] == v1
        assert set(evaluation2["production_metrics"]) == {"roc_auc", "log_loss", "accuracy", "rows"}
        assert len(registry.load()["versions"]) == 2

    def test_a_run_without_a_logical_date_reads_the_export_of_the_day_it_runs(self, pipeline, tmp_path):
        """Asset-triggered retraining runs have no logical date: ``{{ ds }}`` is their run_after day."""
        from datetime import UTC, datetime

        config, dag = pipeline(churn_config("churn_no_ds", tmp_path))
        write_day(tmp_path, "2026-11-03", make_churn(1500, seed=3))
        run = dag.test(logical_date=None, run_after=datetime(2026, 11, 3, 14, 30, tzinfo=UTC))
        assert run.logical_date is None and run.state == "success"
        acquired = xcom(run, "data.acquire")
        assert acquired["rows"] == 1500 and acquired["source"] == str(tmp_path / "data" / "2026-11-03.csv")
        registry = ModelRegistry(store_of(config), "churn_no_ds")
        assert registry.production() == xcom(run, "training.train")["model_version"]
        assert registry.get(registry.production())["lineage"]["source"] == acquired["source"]

    def test_a_worse_candidate_is_rejected_and_production_kept(self, pipeline, tmp_path):
        # Labels without signal are what validation's label_association catches; here the gate is under test.
        config, dag = pipeline(churn_config("churn_reject", tmp_path, validation={"max_label_association_drop": 1.0}))
        write_day(tmp_path, "2026-11-01", make_churn(2500, seed=1))
        run, _ = run_dag(dag, "2026-11-01")
        v1 = xcom(run, "training.train")["model_version"]
        noisy = make_churn(2500, seed=3)
        noisy["churned"] = np.random.default_rng(0).permutation(noisy["churned"].to_numpy())  # labels carry no signal
        write_day(tmp_path, "2026-11-02", noisy)
        run2, states = run_dag(dag, "2026-11-02")
        assert states["registry.reject"] == "success" and states["registry.bless"] == "skipped"
        registry = ModelRegistry(store_of(config), "churn_reject")
        v2 = xcom(run2, "training.train")["model_version"]
        assert registry.get(v2)["status"] == "rejected" and "roc_auc" in registry.get(v2)["reason"]
        assert registry.production() == v1

    def test_retried_tasks_reuse_their_artifacts(self, pipeline, tmp_path):
        config, dag = pipeline(churn_config("churn_retry", tmp_path))
        write_day(tmp_path, "2026-11-01", make_churn(2000, seed=4))
        run, _ = run_dag(dag, "2026-11-01")
        store = store_of(config)
        ids = {t: xcom(run, t) for t in ("data.acquire", "features.preprocess", "training.train")}
        keys_before = {k: store.read_bytes(k) for k in store.list("") if not k.startswith("reports/")}
        doc_before = ModelRegistry(store, "churn_retry").load()

        # dag.test() on the same logical date clears every task of the finished run and runs it again.
        rerun, states = run_dag(dag, "2026-11-01")
        assert rerun.run_id == run.run_id and rerun.state == "success", states
        assert xcom(rerun, "data.acquire")["dataset_id"] == ids["data.acquire"]["dataset_id"]
        assert xcom(rerun, "data.acquire")["created"] is False
        assert xcom(rerun, "features.preprocess")["features_id"] == ids["features.preprocess"]["features_id"]
        assert xcom(rerun, "features.preprocess")["cached"] is True
        assert xcom(rerun, "training.train")["model_version"] == ids["training.train"]["model_version"]
        assert xcom(rerun, "training.train")["cached"] is True
        assert ModelRegistry(store, "churn_retry").load() == doc_before, "no second registry entry, no new revision"
        assert {k: store.read_bytes(k) for k in store.list("") if not k.startswith("reports/")} == keys_before

    def test_same_inputs_give_a_byte_identical_model(self, pipeline, tmp_path):
        """Two pipelines with separate stores, same data and params: the same model file."""
        frame = make_churn(1500, seed=9)
        models = []
        for name in ("churn_det_a", "churn_det_b"):
            root = tmp_path / name
            root.mkdir()
            write_day(root, "2026-11-01", frame)
            config, dag = pipeline(churn_config(name, root))
            run, _ = run_dag(dag, "2026-11-01")
            version = xcom(run, "training.train")["model_version"]
            models.append((version, store_of(config).read_bytes(f"models/{name}/{version}/model.txt")))
        assert models[0] == models[1]


class TestPackagedDatasets:
    """Real datasets shipped inside scikit-learn, not data made here."""

    @pytest.mark.parametrize(
        ("loader", "task", "metric", "threshold"),
        [
            pytest.param("load_breast_cancer", "classification", "roc_auc", 0.95, id="breast-cancer-classification"),
            pytest.param("load_diabetes", "regression", "rmse", 70.0, id="diabetes-regression"),
        ],
    )
    def test_end_to_end(self, pipeline, tmp_path, loader, task, metric, threshold):
        import sklearn.datasets

        frame = getattr(sklearn.datasets, loader)(as_frame=True).frame
        frame.columns = [c.replace(" ", "_") for c in frame.columns]
        numeric = [c for c in frame.columns if c != "target"]
        name = loader.removeprefix("load_")
        write_day(tmp_path, "2026-11-01", frame)
        config, dag = pipeline(
            churn_config(
                name,
                tmp_path,
                label="target",
                task=task,
                features={"numeric": numeric, "categorical": []},
                evaluation={"metric": metric, "threshold": threshold},
                validation={"min_rows": 100},
            )
        )
        run, states = run_dag(dag, "2026-11-01")
        assert run.state == "success", states
        evaluation = xcom(run, "evaluation.evaluate")
        assert evaluation["blessed"], evaluation["reason"]
        assert ModelRegistry(store_of(config), name).production() == evaluation["model_version"]
        report = store_of(config).read_text(evaluation["report_uri"].split("/artifacts/", 1)[1])
        assert "BLESSED" in report and metric in report


CORRUPTIONS = {
    "missing_column": lambda f: f.drop(columns=["monthly_charges"]),
    "extra_column": lambda f: f.assign(promo_code="SPRING"),
    "type_change": lambda f: f.assign(tenure_months=f["tenure_months"].astype(int).astype(str) + "m"),
    "null_ratio": lambda f: f.assign(support_calls=f["support_calls"].where(np.arange(len(f)) % 3 != 0)),
    "out_of_range": lambda f: f.assign(monthly_charges=f["monthly_charges"] * 50),
    "unseen_categories": lambda f: f.assign(region=np.where(np.arange(len(f)) % 4 == 0, "atlantis", f["region"])),
    "empty_data": lambda f: f.iloc[:10],
    "infinite_values": lambda f: f.assign(data_usage_gb=f["data_usage_gb"].where(f.index != 5, np.inf)),
    "duplicate_rows": lambda f: pd.concat([f, f.iloc[:300]], ignore_index=True),
    "label_association": lambda f: f.assign(tenure_months=f["tenure_months"].sample(frac=1, random_state=1).to_numpy()),
    "unseen_label_class": lambda f: f.assign(churned=np.where(np.arange(len(f)) % 200 == 0, 2, f["churned"])),
}


class TestValidationGate:
    def test_each_corruption_stops_the_run_before_training(self, pipeline, tmp_path):
        config, dag = pipeline(churn_config("churn_bad", tmp_path))
        write_day(tmp_path, "2026-11-01", make_churn(1500, seed=1))
        run, _ = run_dag(dag, "2026-11-01")
        assert run.state == "success"
        store = store_of(config)
        registry_before = ModelRegistry(store, "churn_bad").load()
        models_before = store.list("models/churn_bad")
        for day, (kind, corrupt) in enumerate(CORRUPTIONS.items(), start=2):
            ds = f"2026-11-{day:02d}"
            write_day(tmp_path, ds, corrupt(make_churn(1500, seed=day)))
            bad_run, states = run_dag(dag, ds)
            assert bad_run.state == "failed", kind
            assert states["data.acquire"] == "success" and states["data.validate"] == "failed", (kind, states)
            downstream = [t for t in states if t not in ("data.acquire", "data.validate")]
            assert all(states[t] in ("upstream_failed", "skipped") for t in downstream), (kind, states)
            report = json.loads(
                store.read_text(f"reports/churn_bad/{bad_run.run_id.replace(':', '_').replace('+', '_')}/validation.json")
            )
            assert kind in {a["kind"] for a in report["anomalies"]}, (kind, report["anomalies"])
            linked = xcom(bad_run, "data.validate", key="mlops_report_uri")
            assert linked.endswith("/validation.html") and bad_run.run_id.replace(":", "_")[:20] in linked, (
                "the failed task links it"
            )
        assert ModelRegistry(store, "churn_bad").load() == registry_before
        assert store.list("models/churn_bad") == models_before


class TestS3Artifacts:
    def test_pipeline_on_s3_through_the_amazon_provider_hook(self, pipeline, tmp_path, s3_bucket, aws_connection, monkeypatch):
        """The YAML names an mlops_artifacts connection (artifacts.conn_id) that holds the root and its AWS connection."""
        import boto3

        endpoint, bucket = s3_bucket
        extra = {"artifact_root": f"s3://{bucket}/mlops", "aws_conn_id": aws_connection}
        monkeypatch.setenv("AIRFLOW_CONN_TEAM_ARTIFACTS", json.dumps({"conn_type": "mlops_artifacts", "extra": extra}))
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for part, seed in (("a", 1), ("b", 2)):
            client.put_object(
                Bucket=bucket, Key=f"raw/2026-11-01/part-{part}.csv", Body=make_churn(800, seed=seed).to_csv(index=False).encode()
            )
        config, dag = pipeline(
            churn_config(
                "churn_s3",
                tmp_path,
                artifacts={"conn_id": "team_artifacts"},
                source={"uri": f"s3://{bucket}/raw/{{{{ ds }}}}/", "aws_conn_id": aws_connection},
            )
        )
        run, states = run_dag(dag, "2026-11-01")
        assert run.state == "success", states
        assert xcom(run, "data.acquire")["rows"] == 1600
        assert config.artifacts.root is None and dag.get_task("data.acquire").mlops_conn_id == "team_artifacts"
        store = ArtifactStore.from_uri(extra["artifact_root"], client)
        version = xcom(run, "training.train")["model_version"]
        assert ModelRegistry(store, "churn_s3").production() == version
        keys = set(store.list(""))
        assert f"models/churn_s3/{version}/model.txt" in keys and "registry/churn_s3.json" in keys
        assert any(k.startswith("features/churn_s3/") and k.endswith(".parquet") for k in keys)
        assert not (tmp_path / "artifacts").exists(), "nothing may land on the local disk"


class TestRerunningOldRuns:
    def test_rerunning_an_old_run_never_rolls_production_back(self, pipeline, tmp_path):
        config, dag = pipeline(
            churn_config(
                "churn_rerun",
                tmp_path,
                evaluation={"metric": "roc_auc", "threshold": 0.5},
                validation={"max_out_of_range_share": 1.0, "max_unseen_category_share": 1.0, "max_volume_ratio": 100.0},
            )
        )
        # A small first day and a large second one: the second model beats the first.
        for ds, rows in (("2026-11-01", 300), ("2026-11-02", 4000)):
            write_day(tmp_path, ds, make_churn(rows, seed=rows))
        _run1, _ = run_dag(dag, "2026-11-01")
        run2, _ = run_dag(dag, "2026-11-02")
        registry = ModelRegistry(store_of(config), "churn_rerun")
        v2 = xcom(run2, "training.train")["model_version"]
        assert registry.production() == v2, xcom(run2, "evaluation.evaluate")["reason"]
        rerun, states = run_dag(dag, "2026-11-01")  # clear and re-run the older run
        assert rerun.state == "success", states
        assert registry.production() == v2
