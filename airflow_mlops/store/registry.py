"""The model registry: one JSON document per pipeline, changed only by compare-and-swap."""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from airflow_mlops.exceptions import MlopsError, RegistryConflict
from airflow_mlops.store.artifacts import ArtifactStore, dumps
from airflow_mlops.store.layout import registry_key

log = logging.getLogger(__name__)

STATUSES = ("blessed", "rejected")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ModelRegistry:
    """``registry/<pipeline>.json``: versions with status, metrics and lineage; aliases; last blessed.

    Every change is a read-modify-write retried on conflict, so concurrent writers never lose an update.
    """

    def __init__(self, store: ArtifactStore, pipeline: str) -> None:
        self.store = store
        self.pipeline = pipeline
        self.key = registry_key(pipeline)

    def _decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            return {"pipeline": self.pipeline, "revision": 0, "versions": {}, "aliases": {}, "last_blessed": None}
        return json.loads(data)

    def load(self) -> dict[str, Any]:
        """The current document; an empty one when the pipeline has none yet."""
        return self._decode(self.store.read_versioned(self.key)[0])

    def update(self, mutate: Callable[[dict[str, Any]], None], *, max_attempts: int = 50) -> dict[str, Any]:
        """Apply ``mutate`` to the latest document and store it with compare-and-swap; retry on conflict."""
        for attempt in range(1, max_attempts + 1):
            data, token = self.store.read_versioned(self.key)
            current = self._decode(data)
            doc = copy.deepcopy(current)
            mutate(doc)
            if doc == current:
                return doc
            doc["revision"] = current["revision"] + 1
            doc["updated_at"] = _now()
            if self.store.write_if_match(self.key, dumps(doc), token):
                return doc
            log.debug("Registry %s changed under us (attempt %d); retrying", self.key, attempt)
            time.sleep(random.uniform(0, 0.01 * attempt))
        raise RegistryConflict(f"Gave up updating {self.store.uri(self.key)} after {max_attempts} conflicting attempts.")

    def register(
        self, version: str, *, status: str, metrics: dict[str, Any], lineage: dict[str, Any], reason: str
    ) -> dict[str, Any]:
        """Add a version once; registering it again leaves the first entry untouched."""
        if status not in STATUSES:
            raise MlopsError(f"Unknown registry status {status!r}; expected one of {STATUSES}.")

        def mutate(doc: dict[str, Any]) -> None:
            if version in doc["versions"]:
                return
            doc["versions"][version] = {
                "status": status,
                "metrics": metrics,
                "lineage": lineage,
                "reason": reason,
                "registered_at": _now(),
            }
            if status == "blessed":
                doc["last_blessed"] = version

        return self.update(mutate)["versions"][version]

    def set_alias(self, alias: str, version: str | None, **extra: Any) -> dict[str, Any]:
        """Point ``alias`` at a registered, non-rejected version with ``extra`` fields (None removes it).

        Moving ``production`` records the version it leaves as ``previous_production``. Returns the document.
        """

        def mutate(doc: dict[str, Any]) -> None:
            if version is None:
                doc["aliases"].pop(alias, None)
                return
            entry = doc["versions"].get(version)
            if entry is None or entry["status"] == "rejected":
                raise MlopsError(
                    f"Cannot point alias {alias!r} of {self.pipeline} at {version!r}: not a registered, accepted version."
                )
            previous = (doc["aliases"].get(alias) or {}).get("version")
            if alias == "production" and previous and previous != version:
                doc["previous_production"] = previous
            doc["aliases"][alias] = {"version": version, **extra}

        return self.update(mutate)

    def alias(self, name: str) -> str | None:
        """The version ``name`` points at, or None."""
        return (self.load()["aliases"].get(name) or {}).get("version")

    def production(self) -> str | None:
        """The production version, or None."""
        return self.alias("production")

    def get(self, version: str) -> dict[str, Any] | None:
        """The entry of ``version``, or None when it is not registered."""
        return self.load()["versions"].get(version)
