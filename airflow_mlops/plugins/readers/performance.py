"""The performance checks of a pipeline's events log: realized and estimated performance per window against the
production model's reference band and the max_drop threshold, and the retrain request a drop filed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.ml.metrics import HIGHER_IS_BETTER
from airflow_mlops.plugins.readers.events import event_time

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig

PERFORMANCE_CHECKS_SHOWN = 100
"""Latest performance checks whose windows the page reads."""
PERFORMANCE_WINDOWS_SHOWN = 60
"""Latest windows (by start) in the performance chart."""
PERFORMANCE_PREFIX = "performance: "
"""How a retrain request's reason names the performance drop that filed it (``operators.retraining.retrain_reasons``)."""

Interval = tuple[float | None, float | None]


@dataclass(frozen=True)
class PerformanceWindow:
    """One window as its latest check saw it: realized and estimated figures, reference, threshold and verdict."""

    start: datetime
    end: datetime
    checked: datetime
    run_id: str | None
    version: str | None
    metric: str
    labels: int
    judged: bool
    realized: float | None
    realized_interval: Interval | None
    estimated: float | None
    estimated_interval: Interval | None
    estimated_rows: int | None
    estimated_why: str | None
    reference: float | None
    reference_interval: Interval | None
    max_drop: float | None
    threshold: float | None
    dropped: bool
    estimated_dropped: bool
    reason: str

    @property
    def verdict(self) -> str:
        """``drop``, ``estimated drop``, ``within`` (judged, no drop) or ``not judged`` (too few labels)."""
        if self.dropped:
            return "drop"
        if self.estimated_dropped:
            return "estimated drop"
        return "within" if self.judged else "not judged"


@dataclass(frozen=True)
class PerformanceCheck:
    """The newest performance check: its verdict and reason."""

    time: datetime
    run_id: str | None
    version: str | None
    metric: str
    max_drop: float | None
    min_labels: int | None
    dropped: bool
    trigger: str | None
    estimated_warning: bool
    reason: str


@dataclass(frozen=True)
class PerformanceRequest:
    """The newest retrain request filed for performance (an open one first): the performance part of its reason."""

    request_id: str
    time: datetime
    open: bool
    status: str
    reason: str
    trigger: str | None


@dataclass(frozen=True)
class PerformanceView:
    """The performance section: whether the pipeline judges performance, its windows, newest check and request."""

    configured: bool
    windows: list[PerformanceWindow]
    latest: PerformanceCheck | None
    request: PerformanceRequest | None


def performance_view(config: PipelineConfig, events: list[dict[str, Any]]) -> PerformanceView:
    """The latest checks' windows (each as its newest check saw it), the newest check and performance request."""
    checks = [e for e in events if e["kind"] == "performance_check"][-PERFORMANCE_CHECKS_SHOWN:]
    windows: dict[str, PerformanceWindow] = {}
    for check in checks:
        for window in check.get("windows") or []:
            windows[str(window["start"])] = performance_window(check, window)
    shown = sorted(windows.values(), key=lambda w: w.start)[-PERFORMANCE_WINDOWS_SHOWN:]
    latest = _check(checks[-1]) if checks else None
    configured = bool(config.monitor and config.monitor.performance_check)
    return PerformanceView(configured, shown, latest, performance_request(events))


def performance_window(check: dict[str, Any], window: dict[str, Any]) -> PerformanceWindow:
    """One window of a ``performance_check`` event as the page shows it."""
    metric = str(check.get("metric") or "")
    max_drop = _float(check.get("max_drop"))
    realized, reference = window.get("realized") or {}, window.get("reference") or {}
    estimated = window.get("estimated") or {}
    done = bool(estimated.get("done"))
    ref = _float(reference.get("value"))
    threshold = None
    if ref is not None and max_drop is not None:
        threshold = ref - max_drop if HIGHER_IS_BETTER.get(metric, True) else ref + max_drop
    return PerformanceWindow(
        start=event_time(window["start"]),
        end=event_time(window["end"]),
        checked=event_time(check["time"]),
        run_id=_run_id(check),
        version=check.get("production_version"),
        metric=metric,
        labels=int(window.get("production_labels") or 0),
        judged=bool(window.get("judged")),
        realized=_float(realized.get("value")),
        realized_interval=_interval(realized.get("interval")),
        estimated=_float(estimated.get("value")) if done else None,
        estimated_interval=_interval(estimated.get("interval")) if done else None,
        estimated_rows=estimated.get("rows") if done else None,
        estimated_why=None if done else estimated.get("why"),
        reference=ref,
        reference_interval=_interval(reference.get("interval")),
        max_drop=max_drop,
        threshold=threshold,
        dropped=bool(window.get("dropped")),
        estimated_dropped=bool(estimated.get("dropped")) and not window.get("judged"),
        reason=_window_reason(check, window),
    )


