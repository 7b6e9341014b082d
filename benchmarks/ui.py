"""Ops UI response times: each page of the plugin, served by Airflow's own api-server app (real auth, a JWT
cookie), over a pipeline with VERSIONS model versions and EVENTS events; next to the baseline of reading the
registry and events files raw (read + JSON parse of every event). Pages parse only the events appended since their
last read (the log only grows), so a cold row shows the pipeline page with the whole log parsed.

The store is synthetic but shaped like the stages write it: registry entries with metrics and lineage, canary
steps and analyses with their figures, drift checks with 25 column scores, retrain requests and outcomes.
It migrates an Airflow home of its own under the system temp dir first (about half a minute).
Usage: .venv/bin/python benchmarks/ui.py [versions] [events] [repeats]
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINE = "churn"
COLUMNS = [f"num_{i}" for i in range(20)] + [f"cat_{i}" for i in range(5)]


def fill_store(root: Path, versions: int, events: int) -> None:
    """A registry of ``versions`` versions (production, canary) and an events log of ``events`` lines."""
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.layout import events_key, model_prefix, report_prefix
    from airflow_mlops.store.registry import ModelRegistry

    store, rng, start = ArtifactStore.from_uri(str(root)), random.Random(0), datetime(2026, 1, 1, tzinfo=UTC)
    registry = ModelRegistry(store, PIPELINE)
    ids = [f"{i:012x}" for i in range(1, versions + 1)]

    def fill(doc: dict) -> None:
        for i, version in enumerate(ids):
            run_id = f"scheduled__{(start + timedelta(days=i)).isoformat()}"
            doc["versions"][version] = {
                "status": "blessed" if i % 4 else "rejected",
                "metrics": {"roc_auc": 0.7 + rng.random() / 10, "log_loss": rng.random(), "accuracy": rng.random()},
                "lineage": {
                    "dataset_id": f"{i:064x}",
                    "features_id": f"f{i}",
                    "dag_id": f"mlops_{PIPELINE}_training",
                    "run_id": run_id,
                },
                "reason": "roc_auc=0.78 meets the minimum 0.7",
                "registered_at": (start + timedelta(days=i)).isoformat(),
                "canary": {"decision": "promote", "reason": "within limits"},
            }
        doc["aliases"] = {
            "production": {"version": ids[-3], "promoted_at": start.isoformat()},
            "canary": {"version": ids[-1], "weight": 20, "since": time.time()},
        }

    registry.update(fill)
    for version in ids:
        store.write_text(f"{model_prefix(PIPELINE, version)}/card.html", "<h1>card</h1>" + "x" * 20_000)
    side = {"requests": 250, "rows": 2500, "error_rate": 0.001, "p95_latency_ms": 3.2, "mean_prediction": 0.31, "labels": 120}
    lines = []
    for n in range(events):
        when = (start + timedelta(minutes=10 * n)).isoformat()
        kind = ("drift_check", "canary_step", "canary_analysis", "retrain_request", "retrain_done", "promote")[n % 6]
        event = {"time": when, "pipeline": PIPELINE, "kind": kind, "version": ids[n % versions], "reason": "why " * 8}
        if kind == "drift_check":
            run = f"scheduled__{when}"
            event |= {
                "event_id": f"drift-{run}",
                "drifted": n % 5 == 0,
                "rows": 5000,
                "scores": {c: rng.random() / 3 for c in COLUMNS},
                "checked_until": n,
                "report_uri": store.uri(f"{report_prefix(PIPELINE, run)}/drift.html"),
                "data_quality": [],
            }
        elif kind == "canary_analysis":
            event |= {
                "weight": 20,
                "passed": True,
                "figures": {"canary": side, "production": side, "prediction_divergence": 0.05},
            }
        elif kind == "retrain_request":
            event |= {"event_id": f"retrain-{n}", "details": {"columns": COLUMNS[:3], "scores": {}}}
        elif kind == "retrain_done":
            event |= {"event_id": f"done-retrain-{n - 1}", "request_id": f"retrain-{n - 1}", "status": "promoted"}
        lines.append(json.dumps(event, sort_keys=True))
    store.write_text(events_key(PIPELINE), "\n".join(lines) + "\n")


def timed(call, repeats: int) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up call)."""
    call()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def main(versions: int = 50, events: int = 10_000, repeats: int = 20) -> None:
    home = Path(tempfile.mkdtemp(prefix="mlops-bench-ui-"))
    try:
        run(home, versions, events, repeats)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(home: Path, versions: int, events: int, repeats: int) -> None:
    """Migrate an Airflow home in ``home``, fill a store there, and time the pages."""
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="ops:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__MLOPS__CONFIGS=str(home / "configs"),
    )
    (home / "passwords.json").write_text(json.dumps({"ops": "ops-pw"}))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    root = home / "store"
    fill_store(root, versions, events)
    config = (REPO / "dags" / "configs" / "churn.yaml").read_text() + f"\nartifacts: {{root: 'file://{root}'}}\n"
    (home / "configs").mkdir()
    (home / "configs" / "churn.yaml").write_text(config.replace('uri: "../../data', f'uri: "{REPO}/data'))

    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from airflow_mlops.plugins.readers import events as page_events
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.events import read_events
    from airflow_mlops.store.layout import model_prefix
    from airflow_mlops.store.registry import ModelRegistry

    web = TestClient(create_app("core"))
    web.cookies.set("_token", web.post("/auth/token", json={"username": "ops", "password": "ops-pw"}).json()["access_token"])
    store = ArtifactStore.from_uri(str(root))

    def raw() -> None:
        ModelRegistry(store, PIPELINE).load()
        read_events(store, PIPELINE)

    def get(path: str) -> None:
        response = web.get(path, follow_redirects=False)
        assert response.status_code in (200, 303), (path, response.status_code)

    def cold(path: str) -> None:
        """As after a restart or a rewrite of the log: the events are parsed whole, not just what was appended."""
        page_events._EVENTS.clear()
        get(path)

    card = f"{model_prefix(PIPELINE, f'{1:012x}')}/card.html"
    rows = [
        ("baseline: registry + events read and parsed", timed(raw, repeats)),
        ("GET /mlops/  (overview)", timed(lambda: get("/mlops/"), repeats)),
        ("GET /mlops/pipelines/churn", timed(lambda: get("/mlops/pipelines/churn"), repeats)),
        ("GET /mlops/pipelines/churn, cold (events parsed whole)", timed(lambda: cold("/mlops/pipelines/churn"), repeats)),
        ("GET /mlops/dags/mlops_churn_training  (redirect)", timed(lambda: get("/mlops/dags/mlops_churn_training"), repeats)),
        (f"GET /mlops/reports/churn/{card}", timed(lambda: get(f"/mlops/reports/churn/{card}"), repeats)),
    ]
    size = (root / "events" / f"{PIPELINE}.jsonl").stat().st_size
    print(f"{versions} versions, {events} events ({size / 1e6:.1f} MB), median of {repeats} requests each:")
    for name, seconds in rows:
        print(f"  {name:<72} {seconds * 1000:8.1f} ms  ({seconds / rows[0][1]:.1f}x baseline)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
