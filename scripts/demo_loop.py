"""Drive the closed loop through a running Airflow (REST API) and model server (HTTP), then summarize.

Started by scripts/demo.sh, which starts the services. Steps:
  1. unpause both DAGs: the scheduler runs today's daily training (v1 from today's export; the first
     model goes straight to production) and the monitor's hourly run, which waits for predictions;
  2. send traffic like the training data: that monitor run finds no drift;
  3. the population shifts: drifting traffic (kept up from now on) and a refreshed export of today;
     a monitor run finds drift and requests retraining, whose Asset event makes the scheduler start
     the training DAG;
  4. that run trains v2 -> gate -> canary on the live traffic -> promote or rollback;
  5. print a summary: DAG runs, models, the events log, the traffic.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from airflow_mlops.factories.loader import load_pipeline_config
from airflow_mlops.ml.synthetic import as_requests, make_churn
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.events import read_events
from airflow_mlops.store.registry import ModelRegistry

DRIFT = 0.8  # how far the shifted population moves (airflow-mlops example-data --drift)
TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}


def say(message: str) -> None:
    print(message, flush=True)


def wait_for(what: str, check, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(every)
    raise SystemExit(f"!! gave up waiting for {what} after {timeout:.0f}s")


class Airflow:
    """The few calls of Airflow's stable REST API (v2) the demo needs."""

    def __init__(self, url: str, logs: Path) -> None:
        self.http = httpx.Client(base_url=f"{url}/api/v2", timeout=30)
        self.logs = logs

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def unpause(self, dag_id: str) -> None:
        self.http.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, logical_date: str | None) -> str:
        response = self.http.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": logical_date})
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after", limit=100)["dag_runs"]

    def tasks(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value", deserialize=True)[
            "value"
        ]

    def follow(self, dag_id: str, run_id: str, timeout: float) -> dict[str, str]:
        """Wait for the run to finish, printing each task as it ends; exit with its log on failure."""
        shown: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ti in sorted(self.tasks(dag_id, run_id), key=lambda t: t["end_date"] or "~"):
                if ti["state"] in TERMINAL and ti["task_id"] not in shown:
                    shown.add(ti["task_id"])
                    took = f"{ti['duration']:.1f}s" if ti.get("duration") is not None else ""
                    say(f"     {ti['task_id']:<28}{ti['state']:<17}{took}")
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                states = {ti["task_id"]: ti["state"] for ti in self.tasks(dag_id, run_id)}
                if run["state"] == "failed":
                    self.show_failure(dag_id, run_id, states)
                return states
            time.sleep(2)
        raise SystemExit(f"!! {dag_id} run {run_id} did not finish within {timeout:.0f}s")

    def show_failure(self, dag_id: str, run_id: str, states: dict[str, str]) -> None:
        failed = [t for t, s in states.items() if s == "failed"]
        say(f"!! {dag_id} run {run_id} failed at {failed}")
        for task_id in failed:
            for log in sorted(
                (self.logs.parent / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}").glob("*.log")
            ):
                say(f"--- {log}\n" + "\n".join(log.read_text().splitlines()[-25:]))
        raise SystemExit(1)


