"""KServe's InferenceService schema (tests/data/kserve/, pinned to KServe v0.16.0) and a strict check against it.

The API server prunes fields a structural schema does not declare, without an error: a misspelt field would be
dropped silently. So the check is strict: every object the schema declares properties for (and does not mark
``x-kubernetes-preserve-unknown-fields``) may hold only those (what ``kubectl apply --validate=strict`` enforces).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = Path(__file__).parent / "data" / "kserve" / "inferenceservice-v1beta1.schema.json"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@functools.cache
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    schema.pop("$comment")
    return jsonschema.Draft7Validator(_strict(schema))


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Every way ``obj`` breaks the InferenceService CRD's schema or the object metadata rules it relies on."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(obj)]
    meta = obj.get("metadata") or {}
    if not DNS_1035.match(meta.get("name", "")) or len(meta.get("name", "")) > 63:
        errors.append(f"metadata/name: not a DNS-1035 label: {meta.get('name')!r}")
    labels = {**meta.get("labels", {}), **obj.get("spec", {}).get("predictor", {}).get("labels", {})}
    errors += [f"label {k}: bad value {v!r}" for k, v in labels.items() if len(v) > 63 or not LABEL_VALUE.match(v)]
    return errors
