"""One artifact-store interface over a local directory and S3 (or any S3-compatible store).

Never imports Airflow: the model server and the ``airflow-mlops`` commands use it directly, with the
standard AWS credential chain for S3. Inside Airflow (tasks, sensors, triggers) the S3 client comes from
the Amazon provider's hook and the pipeline's AWS connection (see ``hooks/artifact_store.py``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import ArtifactNotFound, MlopsError

log = logging.getLogger(__name__)

NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
S3_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_COPY_CHUNK = 8 << 20


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise MlopsError(f"Invalid artifact key {key!r}: keys are relative paths without '..'.")
    return key


class ArtifactStore(ABC):
    """Bytes and JSON under one root URI; every key is a relative, '/'-separated path."""

    root_uri: str

    @staticmethod
    def from_uri(root_uri: str, s3_client: Any = None) -> ArtifactStore:
        """``file:///path``, a plain path, or ``s3://bucket/prefix``.

        Without ``s3_client`` an S3 root uses the standard AWS credential chain and the optional
        ``MLOPS_S3_ENDPOINT_URL`` (for S3-compatible stores), so it works without Airflow.
        """
        if root_uri.startswith("s3://"):
            if s3_client is None:
                import boto3

                s3_client = boto3.client("s3", endpoint_url=os.environ.get("MLOPS_S3_ENDPOINT_URL") or None)
            return S3ArtifactStore(root_uri, s3_client)
        if "://" in root_uri and not root_uri.startswith("file://"):
            raise MlopsError(f"Unsupported artifact root {root_uri!r}: use file://, a local path, or s3://bucket/prefix.")
        return LocalArtifactStore(Path(root_uri.removeprefix("file://")))

    @abstractmethod
    def uri(self, key: str) -> str:
        """The full URI of ``key``."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an artifact is stored at ``key``."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``; :class:`ArtifactNotFound` naming its URI when absent."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key``, replacing what was there as a whole."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursively), sorted."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """Content and an opaque version token, or ``(None, None)`` when the key is absent."""

    @abstractmethod
    def write_if_match(self, key: str, data: bytes, token: str | None) -> bool:
        """Compare-and-swap: write only if the key is still at ``token`` (absent when None).
        Returns False when another writer got there first."""

    @abstractmethod
    def upload_file(self, path: Path, key: str, *, move: bool = False) -> None:
        """Store the file at ``path`` under ``key`` without reading it into memory as a whole. ``move``: the caller
        has no further use for the file, so a local store may rename it into place instead of copying it."""

    @abstractmethod
    def download_file(self, key: str, path: Path) -> None:
        """Copy ``key`` to the file ``path`` without holding it in memory as a whole."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""

    def local_path(self, key: str) -> Path | None:
        """The filesystem path of ``key`` when the store is a local directory, else None."""
        return None

    def connection_settings(self) -> dict[str, Any]:
        """How another S3 client reaches this store (Beam's workers): ``endpoint_url``, ``region_name`` and the
        client's credentials (``access_key_id``, ``secret_access_key``, ``session_token``) where it has them;
        empty for a local directory. Secrets: never log these."""
        return {}

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode()

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def read_json_if_exists(self, key: str, default: Any = None) -> Any:
        """The JSON at ``key``, or ``default`` when the key is absent (one read, no separate existence check)."""
        data, _ = self.read_versioned(key)
        return default if data is None else json.loads(data)

    def write_json(self, key: str, obj: Any) -> None:
        self.write_bytes(key, dumps(obj))

    def upload_dir(self, local_dir: Path, prefix: str) -> list[str]:
        """Store every file under ``local_dir`` at ``prefix/<relative path>``; returns the keys, sorted."""
        keys = []
        for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            key = _join(prefix, path.relative_to(local_dir).as_posix())
            self.upload_file(path, key)
            keys.append(key)
        return keys

    def download_prefix(self, prefix: str, local_dir: Path) -> list[Path]:
        """Copy every key under ``prefix`` to ``local_dir/<path below prefix>``; returns the local paths."""
        paths = []
        for key in self.list(prefix):
            path = Path(local_dir) / _check_key(key[len(prefix) :].lstrip("/"))
            self.download_file(key, path)
            paths.append(path)
        return paths


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, indented, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=2) + "\n").encode()


