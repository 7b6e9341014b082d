"""Governed retrain requests: at most one open per pipeline, none within the cooldown, each closed with its outcome."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ActionRefused
from airflow_mlops.store.events import append_event, read_events

if TYPE_CHECKING:
    from airflow_mlops.store.artifacts import ArtifactStore


def request_retrain(
    store: ArtifactStore,
    pipeline: str,
    *,
    reason: str,
    details: Mapping[str, Any],
    cooldown_hours: float,
    run_id: str,
    max_open_hours: float | None = None,
    emitted: Collection[str] | None = None,
    approval: str = "auto",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record a retrain request unless one is still open or the cooldown since the last one has not passed.

    A retry of the run that filed a request gets that request back (still ``requested`` while it is open), so the
    retried task emits the Asset event the first attempt may not have. A request still open ``max_open_hours``
    after it was filed (its training never ran, or never closed it) is closed as ``expired`` first, with why, so
    one lost run cannot block retraining for good.

    ``emitted`` holds the request ids of the retrain Asset's recent events (the filing task's inlet events): an
    open request of another run that is not among them was recorded by a task that never emitted its event (it
    was killed in between), so it is closed as ``lost`` and neither blocks this request nor starts a cooldown.
    A request thus counts only together with its Asset event.

    With ``approval="manual"`` the request is recorded pending (``"pending": True`` in the result while it waits):
    its Asset event is emitted only once an operator approves it (:func:`decide_request`), so a pending request is
    never taken for lost; it stays open, blocking new ones, until it is approved and trained, dismissed, or expired.
    """
    now = now or datetime.now(UTC)
    events = read_events(store, pipeline)
    stale, unemitted = [], []
    for request in _open_requests(events):
        if (
            max_open_hours is not None
            and now.timestamp() - datetime.fromisoformat(request["time"]).timestamp() > max_open_hours * 3600
        ):
            stale.append(request["event_id"])
        elif (
            emitted is not None
            and request["event_id"] not in emitted
            and request["event_id"] != f"retrain-{run_id}"
            and not _pending(request, events)
        ):
            unemitted.append(request["event_id"])
    for request_id in stale:
        why = f"still open {max_open_hours:g} h after it was filed: its training never closed it"
        close_retrain_request(store, pipeline, request_id, model_version=None, status="expired", reason=why)
    for request_id in unemitted:
        why = "its Asset event was never emitted: the task that recorded it did not finish, so no training was started"
        close_retrain_request(store, pipeline, request_id, model_version=None, status="lost", reason=why)
    if stale or unemitted:
        events = read_events(store, pipeline)
    lost = {e.get("request_id") for e in events if e["kind"] == "retrain_done" and e.get("status") == "lost"}
    requests = [e for e in events if e["kind"] == "retrain_request" and e["event_id"] not in lost]
    done = {e.get("request_id") for e in events if e["kind"] == "retrain_done"}
    own = next((r for r in requests if r["event_id"] == f"retrain-{run_id}"), None)
    if own is not None:
        still_open = own["event_id"] not in done
        return {
            "requested": still_open,
            "why": own["reason"] if still_open else f"request {own['event_id']} is already closed",
            "request_id": own["event_id"],
        } | ({"pending": still_open and bool(_pending(own, events))} if "approval" in own else {})
    open_requests = [r for r in requests if r["event_id"] not in done]
    if open_requests:
        return {
            "requested": False,
            "why": f"request {open_requests[-1]['event_id']} is still open",
            "request_id": open_requests[-1]["event_id"],
        }
    if requests:
        last = datetime.fromisoformat(requests[-1]["time"])
        remaining = last.timestamp() + cooldown_hours * 3600 - now.timestamp()
        if remaining > 0:
            return {
                "requested": False,
                "why": f"cooldown: {remaining / 3600:.1f} h left after {requests[-1]['event_id']}",
                "request_id": None,
            }
    manual = {"approval": "pending"} if approval == "manual" else {}
    event = append_event(
        store, pipeline, "retrain_request", event_id=f"retrain-{run_id}", reason=reason, details=dict(details), **manual
    )
    return {"requested": True, "why": reason, "request_id": event["event_id"]} | ({"pending": True} if manual else {})


def _pending(request: Mapping[str, Any], events: list[dict[str, Any]]) -> bool | None:
    """True while a manual ``request`` waits for an operator, False once approved (or dismissed), None for a
    request that needed no approval."""
    if request.get("approval") != "pending":
        return None
    return not any(e["kind"] == "retrain_decision" and e.get("request_id") == request["event_id"] for e in events)


