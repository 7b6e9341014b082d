"""A real Airflow api-server with the ops UI over a pipeline whose store a real training run filled, and headless
chromium (Debian's, through playwright, which never downloads a browser of its own) to drive it.

The package fixtures build, once: the training DAG run with ``dag.test()`` (the first model goes to production), a
second version on the canary (moved through two steps by the real canary analysis sensor) and a third blessed one,
two drift checks over logged predictions, a retrain request waiting for approval (``monitor.approval: manual``);
then an ``airflow api-server`` on a free port of 127.0.0.1 with its own AIRFLOW_HOME, SimpleAuthManager users
``admin`` and ``viewer`` (passwords in a pre-written file) and the test session's metadata DB, where the run is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import DAG_FILE, DAGS, REPO, _free_port, run_dag

CHROMIUM = Path("/usr/bin/chromium")
PIPELINE = "opsui"
PASSWORDS = {"admin": "admin-pw", "viewer": "viewer-pw"}
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
"""Screenshots of every browser test (gitignored); the README's copies live in docs/screenshots/."""
GATE = ("roc_auc", 0.5, -1.0, [], None, None)
"""A gate every extra version passes: they only need to be blessed to be deployed."""


@dataclass
class Site:
    """What the api-server shows: the pipeline's config file, its store, the run and the versions."""

    config_path: Path
    store: object
    v1: str
    v2: str
    v3: str
    features_id: str
    run_id: str
    request_id: str


def _config(root: Path) -> dict:
    return {
        "pipeline": PIPELINE,
        "schedule": None,
        "artifacts": {"root": str(root / "artifacts")},
        "source": {"uri": str(root / "data" / "{{ ds }}.csv")},
        "label": "churned",
        "task": "classification",
        "features": {
            "numeric": ["tenure_months", "monthly_charges", "support_calls", "data_usage_gb"],
            "categorical": ["contract", "payment_method", "region"],
        },
        "model": {"num_boost_round": 30, "params": {"num_leaves": 7}},
        "evaluation": {"metric": "roc_auc", "threshold": 0.5},
        "validation": {"max_out_of_range_share": 1.0, "max_unseen_category_share": 1.0, "max_volume_ratio": 100.0},
        "canary": {"steps": [20, 50], "bake_minutes": 1, "check_seconds": 1, "watch": {"minutes": 0}},
        "monitor": {"min_rows": 50, "approval": "manual"},
    }


def _extra_version(store, features_id: str, seed: int) -> str:
    """Train, evaluate and register one more blessed version on the run's features, with the stage functions."""
    from airflow_mlops.stages.evaluation import GateSettings, evaluate, register
    from airflow_mlops.stages.training import TrainSettings, train

    version = train(store, PIPELINE, features_id, TrainSettings({"num_leaves": 7}, 20 + seed, seed, None))["model_version"]
    result = evaluate(store, PIPELINE, version, features_id, GateSettings(*GATE), run_id=f"manual-{seed}")
    assert register(store, PIPELINE, result, lineage={"features_id": features_id}, promote=False)["status"] == "blessed"
    return version


def _log(store, version: str, rows, tag: str, *, labels: bool = False) -> None:
    """Log ``rows`` as scored by the stored model ``version``, as the model server does (with their labels)."""
    from airflow_mlops.ml.synthetic import FEATURES
    from airflow_mlops.serving.predlog import PredictionLog, feedback_row, prediction_row
    from airflow_mlops.stages.evaluation import score_raw

    records = rows.to_dict("records")
    log = PredictionLog(store, PIPELINE)
    scores = score_raw(store, PIPELINE, version, rows)
    log.append(
        [
            prediction_row(
                row_id=f"{tag}-{row['customer_id']}",
                version=version,
                prediction=float(p),
                latency_ms=5.0 + n % 7,
                request_id=f"{tag}-{version}-{n // 10}",
                features={k: row[k] for k in FEATURES},
            )
            for n, (row, p) in enumerate(zip(records, scores, strict=True))
        ]
    )
    log.flush()
    if labels:
        feedback = PredictionLog(store, PIPELINE, kind="feedback")
        feedback.append([feedback_row(f"{tag}-{r['customer_id']}", float(r["churned"])) for r in records])
        feedback.flush()


def _drift_checks(store, version: str) -> None:
    """Two drift checks over predictions logged by ``version``: close to the training data, then shifted."""
    from airflow_mlops.ml.synthetic import make_churn
    from airflow_mlops.stages.monitoring import drift_check

    for i, shift in enumerate((0.0, 40.0)):
        rows = make_churn(300, seed=40 + i)
        rows["monthly_charges"] += shift
        _log(store, version, rows, f"drift{i}")
        drift_check(store, PIPELINE, method="psi", column_threshold=0.2, share_threshold=0.1, run_id=f"drift-check-{i}")