class Traffic:
    """Clients of the model server: batches of rows to /predict, the true labels to /feedback."""

    def __init__(self, server: httpx.Client) -> None:
        self.server = server
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, frame, batch: int = 25, pause: float = 0.0) -> None:
        rows_all, labels = as_requests(frame), frame["churned"].tolist()
        for i in range(0, len(rows_all), batch):
            if self._stop.is_set():
                return
            rows = rows_all[i : i + batch]
            response = self.server.post("/predict", json={"instances": rows})
            self.statuses[response.status_code] += 1
            self.sent += len(rows)
            if response.status_code == 200:
                self.versions.update(p["version"] for p in response.json()["predictions"])
                self.server.post(
                    "/feedback", json=[{"id": r["id"], "label": y} for r, y in zip(rows, labels[i : i + batch], strict=True)]
                )
            if pause:
                time.sleep(pause)

    def start(self, frame, **kwargs: Any) -> None:
        """Keep sending ``frame`` (round and round) from a thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                self.send(frame, **kwargs)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", required=True, help="Airflow API server URL")
    parser.add_argument("--server", required=True, help="model server URL")
    parser.add_argument("--config", required=True, help="pipeline YAML")
    parser.add_argument("--artifact-root", required=True)
    parser.add_argument("--export", required=True, type=Path, help="today's export (data/churn/<date>.csv)")
    parser.add_argument("--logs", required=True, type=Path)
    args = parser.parse_args()
    started = time.monotonic()

    config = load_pipeline_config(args.config)
    pipeline = config.pipeline
    training, monitor = config.training_dag_id, config.monitor_dag_id
    store = ArtifactStore.from_uri(args.artifact_root)
    registry = ModelRegistry(store, pipeline)
    airflow = Airflow(args.api, args.logs)
    server = httpx.Client(base_url=args.server, timeout=30)
    traffic = Traffic(server)

    wait_for("the Airflow API server", lambda: airflow.http.get("/monitor/health").status_code == 200, 180)
    wait_for(
        f"the DAG processor to parse {training} and {monitor}",
        lambda: all(airflow.http.get(f"/dags/{d}").status_code == 200 for d in (training, monitor)),
        180,
        every=2,
    )
    say(f"==> Airflow is up at {args.api} ({time.monotonic() - started:.0f}s)")

    say(f"==> [1/4] Unpausing {training} and {monitor}: the scheduler starts today's daily training run (v1 from")
    say(f"    {args.export}; the first model goes straight to production) and the monitor's hourly run")
    for dag_id in (training, monitor):
        airflow.unpause(dag_id)
    run = wait_for(f"the scheduler to start {training}", lambda: next(iter(airflow.runs(training)), None), 120, every=2)
    airflow.follow(training, run["dag_run_id"], timeout=600)
    v1 = registry.production()
    say(f"   production is now {v1}")
    wait_for("the model server to load production", lambda: server.get("/health").json().get("production") == v1, 60)

    say(
        f"==> [2/4] Traffic like the training data (600 rows); the monitor run waits for {config.monitor.min_rows} new predictions"
    )
    traffic.send(make_churn(600, seed=11))
    check = run_monitor(airflow, monitor)
    say(f"   drift check: {check['reason']}")

    say("==> [3/4] The population shifts: drifting traffic from now on (and today's export is refreshed with it)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_mlops.cli",
            "example-data",
            "--out",
            str(args.export.parent),
            "--dates",
            args.export.stem,
            "--drift",
            str(DRIFT),
        ],
        check=True,
    )
    traffic.start(make_churn(4000, seed=12, drift=DRIFT), pause=0.05)
    check = run_monitor(airflow, monitor, fresh=True)
    say(f"   drift check: {check['reason']}")
    if not check["drifted"]:
        raise SystemExit("!! the drifting traffic was not found to drift")

    say(f"==> [4/4] The retrain request's Asset event starts {training}: v2 -> gate -> canary on live traffic")
    run = wait_for(
        f"the scheduler to start {training} from the retrain Asset",
        lambda: next((r for r in airflow.runs(training) if r["run_type"] == "asset_triggered"), None),
        120,
        every=2,
    )
    say(f"   run {run['dag_run_id']} ({run['run_type']}, triggered by {run['triggered_by']})")
    states = airflow.follow(training, run["dag_run_id"], timeout=900)
    traffic.stop()
    decision = (
        "promoted"
        if states.get("deploy.promote") == "success"
        else "rolled back"
        if states.get("deploy.rollback") == "success"
        else "rejected by the gate"
        if states.get("registry.reject") == "success"
        else None
    )
    if decision is None:
        airflow.show_failure(training, run["dag_run_id"], states)  # exits: the run ended without a decision
    say(f"   v2 {decision}; production is {registry.production()}")

    summary(airflow, (training, monitor), store, registry, pipeline, traffic, config)
    say(f"==> Closed loop done in {time.monotonic() - started:.0f}s")
    return 0


def run_monitor(airflow: Airflow, monitor: str, *, fresh: bool = False) -> dict[str, Any]:
    """Follow the monitor run that is waiting for predictions (its hourly run), or start one.

    ``fresh``: a run started once those in flight have ended, whose check reads only what is logged from then on.
    A run in flight may be past its wait already: when the demo crosses the top of an hour while v1 trains, two
    hourly runs wait for the calm traffic, and both check it (a check reads the rows since the last recorded one)."""
    active = [r for r in airflow.runs(monitor) if r["state"] in ("queued", "running")]
    if fresh:
        for run in active:
            say(f"   monitor run {run['dag_run_id']} is in flight; its check may read the rows before: waiting for it")
            airflow.follow(monitor, run["dag_run_id"], timeout=300)
        active = []
    run_id = active[0]["dag_run_id"] if active else airflow.trigger(monitor, None)
    say(f"   monitor run {run_id}")
    airflow.follow(monitor, run_id, timeout=300)
    return airflow.xcom(monitor, run_id, "drift_check")


def summary(airflow: Airflow, dag_ids, store, registry, pipeline: str, traffic: Traffic, config) -> None:
    say("\n==================================== summary ====================================")
    say("DAG runs")
    table(
        ["dag", "run id", "triggered by", "state", "took"],
        [[dag_id, r["dag_run_id"], r["triggered_by"], r["state"], _took(r)] for dag_id in dag_ids for r in airflow.runs(dag_id)],
    )
    doc = registry.load()
    metric = config.evaluation.metric if config.evaluation else "roc_auc"
    say(f"\nModels (registry/{pipeline}.json; production {(doc['aliases'].get('production') or {}).get('version')})")
    rows = []
    for version, entry in sorted(doc["versions"].items(), key=lambda kv: kv[1]["registered_at"]):
        lineage = entry["lineage"]
        request = lineage.get("retrain_request", {}).get("reason", "")
        canary = entry.get("canary", {}).get("decision", "")
        rows.append(
            [
                version,
                entry["status"],
                f"{entry['metrics'].get(metric, float('nan')):.4f}",
                Path(str(lineage.get("source", ""))).name,
                canary,
                request or lineage.get("run_id", ""),
            ]
        )
    table(["version", "status", metric, "trained on", "canary", "why trained"], rows)
    say(f"\nEvents (events/{pipeline}.jsonl)")
    table(["time (UTC)", "event", "version", "what"], [_event_row(e) for e in read_events(store, pipeline)])
    say(f"\nTraffic: {traffic.sent} rows sent; HTTP {dict(traffic.statuses)}; served by {dict(traffic.versions)}")
    report = next(
        (e["report_uri"] for e in reversed(read_events(store, pipeline)) if e["kind"] == "drift_check" and e["drifted"]), None
    )
    if report:
        say(f"Drift report (evidently): {report}")


def _event_row(e: dict[str, Any]) -> list[str]:
    when = datetime.fromisoformat(e["time"]).astimezone(UTC).strftime("%H:%M:%S")
    if e["kind"] == "canary_analysis":
        what = f"{e.get('weight')}%: {e.get('reason', '')}"
    elif e["kind"] == "canary_step":
        what = f"canary takes {e.get('weight')}% (production {e.get('production')})"
    elif e["kind"] == "retrain_done":
        what = f"{e.get('request_id')}: model {e.get('model_version')} {e.get('status')}"
    elif e["kind"] == "drift_check":
        what = f"{e.get('rows')} rows: {e.get('reason')}"
    else:
        what = str(e.get("reason", ""))
    return [when, e["kind"], str(e.get("version") or e.get("model_version") or ""), what]


def _took(run: dict[str, Any]) -> str:
    if not (run.get("start_date") and run.get("end_date")):
        return ""
    return f"{(datetime.fromisoformat(run['end_date']) - datetime.fromisoformat(run['start_date'])).total_seconds():.0f}s"


def table(header: list[str], rows: list[list[str]], width: int = 70) -> None:
    rows = [[str(c) if len(str(c)) <= width else str(c)[: width - 1] + "…" for c in row] for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in [header, ["-" * w for w in widths], *rows]:
        say("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
