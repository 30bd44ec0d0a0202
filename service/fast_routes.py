"""The hot endpoints' fast path, dispatched at the ASGI layer ahead of Starlette's router.

POST /forecast and POST /series/{series_id}/observations are declared as FastAPI declares any
typed body (OpenAPI, the schema's 422s). A plainly well-formed JSON body does not need any of
that: `FastRoutesMiddleware` matches the two paths itself, parses the body with orjson (a plain
/forecast body: with simdjson, straight into arrays, `service.json_block`), hands
it to the route's `fast` function (no pydantic models, no dependency solving, no Request
object, no router walk) and writes the answer. Measured in process on the 2-core box, a
one-point streaming update went from ~280 us through the route classes to ~180 us this way;
the router and its exception and exit-stack middlewares were most of the difference.

Anything the fast functions are not sure of answers None, and the request continues down the
normal stack with the body replayed, exactly as if this middleware were not there: JSON that
orjson refuses (the NaN/Infinity tokens the service answers with a 422 naming the value),
another content type, a body the fast readers leave to the schema, a missing or wrong API
key. Exceptions the fast functions raise go to the app's own exception handlers, looked up
as Starlette's ExceptionMiddleware looks them up (status-code handlers for HTTPException,
then the exception's classes in MRO order; the catch-all `Exception` handler and anything
unhandled propagate to ServerErrorMiddleware), so every status and message is the same
whichever path answers; tests compare the two paths byte for byte.

Where it runs: ahead of FastAPI's whole middleware stack (`service.main.ServiceApp`, with
`Outermost`), where it does for the requests it answers what the stack's layers would (the
latency metric under the declared route's template, the body-size limit's 413, and
ServerErrorMiddleware's answer to an exception no handler takes, re-raised for the log);
everything it steps aside from goes down the stack unchanged. With FastAPI's OpenTelemetry
on (URNN_OTEL_TELEMETRY) it runs as before, a middleware inside the size limit and the
metrics, so that the telemetry sees every request. Either way it puts the route's template in
the scope (`ROUTE_TEMPLATE`), so latency labels are the same.
"""

from __future__ import annotations

import hmac
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.arrow_io import (
    ARROW_FILE,
    ARROW_MEDIA_TYPES,
    ARROW_STREAM,
    media_type,
    read_arrow_request,
    wants_arrow,
)
from service.arrow_limits import unpacked_bytes
from service.errors import TOO_LARGE_ADVICE, BodyTooLargeError
from service.fast_path import fast_request
from service.forecasting import forecast
from service.json_block import (
    KEYS_CHECKED,
    KeysUnread,
    RepeatedKeyError,
    forecast_repeated_key,
    json_document,
    read_json_block,
    repeated_observations_key,
)
from service.metrics import ServiceMetrics
from service.middleware import (
    ROUTE_TEMPLATE,
    content_encoding,
    parse_content_length,
    replaying,
    send_too_large,
)
from service.series_ids import SERIES_ID_MAX, SERIES_ID_PATTERN
from service.state import ServiceState
from service.stream_fast_path import fast_observations
from urnn_forecast.field_types import shown

# (state, parsed JSON, path parameters, request headers) -> the answer, or None: not sure,
# let FastAPI's path decide.
FastHandler = Callable[
    [ServiceState, Any, dict[str, str], dict[bytes, bytes]], Awaitable[Response | None]
]
# (state, JSON body, path parameters, request headers) -> the answer, or None: parse the body
# with orjson and call the route's FastHandler, the body's keys checked; KeysUnread.UNREAD: the
# same, its keys not checked (text no reader of them takes). A reader of the common body
# straight from its bytes (`service.json_block`), ahead of orjson.
RawJsonHandler = Callable[
    [ServiceState, bytes, dict[str, str], dict[bytes, bytes]],
    Awaitable[Response] | KeysUnread | None,
]
# (body, orjson's reading of it) -> the 422 naming a key the body gives twice, or None
RepeatedCheck = Callable[[bytes, Any], Exception | None]
# (state, body, its media type, path parameters, request headers) -> the answer. Arrow bodies
# have no other path: the handler answers every one of them, errors included.
ArrowHandler = Callable[
    [ServiceState, bytes, str, dict[str, str], dict[bytes, bytes]], Awaitable[Response]
]