def _open_requests(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retrain requests no ``retrain_done`` event has closed, oldest first."""
    done = {e.get("request_id") for e in events if e["kind"] == "retrain_done"}
    return [e for e in events if e["kind"] == "retrain_request" and e["event_id"] not in done]


def close_retrain_request(
    store: ArtifactStore,
    pipeline: str,
    request_id: str,
    *,
    model_version: str | None,
    status: str,
    reason: str | None = None,
) -> None:
    """Record the outcome of a retraining (``rejected``, ``promoted``, ``rolled_back``, ``failed``, ``expired``, ...);
    frees the next request."""
    append_event(
        store,
        pipeline,
        "retrain_done",
        event_id=f"done-{request_id}",
        request_id=request_id,
        model_version=model_version,
        status=status,
        **({"reason": reason} if reason else {}),
    )


DECISIONS = ("approve", "dismiss")
"""What an operator may decide on a pending retrain request from the ops UI (:func:`decide_request`)."""


def pending_request(store: ArtifactStore, pipeline: str, request_id: str) -> dict[str, Any]:
    """The retrain request ``request_id`` if it waits for a decision, else ActionRefused saying why not.

    :raises ActionRefused: unknown request, already closed, or not waiting for approval.
    """
    events = read_events(store, pipeline)
    request = next((e for e in events if e["kind"] == "retrain_request" and e["event_id"] == request_id), None)
    if request is None:
        raise ActionRefused(f"{pipeline} has no retrain request {request_id!r}.")
    closed = next((e for e in events if e["kind"] == "retrain_done" and e.get("request_id") == request_id), None)
    if closed is not None:
        raise ActionRefused(f"Retrain request {request_id} of {pipeline} is already closed ({closed['status']}).")
    waiting = _pending(request, events)
    if waiting is None:
        raise ActionRefused(
            f"Retrain request {request_id} of {pipeline} needed no approval: its training started when it was filed."
        )
    if not waiting:
        decided = next(e for e in events if e["kind"] == "retrain_decision" and e.get("request_id") == request_id)
        raise ActionRefused(
            f"Retrain request {request_id} of {pipeline} was already decided: {decided['decision']} by {decided['user']}."
        )
    return request


def decide_request(
    store: ArtifactStore, pipeline: str, request_id: str, decision: str, *, user: str, reason: str | None = None
) -> dict[str, Any]:
    """Approve or dismiss a retrain request waiting for approval (``monitor.approval: manual``); returns the
    ``retrain_decision`` event, recorded with ``user``, ``reason`` and ``source: "ui"``.

    One decision per request: both write the event id ``decision-<request_id>``, so of two operators deciding at
    once the first wins and the second is refused. ``approve`` leaves the request open: the caller then emits the
    retrain Asset event (``airflow_mlops.plugins.assets.emit_retrain_request`` with the returned ``request_id`` and
    ``request_reason``) and the training run it starts closes it, like an automatic request; an approved request
    whose event never came is closed as ``lost`` by the next drift request. ``dismiss`` closes it as ``dismissed``;
    the cooldown still counts from its filing, so a drift that goes on files a new request after the cooldown.

    :param store: the pipeline's artifact store.
    :param pipeline: pipeline name.
    :param request_id: the request's event id (``retrain-<run_id>``).
    :param decision: ``approve`` or ``dismiss``.
    :param user: who decides (the Airflow user).
    :param reason: why, as the operator wrote it.
    :raises ActionRefused: unknown request, already closed, not waiting for approval, or already decided.
    """
    if decision not in DECISIONS:
        raise ActionRefused(f"Unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}.")
    request = pending_request(store, pipeline, request_id)
    nonce = uuid.uuid4().hex
    event = append_event(
        store,
        pipeline,
        "retrain_decision",
        event_id=f"decision-{request_id}",
        request_id=request_id,
        request_reason=request["reason"],
        decision=decision,
        user=user,
        reason=reason or f"{decision} from the ops UI",
        source="ui",
        nonce=nonce,
    )
    if event.get("nonce") != nonce:
        raise ActionRefused(
            f"Retrain request {request_id} of {pipeline} was already decided: {event['decision']} by {event['user']}."
        )
    if decision == "dismiss":
        close_retrain_request(
            store, pipeline, request_id, model_version=None, status="dismissed", reason=f"dismissed by {user}: {event['reason']}"
        )
    return event
