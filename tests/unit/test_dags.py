"""The example DAGs: they load, and parsing them imports nothing heavy."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAVY = ("pandas", "pyarrow", "apache_beam", "lightgbm", "evidently", "kubernetes", "numpy", "boto3")


class TestExampleDags:
    def test_dagbag_has_no_import_errors(self, airflow_db):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO_DAGS))
        assert bag.import_errors == {}
        assert {"mlops_churn_training", "mlops_churn_monitor"} <= set(bag.dag_ids)
        dag = bag.get_dag("mlops_churn_training")
        assert {t.task_id for t in dag.tasks} >= {
            "data.acquire",
            "data.validate",
            "features.preprocess",
            "training.train",
            "evaluation.evaluate",
            "evaluation.gate",
            "registry.bless",
            "registry.reject",
        }
        close = dag.get_task("outcome.close_request")
        assert close.upstream_task_ids == {
            "registry.reject",
            "deploy.watch",
            "deploy.promote",
            "deploy.rollback",
        }, "closed with the outcome of the canary and of the post-promotion watch"
        assert dag.get_task("deploy.watch").upstream_task_ids == {"deploy.promote"}
        assert close.trigger_rule == "all_done"
        lifecycle = ["data", "features", "training", "evaluation", "registry", "deploy", "outcome"]
        for task in dag.tasks:  # the graph reads left to right: no edge runs back to an earlier stage
            for downstream in task.downstream_task_ids:
                before, after = task.task_id.split(".")[0], downstream.split(".")[0]
                assert lifecycle.index(before) <= lifecycle.index(after), f"{task.task_id} -> {downstream}"

    @pytest.mark.parametrize("dag_file", sorted(REPO_DAGS.glob("*.py")), ids=lambda p: p.name)
    def test_parsing_imports_nothing_heavy(self, dag_file):
        code = (
            "import runpy, sys; runpy.run_path(sys.argv[1]);"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
        )
        result = subprocess.run([sys.executable, "-c", code, str(dag_file)], capture_output=True, text=True)
        assert result.returncode == 0, f"{dag_file.name} imported {result.stdout.strip()} at parse time\n{result.stderr[-2000:]}"
