"""Per-version request, error and latency series, kept by ``prometheus_client``.

``airflow-mlops serve`` runs prometheus_client in multiprocess mode: it points ``PROMETHEUS_MULTIPROC_DIR`` at a
folder of its own (emptied at start) before any worker imports this module, every worker writes its series to its
own files there, and ``/metrics`` (on any worker) sums the files of all workers. Without that variable (a server
built in-process, as unit tests do) the series live in this process's own registry.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """Counters per model version: rows scored, rows failed, models refused, and a latency histogram per scoring
    call (one request and version)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = {"labelnames": ["version"], "registry": self.registry}
        self.rows = Counter("mlops_predictions", "Rows scored, by model version.", **labels)
        self.errors = Counter("mlops_prediction_errors", "Rows that failed, by model version.", **labels)
        self.load_failures = Counter(
            "mlops_model_load_failures", "Models the server refused because they could not be loaded.", **labels
        )
        self.latency = Histogram("mlops_request_latency_seconds", "Request latency, by model version.", buckets=BUCKETS, **labels)
        self._series: dict[str, tuple[Counter, Counter, Histogram]] = {}

    def load_failed(self, version: str) -> None:
        self.load_failures.labels(version).inc()

    def observe(self, version: str, seconds: float, *, rows: int = 1, error: bool = False) -> None:
        series = self._series.get(version)
        if series is None:  # the labelled children, looked up once per version
            series = self._series[version] = (
                self.rows.labels(version),
                self.errors.labels(version),
                self.latency.labels(version),
            )
        scored, failed, latency = series
        scored.inc(rows)
        if error:
            failed.inc(rows)
        latency.observe(seconds)

    def render(self) -> bytes:
        """The text exposition: of every worker of this server in multiprocess mode, else of this process."""
        if not os.environ.get(MULTIPROCESS_ENV):
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
