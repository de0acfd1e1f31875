"""Request size limits, checked before a body is read, and validation errors that echo nothing.

Unsigned bodies are read and parsed before any signature check can run, so the limit is the first
thing a request meets: a Content-Length over the route's limit is refused at once (413 with a
Problem), and a body without one (chunked) is counted as it arrives and cut off at the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_LIMIT = 64 * 1024
#: Routes that carry batches (up to 1,000 grants, revocations or audit entries) get more.
ROUTE_LIMITS = (
    (re.compile(r"^/v1/fleets/[0-9a-f]{32}/(grants|revocations)$"), 4 * 1024 * 1024),
    (re.compile(r"^/v1/vehicles/[0-9a-f]{32}/audit$"), 1024 * 1024),
)


def limit_for(path: str) -> int:
    """The largest body this route accepts, in bytes."""
    for pattern, limit in ROUTE_LIMITS:
        if pattern.match(path):
            return limit
    return DEFAULT_LIMIT


class BodyTooLarge(BaseException):
    """Raised inside the app when a chunked body passes its route's limit.

    A BaseException on purpose: FastAPI turns any Exception raised while it reads a body into a
    400, and this must reach :class:`BodyLimit` to become the 413 it is.
    """


def _problem(status: int, detail: str) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail, "code": "too_large"}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """ASGI middleware: refuse bodies over the route's limit before the app reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(str(scope.get("path", "")))
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(send, limit)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        start, body = _problem(413, f"the request body is over this route's limit of {limit} bytes")
        await send(start)
        await send(body)


async def validation_problem(_: Request, exc: Exception) -> JSONResponse:
    """422 that says where and what, never what was sent (no input is echoed back)."""
    assert isinstance(exc, RequestValidationError)
    parts: list[str] = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")[:64]
        what = str(error.get("msg", "invalid"))[:120]
        parts.append(f"{where or 'body'}: {what}")
    detail: Any = "the request does not match the API: " + "; ".join(parts)
    return JSONResponse({"detail": detail, "code": "invalid_request"}, status_code=422)
