"""The model server's door checks: what a request must be before any of its rows is scored or logged (a body of
bounded size, valid JSON whose text every log can store, a bounded number of rows), and the one shape of a
refusal."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_BODY_BYTES = 1 << 20
MAX_ROWS = 1000


def refusal(status: int, message: str) -> JSONResponse:
    """The error response of every route: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status)


async def json_body(request: Request) -> Any:
    """The request's JSON body, or the refusal: over ``MAX_BODY_BYTES`` (declared or streamed), not JSON, or text
    that is not valid Unicode."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return refusal(413, f"body of {declared} bytes; at most {MAX_BODY_BYTES}")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return refusal(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, an integer of over 4,300 digits, deep nesting
        return refusal(400, f"body is not valid JSON: {str(err)[:200]}")
    if b"\\u" in raw:  # escapes can spell a lone surrogate, which no log can store
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError as err:
            return refusal(422, f"body holds text that is not valid Unicode: {err.reason}")
    return body


def rows_refusal(rows: list[Any]) -> JSONResponse | None:
    """The refusal of a request with no rows or more than ``MAX_ROWS``; None when their number is fine."""
    if not rows:
        return refusal(422, "no instances to score")
    if len(rows) > MAX_ROWS:
        return refusal(413, f"{len(rows)} instances; at most {MAX_ROWS} per request")
    return None


def finite(number: float) -> bool:
    """Whether ``number`` is a finite float (an integer beyond float range is not)."""
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond float range
        return False
