"""The model server's bearer tokens: which route each guards, where they are read from, and the middleware that
checks them (compared in constant time, never logged)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_mlops.serving.admission import refusal

GUARDED = {"predict": "/predict", "feedback": "/feedback", "metrics": "/metrics"}
"""Routes a bearer token can guard, each with its own tokens; a route without tokens is open. The ``predict``
tokens also guard v2 ``/v2/models/{name}`` and ``/v2/models/{name}/infer``; ``/health``, ``/v2/health/*`` and
``/v2/models/{name}/ready`` (the probes) are always open."""
_GUARDED_PATHS = {path: route for route, path in GUARDED.items()}


def _guarded_route(path: str) -> str | None:
    """The route whose tokens guard ``path``, None for an open one."""
    if path.startswith("/v2/models/"):
        parts = path.split("/")  # "", "v2", "models", name[, "ready" | "infer"]
        return None if len(parts) == 5 and parts[4] == "ready" else "predict"
    return _GUARDED_PATHS.get(path)


def read_tokens(route: str, token_file: str | None) -> list[str]:
    """Tokens for ``route``: one per line of ``token_file`` (blank lines and ``#`` comments skipped), else the
    comma-separated ``MLOPS_<ROUTE>_TOKENS`` environment variable."""
    if token_file:
        lines = Path(token_file).read_text().splitlines()
        return [t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#")]
    return [t.strip() for t in os.environ.get(f"MLOPS_{route.upper()}_TOKENS", "").split(",") if t.strip()]


def _authorized(tokens: frozenset[str], header: str | None) -> int:
    """200 when the ``Authorization`` header bears one of ``tokens`` (compared in constant time), 401 without a
    bearer token, 403 with a wrong one."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401
    given_bytes = given.strip().encode()
    return 200 if any(hmac.compare_digest(given_bytes, t.encode()) for t in tokens) else 403


class TokenGuard:
    """ASGI middleware: each guarded route with tokens needs ``Authorization: Bearer <token>`` (never logged).

    :param app: the app it guards.
    :param tokens: the tokens of each route in ``GUARDED``.
    """

    def __init__(self, app: Any, tokens: Mapping[str, frozenset[str]]) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = _guarded_route(scope.get("path", "")) if scope["type"] == "http" else None
        tokens = self.tokens.get(route) if route else None
        if tokens:
            header = next((value for name, value in scope.get("headers") or () if name == b"authorization"), b"")
            status = _authorized(tokens, header.decode("latin-1"))
            if status != 200:
                message = "a bearer token is required" if status == 401 else "this token may not use this route"
                response = refusal(status, f"{scope['path']}: {message}")
                if status == 401:
                    response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
