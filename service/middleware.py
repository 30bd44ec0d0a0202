"""Pure ASGI middlewares: a body-size limit (413), request-latency metrics, HEAD as GET.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: no extra task per request and the body
stream is ours to count. The size limit checks the declared Content-Length first and then
counts the streamed bytes (a chunked body declares none), buffering at most `max_bytes`
before handing the body to the app. The metrics middleware labels by the matched route's
template (`/forecast`, never a raw path with ids in it), method and status class; a request
that matched no route is labelled `unmatched`, and one the client left before it was answered
is not counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import TOO_LARGE_ADVICE
from service.metrics import ServiceMetrics

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# Methods a client may send are any token; only these become label values, the rest "other".
# Scope key under which a dispatcher that bypasses the router (service.fast_routes) names the
# route template it answered for; the router's own answers carry scope["route"].
ROUTE_TEMPLATE = "urnn.route_template"
KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        encoding = content_encoding(scope)
        if encoding is not None:
            shown = encoding.decode("latin-1")[:40]
            await send_json_error(
                send,
                415,
                f"header 'Content-Encoding': {shown!r} is not read here; send the body "
                "uncompressed (Content-Encoding absent or 'identity')",
            )
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send, declared)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nobody to answer
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large(send, None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _too_large(self, send: Send, declared: int | None) -> None:
        await send_too_large(send, self.max_bytes, declared)


async def send_too_large(send: Send, max_bytes: int, declared: int | None) -> None:
    """The 413 answer (and the connection closed) for a body above `max_bytes`."""
    size = f"{declared:,} bytes" if declared is not None else "the streamed body"
    detail = (
        f"request body too large: {size} exceeds the limit of {max_bytes:,} bytes "
        f"(URNN_MAX_BODY_BYTES); {TOO_LARGE_ADVICE}"
    )
    await send_json_error(send, 413, detail)


async def send_json_error(send: Send, status: int, detail: str) -> None:
    """`{"detail": ...}` with `status`, the connection closed: the body was not read (a gzip
    body read as JSON was a 422 'not valid JSON' that never said why)."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over an already-read body once, then the client's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def content_encoding(scope: Scope) -> bytes | None:
    """The request's Content-Encoding, lower case, when it names a coding other than identity
    (None when the body is sent as is). Every Content-Encoding line counts, as one list (RFC
    9110, 5.3): the first line alone was read, so `identity` then `gzip` on two lines passed a
    gzip body on to be read as JSON, where `identity, gzip` on one was a 415."""
    values = [
        bytes(value).strip().lower()
        for key, value in scope.get("headers", ())
        if key.lower() == b"content-encoding"
    ]
    codings = [c.strip() for value in values for c in value.split(b",")]
    if all(c in (b"", b"identity") for c in codings):
        return None
    return b", ".join(values)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return parse_content_length(value)
    return None


def parse_content_length(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


class HeadAsGetMiddleware:
    """HEAD answered wherever GET is (RFC 9110, 9.3.2: the same answer without its body).
    FastAPI's routes take only the methods they name, so HEAD /model, /metrics or /jobs was a
    405 to uptime checks and link checkers. The request goes on as a GET in a copy of the
    scope: the server's own scope still says HEAD, so uvicorn sends the status and headers
    and leaves the body out, and the metrics outside count it as HEAD. A route that takes
    neither answers 405 naming what it takes, as for GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = dict(scope, method="GET")
        await self.app(scope, receive, send)


class RequestMetricsMiddleware:
    """`routes`: the app's routes, for answers given before routing (a 413 or 415 of the size
    limit): the path's template is found among them, so a too-large POST /forecast counts
    under `/forecast`, where the 4xx panels and alerts look, not under `unmatched`."""

    def __init__(
        self, app: ASGIApp, *, metrics: ServiceMetrics, routes: Sequence[BaseRoute] = ()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except BaseException:
            # ServerErrorMiddleware, around this one, answers 500 to what the app raised
            self._observe(scope, 500 if status is None else status, start)
            raise
        if status is not None:
            self._observe(scope, status, start)
        # else: nothing answered, the client left while sending its body (the size limit's
        # read, the fast path's): not a request served, and above all not a 5xx, which it
        # was (status 500 by default) on every route but the fast path's, feeding the paging
        # UrnnHigh5xxRate with clients that time out or lose their link

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        template = (
            scope.get(ROUTE_TEMPLATE) or getattr(route, "path", None) or self._template(scope)
        )
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        self.metrics.request_latency.labels(
            route=template, method=method, status_class=f"{status // 100}xx"
        ).observe(time.perf_counter() - start)

    def _template(self, scope: Scope) -> str:
        """The template of the route `scope`'s path names (whatever its method), for an
        answer given before the router saw the request; `unmatched` when none does."""
        partial = None  # the path matches, not the method: the router's choice is a full match
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", "unmatched"))
            if match is Match.PARTIAL and partial is None:
                partial = str(getattr(route, "path", "unmatched"))
        return partial or "unmatched"
