"""Notifications from YAML under real DAG runs: a webhook (HTTP POST of JSON) and an e-mail (SMTP), each received
by a real server on 127.0.0.1; retries and timeouts from YAML reach the tasks."""

from __future__ import annotations

import asyncio
import json
import socketserver
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import run_dag
from test_training_dag import churn_config, write_day

from airflow_mlops.ml.synthetic import make_churn

pytestmark = pytest.mark.slow


class Received:
    """What the test servers got: webhook JSON bodies and e-mails (raw text)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.mails: list[str] = []


def webhook_server(received: Received) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.posts.append({"path": self.path, **json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def smtp_server(received: Received) -> socketserver.ThreadingTCPServer:
    """Just enough SMTP to accept a message: greet, say OK to each command, collect DATA until the lone dot."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 test SMTP\r\n")
            while line := self.rfile.readline():
                command = line.strip().upper()
                if command.startswith((b"EHLO", b"HELO")):
                    self.wfile.write(b"250 test\r\n")
                elif command == b"DATA":
                    self.wfile.write(b"354 go on\r\n")
                    lines = []
                    while (data := self.rfile.readline()) not in (b".\r\n", b""):
                        lines.append(data.decode())
                    received.mails.append("".join(lines))
                    self.wfile.write(b"250 queued\r\n")
                elif command == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def receivers(monkeypatch):
    received = Received()
    hook, mail = webhook_server(received), smtp_server(received)
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_HOOK", f"http://127.0.0.1:{hook.server_address[1]}")
    smtp = {"disable_ssl": True, "disable_tls": True, "from_email": "mlops@example.com", "timeout": 5, "retry_limit": 0}
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLOPS_SMTP",
        json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": mail.server_address[1], "extra": smtp}),
    )
    yield received
    hook.shutdown()
    mail.shutdown()


OPERATIONS = {
    "retries": 0,
    "execution_timeout_minutes": 30,
    "stages": {"data": {"retries": 1, "retry_delay_minutes": 0.01}},
    "notify": [
        {"kind": "webhook", "conn_id": "mlops_hook", "endpoint": "/mlops", "on": ["failure", "retry", "gate_rejected"]},
        {"kind": "email", "conn_id": "mlops_smtp", "to": ["ops@example.com"], "on": ["gate_rejected"]},
    ],
}


def test_a_rejected_candidate_and_a_failed_task_notify_with_the_why(pipeline, tmp_path, receivers):
    evaluation = {"metric": "roc_auc", "threshold": 0.99}  # no model on this data reaches it: rejected
    _, dag = pipeline(churn_config("churn_notify", tmp_path, evaluation=evaluation, operations=OPERATIONS))
    acquire, train = dag.get_task("data.acquire"), dag.get_task("training.train")
    assert (acquire.retries, acquire.retry_delay) == (1, timedelta(seconds=0.6)), "the data stage's own defaults"
    assert train.retries == 0 and train.execution_timeout == timedelta(minutes=30), "the pipeline's"

    write_day(tmp_path, "2026-11-01", make_churn(1500, seed=1))
    _, states = run_dag(dag, "2026-11-01")
    assert states["registry.reject"] == "success", states
    [rejected] = [p for p in receivers.posts if p["event"] == "gate_rejected"]
    assert (
        rejected["path"] == "/mlops"
        and rejected["title"] == "mlops_churn_notify_training: Candidate rejected by the evaluation gate"
    )
    assert "roc_auc" in rejected["reason"] and rejected["result"]["status"] == "rejected"
    [mail] = receivers.mails
    assert "Subject: mlops_churn_notify_training: Candidate rejected by the evaluation gate" in mail and "ops@example.com" in mail

    # No export for the day: acquire fails, is retried once (the data stage's retries), then fails for good.
    _, states = run_dag(dag, "2026-11-02")
    assert states["data.acquire"] == "failed", states
    events = [(p["event"], p.get("task_id"), p.get("try_number")) for p in receivers.posts if p["event"] != "gate_rejected"]
    assert events == [("retry", "data.acquire", 1), ("failure", "data.acquire", 2)], events
    failure = receivers.posts[-1]
    assert "2026-11-02.csv" in failure["error"] and failure["title"] == "mlops_churn_notify_training: task data.acquire failed"
    assert len(receivers.mails) == 1, "the e-mail target was not asked for failures"


def test_a_missed_deadline_is_sent_by_the_triggerer_callback(pipeline, tmp_path, receivers):
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.triggers.callback import CallbackTrigger

    operations = {
        "deadline_minutes": 90,
        "notify": [{"kind": "webhook", "conn_id": "mlops_hook", "endpoint": "/late", "on": ["deadline"]}],
    }
    _, dag = pipeline(churn_config("churn_deadline", tmp_path, operations=operations))
    [alert] = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert alert.interval == timedelta(minutes=90) and alert.callback.path == "airflow_mlops.notifications.deadline_missed"
    assert DagSerialization.to_dict(dag)["dag"]["deadline"], "the DAG with its deadline alert serializes"

    # What Airflow runs when the deadline passes: the callback in the triggerer, with a small context.
    context = {"dag_run": {"dag_id": dag.dag_id, "dag_run_id": "scheduled__2026-11-01"}, "deadline": {"deadline_time": "t"}}
    trigger = CallbackTrigger(alert.callback.path, {**alert.callback.kwargs, "context": context})

    async def events():
        return [e.payload async for e in trigger.run()]

    assert asyncio.run(events())[-1]["state"] == "success"
    [late] = receivers.posts
    assert late["path"] == "/late" and late["event"] == "deadline"
    assert late["title"] == "mlops_churn_deadline_training: run scheduled__2026-11-01 not finished 90 minutes after it was queued"
