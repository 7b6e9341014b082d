"""Per-version request, error and latency series in the Prometheus text format."""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    """Counters per model version: rows scored, rows failed, and a cumulative latency histogram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.requests: dict[str, int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.load_failures: dict[str, int] = defaultdict(int)

    def load_failed(self, version: str) -> None:
        with self._lock:
            self.load_failures[version] += 1

    def observe(self, version: str, seconds: float, *, rows: int = 1, error: bool = False) -> None:
        with self._lock:
            self.rows[version] += rows
            self.errors[version] += rows if error else 0
            self.requests[version] += 1
            self.latency_sum[version] += seconds
            counts = self.buckets[version]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1

    def render(self) -> str:
        with self._lock:
            versions = sorted(self.requests)
            lines = [
                "# HELP mlops_predictions_total Rows scored, by model version.",
                "# TYPE mlops_predictions_total counter",
                *(f'mlops_predictions_total{{version="{v}"}} {self.rows[v]}' for v in versions),
                "# HELP mlops_prediction_errors_total Rows that failed, by model version.",
                "# TYPE mlops_prediction_errors_total counter",
                *(f'mlops_prediction_errors_total{{version="{v}"}} {self.errors[v]}' for v in versions),
                "# HELP mlops_model_load_failures_total Models the server refused because they could not be loaded.",
                "# TYPE mlops_model_load_failures_total counter",
                *(f'mlops_model_load_failures_total{{version="{v}"}} {n}' for v, n in sorted(self.load_failures.items())),
                "# HELP mlops_request_latency_seconds Request latency, by model version.",
                "# TYPE mlops_request_latency_seconds histogram",
            ]
            for v in versions:
                lines += [
                    f'mlops_request_latency_seconds_bucket{{version="{v}",le="{b}"}} {c}'
                    for b, c in zip(BUCKETS, self.buckets[v], strict=True)
                ]
                lines += [
                    f'mlops_request_latency_seconds_bucket{{version="{v}",le="+Inf"}} {self.requests[v]}',
                    f'mlops_request_latency_seconds_sum{{version="{v}"}} {self.latency_sum[v]:.6f}',
                    f'mlops_request_latency_seconds_count{{version="{v}"}} {self.requests[v]}',
                ]
        return "\n".join(lines) + "\n"
