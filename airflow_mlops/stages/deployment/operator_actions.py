"""An operator's control actions on the deployment from the ops UI: promote, roll back, pause or resume the canary."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ActionRefused, RegistryConflict
from airflow_mlops.stages.deployment.canary import apply_decision, follow_decision
from airflow_mlops.store.events import append_event
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.serving.targets import ServingTarget
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


ACTIONS = ("promote", "rollback", "pause", "resume")
"""What an operator may do to a pipeline's deployment from the ops UI (:func:`operator_action`)."""


def operator_action(
    store: ArtifactStore,
    pipeline: str,
    action: str,
    *,
    user: str,
    reason: str | None = None,
    serving: str = "local",
    target: ServingTarget | None = None,
) -> dict[str, Any]:
    """An operator's control action on the deployment, applied by compare-and-swap on the registry and recorded in
    the events log with ``user``, ``reason`` and ``source: "ui"``; returns that event.

    - ``promote``: the canary becomes production now (as the canary analysis' promote does).
    - ``rollback``: with a canary, the canary is removed and production serves alone; without one, production goes
      back to the last blessed version registered before it (not reverted, not rolled back as a canary), and the
      rolled-back model is marked ``reverted`` like a failed post-promotion watch, so it is not deployed again.
    - ``pause`` / ``resume``: the canary keeps its traffic share while paused; the canary analysis neither moves to
      the next share nor decides until it is resumed (the paused time counts as bake time, as traffic went on).

    A canary analysis still running ends on the operator's promote or rollback; a canary rolled back by an
    operator is not deployed again while it is the last one decided (retraining on the same data makes it again).

    :param store: the pipeline's artifact store.
    :param pipeline: pipeline name.
    :param action: one of :data:`ACTIONS`.
    :param user: who acts (the Airflow user), recorded in the registry and the event.
    :param reason: why, as the operator wrote it.
    :param serving: the pipeline's ``canary.target``; ``kserve`` needs ``target``, the cluster must follow.
    :param target: the serving target to tell after the registry changed (None: the local model server).
    :raises ActionRefused: the action does not apply now (no canary, already paused, ...) or kept conflicting.
    """
    if action not in ACTIONS:
        raise ActionRefused(f"Unknown action {action!r}; expected one of {', '.join(ACTIONS)}.")
    if serving != "local" and target is None and action in ("promote", "rollback"):
        raise ActionRefused(
            f"{pipeline} is served on {serving}: {action} from the ops UI applies to the local model server only; "
            "use the training DAG's deploy tasks."
        )
    who = {"user": user, "reason": reason or f"{action} from the ops UI", "at": datetime.now(UTC).isoformat()}
    event_id = f"ui-{action}-{uuid.uuid4().hex[:12]}"
    seen: dict[str, Any] = {}

    def mutate(doc: dict[str, Any]) -> None:
        seen.clear()
        seen["production"] = (doc["aliases"].get("production") or {}).get("version")
        canary = doc["aliases"].get("canary") or {}
        seen["version"], seen["weight"] = canary.get("version"), canary.get("weight")
        if action == "rollback" and not canary:
            _rollback_production(doc, pipeline, who)
            seen["restored"] = doc["aliases"]["production"]["version"]
            return
        if not canary:
            raise ActionRefused(f"{pipeline} has no canary to {action}.")
        paused = canary.get("paused")
        if action == "pause":
            if paused:
                raise ActionRefused(f"The canary {canary['version']} of {pipeline} is already paused by {paused['user']}.")
            canary["paused"] = who
        elif action == "resume":
            if not paused:
                raise ActionRefused(f"The canary {canary['version']} of {pipeline} is not paused.")
            canary.pop("paused")
        else:
            why = f"{action} by {user} from the ops UI: {who['reason']}"
            apply_decision(doc, pipeline, action, canary["version"], why, user=user, source="ui")
            doc["decided_canary"] = {
                "version": canary["version"],
                "decision": action,
                "weight": canary.get("weight"),
                "reason": why,
                "user": user,
                "at": who["at"],
                "event_id": event_id,
            }

    try:
        ModelRegistry(store, pipeline).update(mutate)
    except RegistryConflict as err:
        raise ActionRefused(f"{action} on {pipeline} kept conflicting with other writers of the registry: {err}") from err
    fields = {"event_id": event_id, "user": user, "reason": who["reason"], "source": "ui", "action": action}
    if "restored" in seen:
        if target is not None:
            target.restore(seen["restored"])
        kind, fields = "revert", fields | {"version": seen["production"], "production": seen["restored"]}
    elif action in ("pause", "resume"):
        kind, fields = f"canary_{action}", fields | {"version": seen["version"], "weight": seen["weight"]}
    else:
        follow_decision(target, action, seen["version"], seen["production"])
        kind, fields = action, fields | {"version": seen["version"], "previous_production": seen["production"]}
    event = append_event(store, pipeline, kind, **fields)
    log.info("%s of %s by %s from the ops UI: %s", action, pipeline, user, who["reason"])
    return event


def _rollback_production(doc: dict[str, Any], pipeline: str, who: dict[str, Any]) -> None:
    """In a registry document: production goes back to the last blessed version registered before it that was not
    reverted or rolled back as a canary; the rolled-back version is marked ``reverted`` by the operator."""
    production = (doc["aliases"].get("production") or {}).get("version")
    if not production:
        raise ActionRefused(f"{pipeline} has no production model to roll back.")
    since = doc["versions"][production]["registered_at"]
    earlier = [
        (entry["registered_at"], version)
        for version, entry in doc["versions"].items()
        if entry["status"] == "blessed"
        and entry["registered_at"] < since
        and (entry.get("watch") or {}).get("decision") not in ("reverted", "breached")
        and (entry.get("canary") or {}).get("decision") != "rollback"
    ]
    if not earlier:
        raise ActionRefused(f"{pipeline} has no blessed version before {production} to roll back to.")
    back = max(earlier)[1]
    why = f"rolled back by {who['user']} from the ops UI: {who['reason']}"
    doc["versions"][production]["watch"] = {
        "decision": "reverted",
        "reason": why,
        "at": who["at"],
        "user": who["user"],
        "source": "ui",
    }
    doc["previous_production"] = production
    doc["aliases"]["production"] = {"version": back, "promoted_at": who["at"], "reason": f"{production} {why}"}
    doc["aliases"].pop("holdback", None)  # the watch's control ends with the model it was kept beside
