"""``examples/``: one YAML per deployment shape; every one lints clean and builds its DAGs."""

import warnings
from pathlib import Path

import pytest

from airflow_mlops.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHAPES = ["kserve.yaml", "kubernetes-gpu.yaml", "local.yaml", "team-s3.yaml", "tuning.yaml"]


@pytest.fixture(scope="module")
def built() -> dict:
    """Every example's DAGs, built by ``load_pipelines`` (a broken file would be a warning here)."""
    from airflow_mlops.factories import load_pipelines

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return load_pipelines(EXAMPLES)


class TestExamples:
    def test_one_file_per_shape(self):
        assert sorted(p.name for p in EXAMPLES.iterdir()) == SHAPES

    def test_lint_passes(self, capsys):
        assert main(["lint", str(EXAMPLES)]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.splitlines() == [f"OK {EXAMPLES / name}" for name in SHAPES]

    def test_every_example_builds_its_dags(self, built):
        assert set(built) == {
            "mlops_churn_local_training",
            "mlops_churn_local_monitor",
            "mlops_churn_gpu_training",
            "mlops_churn_kserve_training",
            "mlops_churn_kserve_monitor",
            "mlops_churn_tuning_training",
            "mlops_churn_team_training",
            "mlops_churn_team_monitor",
        }

    def test_each_shape_has_what_makes_it(self, built):
        from airflow_mlops.operators.training import KubernetesTrainingOperator

        gpu_train = built["mlops_churn_gpu_training"].get_task("training.train")
        assert isinstance(gpu_train, KubernetesTrainingOperator)
        assert built["mlops_churn_kserve_training"].get_task("deploy.canary").target == "kserve"
        assert {"training.trial", "training.select"} <= set(built["mlops_churn_tuning_training"].task_dict)
        team = built["mlops_churn_team_training"]
        assert "data.wait_for_source" in team.task_dict
        assert team.get_task("data.acquire").mlops_conn_id == "mlops_artifacts"