def digest(obj: Any) -> str:
    """sha256 (hex) of ``obj`` as compact JSON with sorted keys: the content id of settings, specs and versions."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class LocalArtifactStore(ArtifactStore):
    """A directory; writes are atomic (temp file + rename), CAS holds a file lock.

    File names starting with "." are the store's own (temp files, locks) and are not listed.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root_uri = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def uri(self, key: str) -> str:
        return f"file://{self._path(key)}"

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        data = self._read(key)
        if data is None:
            raise ArtifactNotFound(f"No artifact at {self.uri(key)}")
        return data

    def write_bytes(self, key: str, data: bytes) -> None:
        self._replace(key, lambda fh: fh.write(data))

    def upload_file(self, path: Path, key: str, *, move: bool = False) -> None:
        if move:
            target = self._path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, target)  # one rename: readers never see half a file
                return
            except OSError:  # another filesystem: copy it
                pass
        with open(path, "rb") as src:
            self._replace(key, lambda fh: shutil.copyfileobj(src, fh, _COPY_CHUNK))

    def download_file(self, key: str, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError as err:
            raise ArtifactNotFound(f"No artifact at {self.uri(key)}") from err

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _replace(self, key: str, write: Any) -> None:
        """Write through a temporary file beside the target, then rename it: readers never see half a file."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        data = self._read(key)
        return (None, None) if data is None else (data, hashlib.sha256(data).hexdigest())

    def write_if_match(self, key: str, data: bytes, token: str | None) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A hidden sidecar lock, opened afresh per call: its own open file description, so flock
        # excludes other threads of this process as well as other processes. Never deleted.
        with open(path.parent / f".{path.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.read_versioned(key)[1] != token:
                log.debug("Compare-and-swap of %s lost: it changed since it was read", self.uri(key))
                return False
            self.write_bytes(key, data)
            return True


class S3ArtifactStore(ArtifactStore):
    """A bucket and prefix; CAS uses S3 conditional writes (``If-Match`` / ``If-None-Match``)."""

    def __init__(self, root_uri: str, client: Any) -> None:
        bucket, _, prefix = root_uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise MlopsError(f"Artifact root {root_uri!r} names no bucket.")
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client
        self.root_uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return _join(self.prefix, _check_key(key))

    def connection_settings(self) -> dict[str, Any]:
        settings = {"endpoint_url": self.client.meta.endpoint_url, "region_name": self.client.meta.region_name}
        # botocore has no public accessor for a client's credentials; without them the other client falls back
        # to the standard AWS credential chain.
        credentials = getattr(self.client, "_get_credentials", lambda: None)()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            settings |= {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key}
            settings |= {"session_token": frozen.token} if frozen.token else {}
        return settings

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in NOT_FOUND_CODES:
                return False
            raise
        return True

    def read_bytes(self, key: str) -> bytes:
        data, token = self.read_versioned(key)
        if token is None:
            raise ArtifactNotFound(f"No artifact at {self.uri(key)}")
        return data

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload_file(self, path: Path, key: str, *, move: bool = False) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key))  # multipart above boto3's threshold

    def download_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except ClientError as err:
            if _code(err) in NOT_FOUND_CODES:
                raise ArtifactNotFound(f"No artifact at {self.uri(key)}") from err
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        base = self._key(prefix).rstrip("/") if prefix else self.prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{base}/" if base else ""):
            keys += [obj["Key"][strip:] for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]
        return sorted(keys)

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in NOT_FOUND_CODES:
                return None, None
            raise
        return response["Body"].read(), response["ETag"]

    def write_if_match(self, key: str, data: bytes, token: str | None) -> bool:
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except ClientError as err:
            # If-Match on a key deleted since it was read answers 404: a lost race as well.
            if _code(err) in S3_CONFLICT_CODES or (token is not None and _code(err) in NOT_FOUND_CODES):
                log.debug("Compare-and-swap of %s lost: %s", self.uri(key), _code(err))
                return False
            raise
        return True


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))