def _canary_steps(store, root: str, production: str, canary: str) -> None:
    """Two canary steps judged by the real analysis sensor on logged traffic and labels (20% -> 50% -> 80%)."""
    from airflow_mlops.ml.synthetic import make_churn
    from airflow_mlops.sensors.canary import CanaryAnalysisSensor

    sensor = CanaryAnalysisSensor(
        task_id="analysis",
        pipeline=PIPELINE,
        artifact_root=root,
        steps=[20, 50, 80],
        problem_type="classification",
        min_requests=10,
        criteria={"max_prediction_divergence": 0.9, "min_label_quality_ratio": 0.5, "max_p95_latency_ratio": 5.0},
        deferrable=False,
    )
    for step in range(2):
        rows = make_churn(200, seed=60 + step)
        for version in (canary, production):
            _log(store, version, rows, f"step{step}-{version}", labels=True)
        assert sensor.check() == (False, None), "the step passed and the canary moved on"


@pytest.fixture(scope="package")
def site(airflow_db, tmp_path_factory) -> Site:
    from airflow_mlops.factories import build_training_dag, load_pipeline_config
    from airflow_mlops.ml.synthetic import make_churn
    from airflow_mlops.stages.deployment.canary import canary_deploy
    from airflow_mlops.stages.retraining import request_retrain
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.registry import ModelRegistry

    root = tmp_path_factory.mktemp("opsui")
    (root / "data").mkdir()
    make_churn(600, seed=1).to_csv(root / "data" / "2026-11-01.csv", index=False)
    config_path = root / "configs" / f"{PIPELINE}.yaml"
    config_path.parent.mkdir()
    config_path.write_text(yaml.safe_dump(_config(root), sort_keys=False))
    dag_file = DAGS / f"test_{PIPELINE}.py"
    dag_file.write_text(DAG_FILE.format(path=str(config_path)))
    config = load_pipeline_config(config_path)
    run, states = run_dag(build_training_dag(config), "2026-11-01")
    assert run.state == "success", states
    store = ArtifactStore.from_uri(config.artifacts.root)
    doc = ModelRegistry(store, PIPELINE).load()
    v1 = doc["aliases"]["production"]["version"]
    features_id = doc["versions"][v1]["lineage"]["features_id"]
    v2, v3 = _extra_version(store, features_id, seed=7), _extra_version(store, features_id, seed=8)
    _drift_checks(store, v1)
    canary_deploy(store, PIPELINE, v2, 20)
    _canary_steps(store, config.artifacts.root, v1, v2)
    request = request_retrain(
        store, PIPELINE, reason="drift: monthly_charges", details={}, cooldown_hours=0, run_id="monitor-1", approval="manual"
    )
    yield Site(config_path, store, v1, v2, v3, features_id, run.run_id, request["request_id"])
    dag_file.unlink(missing_ok=True)


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the api-server did not start:\n{log.read_text()[-4000:]}") from None
            time.sleep(0.5)


@pytest.fixture(scope="package")
def api_server(site, airflow_db, tmp_path_factory) -> str:
    """``airflow api-server`` on a free port of 127.0.0.1, with the ops UI plugin; yields its base URL."""
    home = tmp_path_factory.mktemp("api-home")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_db}/airflow.db",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API_AUTH__JWT_SECRET": "browser-test-secret",
        "AIRFLOW__API__SECRET_KEY": "browser-test-secret",
        "AIRFLOW__MLOPS__CONFIGS": str(site.config_path.parent),
    }
    log = home / "api-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_for(f"{base}/api/v2/monitor/health", proc, log)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="package")
def browser():
    """Headless chromium from Debian (``make browser`` installs it); playwright only drives it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, api_server):
    """``new_page(user=None)``: a page in a fresh browser context (1280x800), logged in through Airflow's login
    page as ``user`` when given."""
    contexts = []

    def make(user: str | None = None):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=api_server)
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        if user:
            login(page, user)
        return page

    yield make
    for context in contexts:
        context.close()


def login(page, user: str, next_path: str = "/mlops/") -> None:
    """Log in through Airflow's own login page, as a person would."""
    page.goto(next_path)
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_path}")


def screenshot(page, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def publish(path: Path) -> None:
    """Copy a screenshot to docs/screenshots/ (the README's)."""
    docs = REPO / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, docs / path.name)