_SERIES_ID = re.compile(SERIES_ID_PATTERN)
API_KEY_HEADER = b"x-api-key"


@dataclass(frozen=True)
class FastRoute:
    method: str
    template: str  # the declared route's path: the metrics' route label
    pattern: re.Pattern[str]  # what Starlette's compiled path would match (named groups)
    handle: FastHandler
    # A streaming update: after its answer is sent the loop keeps polling for the next one
    # (`service.busy_poll`)
    keep_awake: bool = False
    # Reads Arrow IPC bodies too (`service.arrow_io`); other non-JSON bodies then answer 415
    arrow: ArrowHandler | None = None
    # Reads the plain JSON body from its bytes, ahead of orjson and `handle`
    raw_json: RawJsonHandler | None = None
    # The first key the body gives twice, from its bytes and orjson's reading of them (which
    # keeps the last): raised ahead of `handle`, as FastAPI's route raises it (`fast_json`)
    repeated: RepeatedCheck | None = None
    # Requires the API key (`service.security.ApiKeyDep` on the route): a request without it
    # is answered by the route's dependency (401 or 403) before anything about its body
    needs_key: bool = False


@dataclass(frozen=True)
class Outermost:
    """What the middlewares inside FastAPI's stack do, for the requests the fast path answers
    itself when it runs ahead of that stack (`service.main.ServiceApp`): request metrics, the
    body-size limit, and ServerErrorMiddleware's answer to an exception no handler takes."""

    metrics: ServiceMetrics
    max_body_bytes: int