def _window_reason(check: dict[str, Any], window: dict[str, Any]) -> str:
    """Why the window reads as it does: its drop against max_drop, or the labels it lacks and the estimate."""
    max_drop, min_labels = check.get("max_drop"), check.get("min_labels")
    drop, estimated = window.get("drop") or {}, window.get("estimated") or {}
    parts = []
    if window.get("judged"):
        side = "above" if window.get("dropped") else "not all above"
        parts.append(f"drop {_drop(drop)}: {side} max_drop {max_drop:g}")
    else:
        parts.append(f"{window.get('production_labels') or 0} labels (< min_labels {min_labels}): not judged")
        if drop:
            parts.append(f"drop so far {_drop(drop)}")
    if estimated.get("done"):
        est = _drop(estimated.get("drop") or {})
        side = "above" if estimated.get("dropped") else "not all above"
        parts.append(f"estimated drop {est} over {estimated.get('rows')} predictions: {side} max_drop {max_drop:g}")
    elif estimated.get("why"):
        parts.append(f"not estimated: {estimated['why']}")
    return "; ".join(parts)


def _drop(drop: dict[str, Any]) -> str:
    value, (low, high) = drop.get("value"), (drop.get("interval") or [None, None])
    if value is None:
        return "unknown"
    return f"{value:.4f}" + (f" (interval {low:.4f} to {high:.4f})" if low is not None and high is not None else "")


def _check(event: dict[str, Any]) -> PerformanceCheck:
    return PerformanceCheck(
        time=event_time(event["time"]),
        run_id=_run_id(event),
        version=event.get("production_version"),
        metric=str(event.get("metric") or ""),
        max_drop=_float(event.get("max_drop")),
        min_labels=event.get("min_labels"),
        dropped=bool(event.get("dropped")),
        trigger=event.get("trigger"),
        estimated_warning=bool(event.get("estimated_warning")),
        reason=str(event.get("reason", "")),
    )


def performance_request(events: list[dict[str, Any]]) -> PerformanceRequest | None:
    """The newest open retrain request whose reason names a performance drop, else the newest closed one."""
    done = {e.get("request_id"): e for e in events if e["kind"] == "retrain_done"}
    filed = [e for e in events if e["kind"] == "retrain_request" and _performance_part(str(e.get("reason") or ""))]
    if not filed:
        return None
    opened = [e for e in filed if e.get("event_id") not in done]
    event = (opened or filed)[-1]
    closed = done.get(event.get("event_id"))
    status = "open" if closed is None else f"closed: {closed.get('status', '')}"
    performance = (event.get("details") or {}).get("performance") or {}
    return PerformanceRequest(
        request_id=str(event.get("event_id") or ""),
        time=event_time(event["time"]),
        open=closed is None,
        status=status,
        reason=_performance_part(str(event["reason"])),
        trigger=performance.get("trigger"),
    )


def _performance_part(reason: str) -> str:
    """The performance reason within a retrain request's (``drift: ...; performance: ...``); empty without one."""
    if reason.startswith(PERFORMANCE_PREFIX):
        return reason.removeprefix(PERFORMANCE_PREFIX)
    _, found, rest = reason.partition(f"; {PERFORMANCE_PREFIX}")
    return rest if found else ""


def _run_id(event: dict[str, Any]) -> str | None:
    return str(event.get("event_id") or "").removeprefix("performance-") or None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _interval(value: Any) -> Interval | None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    return _float(value[0]), _float(value[1])
