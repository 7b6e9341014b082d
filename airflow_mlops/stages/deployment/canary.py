"""The canary of the deployment stage: put a candidate on the canary alias, judge each step, promote or roll back."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsError
from airflow_mlops.serving.predlog import served_rows
from airflow_mlops.serving.predlog_reader import read_log
from airflow_mlops.store.events import append_event
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
        doc["aliases"].pop("holdback", None)  # a new canary ends a holdback an unfinished watch left behind
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
    frame = served_rows(read_log(store, pipeline, "predictions", canary["since"]))
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
            first_labels(store, pipeline, canary["since"]),
            canary=canary["version"],
            production=production,
            task=task,
            criteria=Criteria(**criteria),
            classes=model_classes(store, pipeline, [canary["version"], production]) if task == "multiclass" else None,
        )
    return verdict.to_dict() | {"version": canary["version"], "production": production, "weight": canary["weight"]}


def model_classes(store: ArtifactStore, pipeline: str, versions: list[str | None]) -> dict[str, list[str]]:
    """Each multiclass model version's classes, in the order of its probability columns (its ``transform.json``)."""
    from airflow_mlops.store.layout import model_prefix

    found = {}
    for version in versions:
        if version:
            found[version] = list(store.read_json(f"{model_prefix(pipeline, version)}/transform.json").get("classes") or [])
    return found


def canary_resolve(
    store: ArtifactStore,
    pipeline: str,
    decision: str,
    verdict: Mapping[str, Any],
    *,
    target: ServingTarget | None = None,
    holdback_percent: int = 0,
) -> dict[str, Any]:
    """Promote the canary to production or roll it back; the decision and its figures go to the events log.

    A promotion with ``holdback_percent`` keeps that share of the traffic on the model it replaces (the registry's
    ``holdback`` alias, in the same compare-and-swap): the post-promotion watch's control, which
    :func:`airflow_mlops.stages.deployment.promotion_watch.resolve_watch` ends.
    ``target`` (None: the local model server) follows once the registry changed: the promoted canary takes all
    traffic (but the holdback), or production serves alone again. A retry repeats that call, which changes nothing
    the second time.
    A canary an operator already decided on from the ops UI
    (:func:`airflow_mlops.stages.deployment.operator_actions.operator_action`) keeps that decision: the registry
    and the events log stay as the operator left them, and the result names the operator's decision.
    """
    registry = ModelRegistry(store, pipeline)
    version = verdict.get("version") or registry.alias("canary")
    seen: dict[str, Any] = {}

    def mutate(doc: dict[str, Any]) -> None:
        seen["previous"] = (doc["aliases"].get("production") or {}).get("version")
        decided = doc.get("decided_canary") or {}
        seen["decided"] = decided if version and decided.get("version") == version else None
        if seen["decided"] is None:
            apply_decision(doc, pipeline, decision, version, verdict["reason"])
        promoted = (seen["decided"] or {}).get("decision", decision) == "promote"  # an operator's promote too
        seen["holdback"] = hold_back(doc, version, holdback_percent) if promoted and holdback_percent else None

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
    follow_decision(target, decision, version, seen["previous"], holdback=holdback_percent if seen["holdback"] else 0)
    log.info("Canary %s of %s: %s (%s)", version, pipeline, decision.upper(), reason)
    return {
        "decision": decision,
        "version": version,
        "reason": reason,
        "production": registry.production(),
        "event_time": event["time"],
    }


def apply_decision(doc: dict[str, Any], pipeline: str, decision: str, version: str | None, reason: str, **who: Any) -> None:
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


def hold_back(doc: dict[str, Any], version: str | None, percent: int) -> str | None:
    """In a registry document where ``version`` was just promoted: keep ``percent`` of the traffic on the model it
    replaced, until its watch ends (the ``holdback`` alias: ``version``, ``weight``, ``beside`` and ``since``, when
    the window of the watch's comparison starts). Returns the held-back version, or None where there is none (no
    model was replaced, production moved on, the watch already decided)."""
    production = (doc["aliases"].get("production") or {}).get("version")
    previous = doc.get("previous_production")
    if not version or production != version or previous in (None, version) or "watch" in doc["versions"][version]:
        return None
    held = doc["aliases"].get("holdback") or {}
    if held.get("beside") != version:  # a retry keeps the holdback it started, and its window
        held = doc["aliases"]["holdback"] = {"version": previous, "weight": percent, "beside": version, "since": time.time()}
    return held["version"]


def follow_decision(
    target: ServingTarget | None, decision: str, version: str | None, previous: str | None, *, holdback: int = 0
) -> None:
    """Tell ``target`` (None: the local server, which follows the registry) what serves after a canary decision:
    a promoted ``version`` takes all traffic but ``holdback`` percent, left on the model it replaced."""
    if target is not None and version:
        if decision == "promote":
            target.promote(version, holdback)
        elif previous:
            target.restore(previous)


def first_labels(store: ArtifactStore, pipeline: str, since: float) -> Any:
    """Labels logged since ``since``: the first sent for an id counts (a later one cannot overwrite it)."""
    feedback = read_log(store, pipeline, "feedback", since).sort_values("_ts", kind="stable")
    return feedback[["_id", "label"]].drop_duplicates("_id", keep="first")
