"""Where a pipeline's models serve, as the deployment stages see it.

The registry's aliases are the source of truth: the stage functions change them first (compare-and-swap), then
tell the serving target to follow. The local model server needs no call (it polls the aliases), so the local target
is ``None``; a cluster target (:class:`airflow_mlops.hooks.kserve.KServeHook`) applies the same state to the
cluster. Every method is idempotent: a retried task calls it again and the cluster ends in the same state.
"""

from __future__ import annotations

from typing import Protocol


class ServingTarget(Protocol):
    """Follows the registry's production and canary aliases on a serving platform."""

    def deploy(self, version: str, percent: int, production: str | None) -> None:
        """Serve ``version`` as the canary with ``percent`` of the traffic beside ``production``, or, when
        ``production`` is None, as the only version with all of it."""

    def promote(self, version: str, holdback: int = 0) -> None:
        """The canary ``version`` takes all traffic but ``holdback`` percent, which stays on the model it replaces
        (the post-promotion watch's control); ``holdback`` 0 (also how the watch ends it when keeping ``version``):
        all of it."""

    def restore(self, version: str) -> None:
        """``version`` alone serves all traffic again: a rolled-back canary stops taking any, or a promoted model
        is replaced by ``version`` (the post-promotion revert)."""