class FastRoutesMiddleware:
    """`outermost=None`: a middleware inside FastAPI's stack (under the request metrics and
    the size limit). With `Outermost(...)`: ahead of the whole stack, `app` being the stack
    itself; the requests it answers then skip FastAPI's, Starlette's and our middlewares
    (~20 us in process, more between real requests), and it does their work for them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: ServiceState,
        routes: Sequence[FastRoute] | None = None,
        outermost: Outermost | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.routes = tuple(FAST_ROUTES if routes is None else routes)
        self.outermost = outermost
        self._latency: dict[tuple[str, str, int], Any] = {}  # labelled histogram children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self._match(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route, params = found
        headers = dict(reversed(scope["headers"]))  # lower-case names; the first of each wins
        if scope.get("query_string") or content_encoding(scope) is not None:
            # a query on these POSTs is the stack's 422 (service.strict_query), an encoded
            # body its 415 (the body check)
            await self.app(scope, receive, send)
            return
        content_type = headers.get(b"content-type")
        kind = media_type(content_type or b"")
        arrow = route.arrow is not None and kind in ARROW_MEDIA_TYPES
        if not arrow and kind != "application/json":
            if not _json_like(kind):  # a missing header too: FastAPI reads no body without one
                if route.needs_key and not api_key_accepted(self.state, headers):
                    await self.app(scope, receive, send)  # the key first: its 401 or 403
                    return
                await self._unsupported_media_type(scope, receive, send, route, kind, start)
                return
            await self.app(scope, receive, send)
            return
        outer = self.outermost
        limit = None if outer is None else outer.max_body_bytes
        if limit is not None:
            declared = parse_content_length(headers.get(b"content-length", b"none"))
            if declared is not None and declared > limit:
                await self.app(scope, receive, send)  # the size limit inside answers 413
                return
        body = await _read_body(receive, limit)
        if body is None:
            return  # the client left before sending its body: nobody to answer
        if body is _TOO_LARGE:
            assert outer is not None
            await send_too_large(send, outer.max_body_bytes, None)
            self._observe(route, 413, start)
            return
        replay = replaying(body, receive)
        answer: Awaitable[Response | None]
        if arrow:
            assert route.arrow is not None
            answer = route.arrow(self.state, body, kind, params, headers)
        else:
            raw: Awaitable[Response | None] | None = None
            if route.raw_json is not None:
                read = route.raw_json(self.state, body, params, headers)
                if read is not KeysUnread.UNREAD:
                    scope[KEYS_CHECKED] = True  # by raw_json: FastAPI's route need not again
                    raw = read
            if raw is None:
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError:
                    await self.app(scope, replay, send)
                    return
                repeated = None if route.repeated is None else route.repeated(body, data)
                if route.repeated is not None:
                    scope[KEYS_CHECKED] = True  # FastAPI's route need not again
                if repeated is not None:
                    raw = _raising(repeated)
                else:
                    raw = route.handle(self.state, data, params, headers)
            answer = raw
        scope[ROUTE_TEMPLATE] = route.template
        scope["path_params"] = params
        try:
            response = await answer
        except Exception as error:
            handler = handler_for(scope, error)
            if handler is None:
                if outer is None:
                    raise  # ServerErrorMiddleware's, above this middleware
                await self._server_error(scope, replay, send, error, route, start)
                raise
            response = await call_handler(handler, Request(scope, replay), error)
        if response is None:
            await self.app(scope, replay, send)
            return
        await response(scope, replay, send)
        self._observe(route, response.status_code, start)
        if route.keep_awake and response.status_code < 400:
            self.state.streams.keep_awake()

    async def _unsupported_media_type(
        self, scope: Scope, receive: Receive, send: Send, route: FastRoute, kind: str, start: float
    ) -> None:
        """415 naming the body types the route reads, instead of a schema error about a body
        that was never JSON."""
        scope[ROUTE_TEMPLATE] = route.template
        reads = f"application/json, {ARROW_STREAM} or {ARROW_FILE}"
        if route.arrow is None:
            reads = "application/json"
        said = shown(kind) if kind else "missing"
        detail = f"header 'Content-Type': {said}; this endpoint reads a body sent as {reads}"
        response = JSONResponse(status_code=415, content={"detail": detail})
        await response(scope, receive, send)
        self._observe(route, 415, start)

    def _observe(self, route: FastRoute, status: int, start: float) -> None:
        if self.outermost is None:
            return
        key = (route.template, route.method, status // 100)
        child = self._latency.get(key)
        if child is None:  # a few (route, status class) pairs: look each label set up once
            child = self._latency[key] = self.outermost.metrics.request_latency.labels(
                route=route.template, method=route.method, status_class=f"{status // 100}xx"
            )
        child.observe(time.perf_counter() - start)

    async def _server_error(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: Exception,
        route: FastRoute,
        start: float,
    ) -> None:
        """As ServerErrorMiddleware: the app's catch-all handler answers (plain 500 without
        one); the caller re-raises so that the server logs the traceback."""
        handlers = getattr(scope.get("app"), "exception_handlers", {})
        handler = handlers.get(500) or handlers.get(Exception)
        if handler is None:
            response: Response = PlainTextResponse("Internal Server Error", status_code=500)
        else:
            response = await call_handler(handler, Request(scope, receive), error)
        await response(scope, receive, send)
        self._observe(route, response.status_code, start)

    def _match(self, scope: Scope) -> tuple[FastRoute, dict[str, str]] | None:
        method, path = scope["method"], _route_path(scope)
        for route in self.routes:
            if method == route.method and (m := route.pattern.fullmatch(path)) is not None:
                return route, m.groupdict()
        return None


def _route_path(scope: Scope) -> str:
    """The path the router matches: `scope["path"]` less a `root_path` prefix (as Starlette's
    routing reads it behind a proxy that mounts the app under a prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def _json_like(kind: str) -> bool:
    """A media type FastAPI's own path reads as JSON (`application/json`, `...+json`)."""
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


_TOO_LARGE = b"<above the size limit>"  # a sentinel: compared by identity


async def _read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole body; None if the client left first, _TOO_LARGE past `limit` bytes."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        total += len(chunk)
        if limit is not None and total > limit:
            return _TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def handler_for(scope: Scope, error: Exception) -> Callable[..., Any] | None:
    """The app's handler for `error`, as Starlette's ExceptionMiddleware chooses it."""
    handlers = getattr(scope.get("app"), "exception_handlers", {})
    if isinstance(error, HTTPException) and error.status_code in handlers:
        handler: Callable[..., Any] = handlers[error.status_code]
        return handler
    for cls in type(error).__mro__:
        if cls is Exception:  # ServerErrorMiddleware's: it logs and answers 500
            return None
        if cls in handlers:
            handler = handlers[cls]
            return handler
    return None


async def call_handler(handler: Callable[..., Any], request: Request, error: Exception) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(request, error)
    return await run_in_threadpool(handler, request, error)


def api_key_accepted(state: ServiceState, headers: dict[bytes, bytes]) -> bool:
    """Whether `service.security.require_api_key` would let this request through; when not,
    the fast path steps aside and FastAPI's dependency answers the 401 or 403."""
    configured = state.settings.api_key
    if configured is None:
        return state.settings.env == "development"
    key = headers.get(API_KEY_HEADER)
    if not key:  # APIKeyHeader reads an empty header as none
        return False
    return hmac.compare_digest(key, configured.get_secret_value().encode())


# -----------------------------------------------------------------------------
# The two hot endpoints


async def fast_forecast(
    state: ServiceState, data: Any, params: dict[str, str], headers: dict[bytes, bytes]
) -> Response | None:
    parsed = fast_request(data)
    if parsed is None:
        return None
    return await forecast(parsed, state=state, arrow=wants_arrow(headers.get(b"accept")))


def raw_json_forecast(
    state: ServiceState, body: bytes, params: dict[str, str], headers: dict[bytes, bytes]
) -> Awaitable[Response] | KeysUnread | None:
    """A body of plain histories, with covariates or without, read by simdjson
    (`read_json_block`); None for the orjson path, once the document is known to give each
    key once (a block does: its reader checks its objects' keys, the covariates' too; another
    body's are looked at here, in the document already parsed, or, for text
    simdjson refuses, in the standard parser's reading: `forecast_repeated_key`)."""
    document = json_document(body)
    parsed = read_json_block(body, document)
    if parsed is None:
        repeated = forecast_repeated_key(body, document)
        if isinstance(repeated, RepeatedKeyError):
            return _raising(repeated)
        return repeated  # None: checked; KeysUnread.UNREAD: no reader of the keys takes it
    return forecast(parsed, state=state, arrow=wants_arrow(headers.get(b"accept")))


async def _raising(error: Exception) -> Response:
    """An answer that is `error`: raised where the middleware hands errors to the app's
    handlers (the 422 of a ServiceInputError)."""
    raise error


async def arrow_forecast(
    state: ServiceState,
    body: bytes,
    kind: str,
    params: dict[str, str],
    headers: dict[bytes, bytes],
) -> Response:
    limit = state.settings.max_body_bytes
    unpacked = unpacked_bytes(body)
    if unpacked > limit:  # before pyarrow allocates what a compressed body unpacks to
        raise BodyTooLargeError(
            f"request body too large: its Arrow record batches unpack to {unpacked:,} bytes "
            f"(IPC compression), above the limit of {limit:,} bytes (URNN_MAX_BODY_BYTES); "
            f"{TOO_LARGE_ADVICE}"
        )
    request = read_arrow_request(body, kind, max_bytes=limit)
    return await forecast(request, state=state, arrow=wants_arrow(headers.get(b"accept")))


async def fast_observe(
    state: ServiceState, data: Any, params: dict[str, str], headers: dict[bytes, bytes]
) -> Response | None:
    series_id = params["series_id"]
    body = fast_observations(data)
    if body is None or not plain_series_id(series_id) or not api_key_accepted(state, headers):
        return None
    content = await state.streams.observe_json(series_id, body)
    return Response(content=content, media_type="application/json")


def plain_series_id(series_id: object) -> bool:
    """A path id the routes' `SeriesId` parameter accepts as it is (else FastAPI's path
    answers)."""
    if type(series_id) is not str or not 1 <= len(series_id) <= SERIES_ID_MAX:
        return False
    # fullmatch: Python's `$` matches before a last newline, which the path's (Rust) regex does
    # not: an id "a\n" was stored here and then refused by GET and DELETE /series/{id}
    if _SERIES_ID.fullmatch(series_id) is None:
        return False
    try:
        series_id.encode()  # no lone surrogates: JSON text, as pydantic would write it
    except UnicodeEncodeError:
        return False
    return True


FAST_ROUTES = (
    FastRoute(
        "POST",
        "/forecast",
        re.compile(r"/forecast"),
        fast_forecast,
        arrow=arrow_forecast,
        raw_json=raw_json_forecast,
    ),
    FastRoute(
        "POST",
        "/series/{series_id}/observations",
        re.compile(r"/series/(?P<series_id>[^/]+)/observations"),
        fast_observe,
        repeated=repeated_observations_key,
        keep_awake=True,
        needs_key=True,
    ),
)
