"""Canary deployment on the model server: put a candidate on the canary alias, judge each step, resolve."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import ActionRefused, MlopsError, RegistryConflict
from airflow_mlops.serving.predlog import read_log
from airflow_mlops.store.events import append_event, read_events
from airflow_mlops.store.registry import ModelRegistry

if TYPE_CHECKING:
    from airflow_mlops.serving.targets import ServingTarget
    from airflow_mlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def canary_deploy(
    store: ArtifactStore, pipeline: str, version: str, percent: int, *, target: ServingTarget | None = None
) -> dict[str, Any]:
    """Put a blessed candidate on the canary alias with ``percent`` of the traffic (idempotent).

    The first model of a pipeline has no production to be compared with: it goes straight to production.
    ``target`` (None: the local model server, which follows the aliases by itself) is told after the registry,
    on every call, a retry's too: the registry says what should serve, the target catches up.
    """
    registry = ModelRegistry(store, pipeline)
    doc = registry.load()
    watched = ((doc["versions"].get(version) or {}).get("watch") or {}).get("decision")
    if watched in ("reverted", "breached"):  # retraining on the same data makes the same version: no loop
        raise MlopsError(f"{pipeline} model {version} failed its post-promotion watch and is not deployed again.")
    production = (doc["aliases"].get("production") or {}).get("version")
    if production in (None, version):
        if production is None:
            registry.set_alias("production", version, promoted_at=datetime.now(UTC).isoformat(), reason="first model")
            append_event(
                store,
                pipeline,
                "promote",
                event_id=f"promote-{version}",
                version=version,
                reason="first model: no production to compare with",
            )
        if "decided_canary" in doc:
            registry.update(lambda d: d.pop("decided_canary", None))  # an operator's decision on an earlier canary
        if target is not None:
            target.deploy(version, percent, None)
        return {"canary": None, "weight": 0, "production": version}
    since = time.time()

    def step(doc: dict[str, Any]) -> None:
        current = doc["aliases"].get("canary") or {}
        if current.get("version") == version and (current.get("weight") == percent or current.get("paused")):
            return  # the same step again, or a paused canary: it keeps its share until an operator resumes it
        if not current and (doc.get("decided_canary") or {}).get("version") == version:
            return  # an operator promoted or rolled it back from the ops UI: the canary analysis ends on that
        _check_accepted(doc, pipeline, version)
        doc["aliases"]["canary"] = {"version": version, "weight": percent, "since": since}
        doc.pop("decided_canary", None)

    current = registry.update(step)["aliases"].get("canary")
    if current is None:
        return {"canary": None, "weight": 0, "production": production}
    if current["since"] == since:
        append_event(store, pipeline, "canary_step", version=version, weight=percent, production=production)
        log.info("Canary %s now takes %s%% of %s traffic", version, percent, pipeline)
    if target is not None and current["weight"] == percent:
        target.deploy(version, percent, production)
    return {"canary": version, "weight": current["weight"], "since": current["since"]}


def _check_accepted(doc: dict[str, Any], pipeline: str, version: str) -> None:
    """Raise unless ``version`` is registered and not rejected (what an alias may point at)."""
    entry = doc["versions"].get(version)
    if entry is None or entry["status"] == "rejected":
        raise MlopsError(f"Cannot deploy {version!r} of {pipeline}: not a registered, accepted version.")


def canary_check(
    store: ArtifactStore,
    pipeline: str,
    *,
    task: str,
    min_requests: int,
    bake_seconds: float,
    criteria: Mapping[str, Any],
    now: float,
) -> dict[str, Any] | None:
    """The verdict on the current canary step, or None while it needs more time and traffic.

    ``criteria`` holds every :class:`airflow_mlops.ml.canary.Criteria` field (the config's ``canary.analysis``).
    """
    from airflow_mlops.ml.canary import Criteria, Verdict, analyze, requests_of

    doc = ModelRegistry(store, pipeline).load()
    canary = doc["aliases"].get("canary") or {}
    production = (doc["aliases"].get("production") or {}).get("version")
    if not canary.get("version"):
        if decided := doc.get("decided_canary"):  # an operator promoted or rolled back this canary from the ops UI
            passed = decided["decision"] == "promote"
            return Verdict(passed, decided["reason"], {}).to_dict() | {
                "version": decided["version"],
                "production": production,
                "weight": 100 if passed else decided.get("weight"),
            }
        if production:  # the deploy step promoted a first model directly
            return Verdict(True, f"{production} is production; no canary step", {}).to_dict() | {
                "version": production,
                "weight": 100,
            }
        return Verdict(False, "no canary is deployed", {}).to_dict() | {"weight": None}
    if paused := canary.get("paused"):
        log.info("Canary %s is paused by %s (%s): waiting for resume", canary["version"], paused["user"], paused["reason"])
        return None
    if float(canary.get("weight") or 0) >= 100:  # every request is the canary's: nothing to compare it with
        verdict = Verdict(True, f"{canary['version']} took all traffic after the previous step passed", {})
        return verdict.to_dict() | {"version": canary["version"], "production": production, "weight": canary["weight"]}
    frame = read_log(store, pipeline, "predictions", canary["since"])
    served = requests_of(frame[frame["_version"] == canary["version"]])
    if served < min_requests and now - canary["since"] < bake_seconds:
        log.info(
            "Canary %s: %d/%d requests, %.0f/%.0f s baked",
            canary["version"],
            served,
            min_requests,
            now - canary["since"],
            bake_seconds,
        )
        return None
    if served == 0:
        verdict = Verdict(False, "the canary received no traffic during the bake time", {"canary": {"requests": 0}})
    else:
        verdict = analyze(
            frame,
            _first_labels(store, pipeline, canary["since"]),
            canary=canary["version"],
            production=production,
            task=task,
            criteria=Criteria(**criteria),
        )
    return verdict.to_dict() | {"version": canary["version"], "production": production, "weight": canary["weight"]}


def canary_resolve(
    store: ArtifactStore,
    pipeline: str,
    decision: str,
    verdict: Mapping[str, Any],
    *,
    target: ServingTarget | None = None,
) -> dict[str, Any]:
    """Promote the canary to production or roll it back; the decision and its figures go to the events log.

    ``target`` (None: the local model server) follows once the registry changed: the promoted canary takes all
    traffic, or production serves alone again. A retry repeats that call, which changes nothing the second time.
    A canary an operator already decided on from the ops UI (:func:`operator_action`) keeps that decision: the
    registry and the events log stay as the operator left them, and the result names the operator's decision.
    """
    registry = ModelRegistry(store, pipeline)
    version = verdict.get("version") or registry.alias("canary")
    seen: dict[str, Any] = {}

    def mutate(doc: dict[str, Any]) -> None:
        seen["previous"] = (doc["aliases"].get("production") or {}).get("version")
        decided = doc.get("decided_canary") or {}
        seen["decided"] = decided if version and decided.get("version") == version else None
        if seen["decided"] is None:
            _decide(doc, pipeline, decision, version, verdict["reason"])

    registry.update(mutate)
    if decided := seen["decided"]:
        decision, reason, event = decided["decision"], decided["reason"], {"time": decided["at"]}
    else:
        reason = verdict["reason"]
        event = append_event(
            store,
            pipeline,
            decision,
            event_id=f"{decision}-{version}",
            version=version,
            previous_production=seen["previous"],
            reason=reason,
            figures=verdict.get("figures", {}),
        )
    _follow(target, decision, version, seen["previous"])
    log.info("Canary %s of %s: %s (%s)", version, pipeline, decision.upper(), reason)
    return {
        "decision": decision,
        "version": version,
        "reason": reason,
        "production": registry.production(),
        "event_time": event["time"],
    }


def _decide(doc: dict[str, Any], pipeline: str, decision: str, version: str | None, reason: str, **who: Any) -> None:
    """In a registry document: ``promote`` makes the canary ``version`` production (the model it replaces becomes
    ``previous_production``), either decision removes the canary alias and is recorded on the version."""
    production = (doc["aliases"].get("production") or {}).get("version")
    if decision == "promote" and version and production != version:
        _check_accepted(doc, pipeline, version)
        if production:
            doc["previous_production"] = production
        doc["aliases"]["production"] = {"version": version, "promoted_at": datetime.now(UTC).isoformat(), "reason": reason}
    doc["aliases"].pop("canary", None)
    if version in doc["versions"]:
        doc["versions"][version]["canary"] = {"decision": decision, "reason": reason, **who}


def _follow(target: ServingTarget | None, decision: str, version: str | None, previous: str | None) -> None:
    """Tell ``target`` (None: the local server, which follows the registry) what serves after a canary decision."""
    if target is not None and version:
        if decision == "promote":
            target.promote(version)
        elif previous:
            target.restore(previous)


def _first_labels(store: ArtifactStore, pipeline: str, since: float) -> Any:
    """Labels logged since ``since``: the first sent for an id counts (a later one cannot overwrite it)."""
    feedback = read_log(store, pipeline, "feedback", since).sort_values("_ts", kind="stable")
    return feedback[["_id", "label"]].drop_duplicates("_id", keep="first")


def canary_baseline(store: ArtifactStore, pipeline: str, version: str) -> dict[str, Any] | None:
    """The figures of ``version``'s last passed canary step that compared it with production, or None."""
    steps = [
        e
        for e in read_events(store, pipeline)
        if e["kind"] == "canary_analysis" and e.get("version") == version and e.get("passed") and e.get("figures")
    ]
    return steps[-1]["figures"] if steps else None


def promotion_watch_check(
    store: ArtifactStore,
    pipeline: str,
    *,
    task: str,
    version: str,
    watch_seconds: float,
    min_requests: int,
    criteria: Mapping[str, Any],
    now: float,
) -> dict[str, Any] | None:
    """The watch's verdict on a promoted ``version``, or None while it goes on watching.

    Fails as soon as the rows since promotion (at least ``min_requests`` requests) breach the canary-time
    figures (:func:`airflow_mlops.ml.canary.watch`); passes when ``watch_seconds`` end without a breach, and at
    once when the version is no longer production or was promoted without a canary (nothing to compare with).
    """
    from airflow_mlops.ml.canary import Criteria, Verdict, requests_of, watch

    production = ModelRegistry(store, pipeline).load()["aliases"].get("production") or {}
    if production.get("version") != version:
        why = f"{version} is no longer production ({production.get('version')} is): nothing to watch"
        return Verdict(True, why, {}).to_dict() | {"version": version}
    baseline = canary_baseline(store, pipeline, version)
    if baseline is None:
        return Verdict(True, f"{version} has no canary-time figures to compare with", {}).to_dict() | {"version": version}
    since = datetime.fromisoformat(production["promoted_at"]).timestamp()
    frame = read_log(store, pipeline, "predictions", since)
    rows = frame[frame["_version"] == version]
    served, ended = requests_of(rows), now - since >= watch_seconds
    if served < min_requests:
        if not ended:
            log.info("Watching %s: %d/%d requests, %.0f/%.0f s", version, served, min_requests, now - since, watch_seconds)
            return None
        why = f"{served} requests since promotion, fewer than the {min_requests} needed to judge: kept"
        return Verdict(True, why, {"now": {"requests": served}}).to_dict() | {"version": version}
    verdict = watch(rows, _first_labels(store, pipeline, since), baseline=baseline, task=task, criteria=Criteria(**criteria))
    if verdict.passed and not ended:
        log.info("Watching %s: within limits so far (%d requests, %.0f/%.0f s)", version, served, now - since, watch_seconds)
        return None
    return verdict.to_dict() | {"version": version}


def resolve_watch(
    store: ArtifactStore, pipeline: str, verdict: Mapping[str, Any], *, target: ServingTarget | None = None
) -> dict[str, Any]:
    """Keep the watched version, or revert production to the model it replaced in one compare-and-swap on the
    alias when the watch failed. The outcome is recorded on the version and in the events log; no retrain
    request is filed, and a reverted version is never deployed again (:func:`canary_deploy` refuses it).

    Idempotent: on a retry, a version already reverted (or moved off production by someone else) is left as it is.
    ``target`` (None: the local model server, which follows the alias) is told to serve the reverted-to model alone.
    """
    version, now = verdict["version"], datetime.now(UTC).isoformat()
    decision = "kept" if verdict["passed"] else "reverted"

    def mutate(doc: dict[str, Any]) -> None:
        entry = doc["versions"].get(version)
        if entry is None or "watch" in entry:
            return
        outcome, reason = decision, verdict["reason"]
        previous = doc.get("previous_production")
        if decision == "reverted":
            if (doc["aliases"].get("production") or {}).get("version") != version or not previous:
                outcome, reason = "breached", f"{reason} (not reverted: production had moved, or there is nothing to revert to)"
            else:
                doc["aliases"]["production"] = {
                    "version": previous,
                    "promoted_at": now,
                    "reason": f"{version} reverted: {reason}",
                }
                doc["previous_production"] = version
        entry["watch"] = {"decision": outcome, "reason": reason, "at": now}

    doc = ModelRegistry(store, pipeline).update(mutate)
    production = (doc["aliases"].get("production") or {}).get("version")
    watched = doc["versions"].get(version, {}).get("watch", {})
    decision = watched.get("decision", decision)
    if target is not None and decision == "reverted" and production:
        target.restore(production)  # a retry sends the same state again, which changes nothing
    if watched.get("source") == "ui":  # an operator rolled it back from the ops UI, which recorded the event
        return {
            "decision": decision,
            "version": version,
            "reason": watched["reason"],
            "production": production,
            "event_time": watched["at"],
        }
    event = append_event(
        store,
        pipeline,
        {"kept": "watch_passed", "reverted": "revert"}.get(decision, "watch_breached"),
        event_id=f"watch-{version}",
        version=version,
        production=production,
        reason=verdict["reason"],
        figures=verdict.get("figures", {}),
    )
    log.log(
        logging.INFO if decision == "kept" else logging.ERROR,
        "Post-promotion watch of %s (%s): %s (%s); production is %s",
        version,
        pipeline,
        decision.upper(),
        verdict["reason"],
        production,
    )
    reason = doc["versions"].get(version, {}).get("watch", {}).get("reason", verdict["reason"])
    return {"decision": decision, "version": version, "reason": reason, "production": production, "event_time": event["time"]}


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
            _decide(doc, pipeline, action, canary["version"], why, user=user, source="ui")
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
        _follow(target, action, seen["version"], seen["production"])
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
