"""A small Kubernetes API on 127.0.0.1 for the calls KubernetesPodOperator makes, with a hook that plays the kubelet.

Written for these tests (Starlette served by uvicorn in a thread) rather than kmock's emulator: KPO needs a created
pod to get a status that changes over time (phase, ``containerStatuses`` of ``base``, the ``PodScheduled``
condition), its log served as a stream while the container runs and ended only after the terminated status is set
(else KPO follows again and logs lines twice), label and field selectors that filter, and watches (``watch=True``,
any case) that hold the connection for ``timeoutSeconds``; with kmock each of these is a handler of ours anyway.

Served: pods (list by label selector, create, get, merge-patch, delete), the pod's log (``follow``,
``timestamps``), events (list and watch, by field selector) and Secrets (create, get). ``on_create(api, pod)`` is
called in a thread of its own for each created pod: the test's kubelet, which sets the status with
:meth:`KubeAPI.set_status` and writes the log with :meth:`KubeAPI.log` and :meth:`KubeAPI.end_log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Kubelet = Callable[["KubeAPI", dict[str, Any]], None]


def now() -> str:
    """RFC 3339 time, as the API server writes it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches_labels(labels: dict[str, str], selector: str) -> bool:
    """``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a`` terms joined by commas, all must hold."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if term.startswith("!"):
            ok = term[1:] not in labels
        elif "!=" in term:
            key, value = term.split("!=", 1)
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            ok = labels.get(key) == value
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def _matches_fields(obj: dict[str, Any], selector: str) -> bool:
    """``path.to.field=value`` (or ``!=``) terms joined by commas."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        path, value = term.split("!=" if negate else "=", 1)
        node: Any = obj
        for part in path.lstrip("=").split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if (str(node) == value) == negate:
            return False
    return True


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386) of ``patch`` into ``base``."""
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class KubeAPI:
    """The API's objects and its server; every request is recorded in :attr:`requests` as (method, path, query)."""

    def __init__(self, on_create: Kubelet | None = None) -> None:
        self.on_create = on_create
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.logs: dict[tuple[str, str], list[str]] = {}
        self.log_ended: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str, str]] = []
        self.kubelets: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._version = 0
        pods = "/api/v1/namespaces/{ns}/pods"
        self.app = Starlette(
            routes=[
                Route(pods, self._pods, methods=["GET", "POST"]),
                Route(pods + "/{name}", self._pod, methods=["GET", "PATCH", "DELETE"]),
                Route(pods + "/{name}/log", self._log, methods=["GET"]),
                Route("/api/v1/namespaces/{ns}/events", self._events, methods=["GET"]),
                Route("/api/v1/namespaces/{ns}/secrets", self._create_secret, methods=["POST"]),
                Route("/api/v1/namespaces/{ns}/secrets/{name}", self._secret, methods=["GET"]),
            ]
        )
        self.app.add_middleware(_Recorder, api=self)  # type: ignore[arg-type]
        self.url = ""

    # what the kubelet calls

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace the status of a pod (a deleted pod is left alone)."""
        with self._lock:
            if (namespace, name) in self.pods:
                self.pods[namespace, name]["status"] = copy.deepcopy(status)
                self.pods[namespace, name]["metadata"]["resourceVersion"] = self._next_version()

    def log(self, namespace: str, name: str, line: str) -> None:
        """Append a line of the container's output (the API serves it with a timestamp, as ``timestamps=true``)."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock:
            self.logs.setdefault((namespace, name), []).append(f"{stamp} {line.rstrip()}")

    def end_log(self, namespace: str, name: str) -> None:
        """The container has exited: followers get the rest of the log, then the stream ends."""
        with self._lock:
            self.log_ended.add((namespace, name))

    def event(self, namespace: str, pod: str, reason: str, message: str, kind: str = "Normal") -> None:
        with self._lock:
            self.events.append(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "name": f"{pod}.{uuid.uuid4().hex[:8]}",
                        "namespace": namespace,
                        "resourceVersion": self._next_version(),
                    },
                    "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "firstTimestamp": now(),
                    "lastTimestamp": now(),
                    "count": 1,
                }
            )

    def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The decoded data of a Secret."""
        import base64

        data = self.secrets[namespace, name].get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()} | dict(
            self.secrets[namespace, name].get("stringData") or {}
        )

    # the API

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _list(self, kind: str, items: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse(
            {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(self._version)}, "items": items}
        )

    async def _pods(self, request: Request) -> Response:
        ns = request.path_params["ns"]
        if request.method == "POST":
            pod = await request.json()
            meta = pod.setdefault("metadata", {})
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now())
            pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
            with self._lock:
                if (ns, meta["name"]) in self.pods:
                    return _status(409, "AlreadyExists", f'pods "{meta["name"]}" already exists')
                meta["resourceVersion"] = self._next_version()
                self.pods[ns, meta["name"]] = pod
                created = copy.deepcopy(pod)
            if self.on_create is not None:
                thread = threading.Thread(target=self.on_create, args=(self, copy.deepcopy(pod)), daemon=True)
                self.kubelets.append(thread)
                thread.start()
            return JSONResponse(created, status_code=201)
        labels = request.query_params.get("labelSelector", "")
        fields = request.query_params.get("fieldSelector", "")
        with self._lock:
            items = [
                copy.deepcopy(p)
                for (pns, _), p in self.pods.items()
                if pns == ns and _matches_labels(p["metadata"].get("labels") or {}, labels) and _matches_fields(p, fields)
            ]
        return self._list("PodList", items)

    async def _pod(self, request: Request) -> Response:
        key = (request.path_params["ns"], request.path_params["name"])
        with self._lock:
            pod = self.pods.get(key)
            if pod is None:
                return _status(404, "NotFound", f'pods "{key[1]}" not found')
            if request.method == "PATCH":
                _merge(pod, json.loads(await request.body()))
                pod["metadata"]["resourceVersion"] = self._next_version()
            elif request.method == "DELETE":
                del self.pods[key]
            return JSONResponse(copy.deepcopy(pod))

    async def _log(self, request: Request) -> Response:
        key = (request.path_params["ns"], request.path_params["name"])
        with self._lock:
            pod = copy.deepcopy(self.pods.get(key))
        if pod is None:
            return _status(404, "NotFound", f'pods "{key[1]}" not found')
        if not (pod["status"].get("containerStatuses") or key in self.logs):
            message = f'container "base" in pod "{key[1]}" is waiting to start: ContainerCreating'
            return _status(400, "BadRequest", message)
        stamps = _truthy(request.query_params.get("timestamps"))
        follow = _truthy(request.query_params.get("follow"))

        def shown(line: str) -> bytes:
            return ((line if stamps else line.split(" ", 1)[1]) + "\n").encode()

        async def stream():
            sent = 0
            while True:
                with self._lock:
                    lines, ended = list(self.logs.get(key, [])), key in self.log_ended or key not in self.pods
                for line in lines[sent:]:
                    yield shown(line)
                sent = len(lines)
                if ended or not follow:
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/plain")

    async def _events(self, request: Request) -> Response:
        ns = request.path_params["ns"]
        fields = request.query_params.get("fieldSelector", "")
        with self._lock:
            items = [copy.deepcopy(e) for e in self.events if e["metadata"]["namespace"] == ns and _matches_fields(e, fields)]
        if not _truthy(request.query_params.get("watch")):
            return self._list("EventList", items)
        timeout = float(request.query_params.get("timeoutSeconds") or 5)

        async def watch():
            for item in items:
                yield (json.dumps({"type": "ADDED", "object": item}) + "\n").encode()
            await asyncio.sleep(min(timeout, 5))

        return StreamingResponse(watch(), media_type="application/json")

    async def _create_secret(self, request: Request) -> Response:
        secret = await request.json()
        secret.setdefault("metadata", {})["namespace"] = request.path_params["ns"]
        with self._lock:
            self.secrets[request.path_params["ns"], secret["metadata"]["name"]] = secret
        return JSONResponse(secret, status_code=201)

    async def _secret(self, request: Request) -> Response:
        secret = self.secrets.get((request.path_params["ns"], request.path_params["name"]))
        if secret is None:
            return _status(404, "NotFound", f'secrets "{request.path_params["name"]}" not found')
        return JSONResponse(secret)

    @contextlib.contextmanager
    def serving(self) -> Iterator[KubeAPI]:
        """Serve on a free port of 127.0.0.1 until the block ends; :attr:`url` is set meanwhile."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the Kubernetes API did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig for this server (a token user: the API checks nothing)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "airflow", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "airflow", "namespace": namespace}}],
            "current-context": "test",
        }


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}
    return JSONResponse(body, status_code=code)


class _Recorder:
    """ASGI middleware: record each request before it is served."""

    def __init__(self, app: Any, api: KubeAPI) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.api.requests.append((scope["method"], scope["path"], scope.get("query_string", b"").decode()))
        await self.app(scope, receive, send)
