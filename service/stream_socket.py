"""WS /series/stream: one connection that carries a device's or a gateway's updates, each
answered in order with the same answer POST /series/{id}/observations gives.

Why a second transport: an equipment feed sends a point at a time, for hours. Over HTTP each
point is a whole request (parse, a task, routing, headers) around ~0.1 ms of model and state
work; over one WebSocket it is a frame. The answers, the checks and what is stored are those
of the POST route, message for message (tests/service/test_stream_socket.py holds the two
side by side).

Protocol. The handshake carries `X-API-Key` as the POST route requires it. A refused handshake
is answered as an HTTP request would be (the WebSocket Denial Response extension, which
uvicorn serves): a missing or wrong key 401, no key configured outside URNN_ENV=development
403, each with the POST route's `{"detail": ...}`; with no key configured (development), a
browser page of another origin is refused with a 403 naming the Origin header (`same_origin`).
Each client message (text or binary frame) is one JSON object: `series_id` and the fields of
the POST body (`values`, `start` or `timestamps`, `covariates`, `horizon`, `quantiles`,
`gap_policy`, `timezone`). Each message gets exactly one
reply, in order, in the same frame type: the ObservationsResponse JSON (its `series.id` names
the series), or, when the message is refused, `{"series_id": ..., "status": <the HTTP status
the POST route would answer>, "detail": <its message>}`. A refused message changes nothing and
the connection stays open; a message above URNN_MAX_BODY_BYTES answers 413 the same way (one
above uvicorn's ws_max_size, which `urnn serve` sets to twice that limit and at least 16 MiB,
is not read: uvicorn closes with 1009).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import orjson
import pydantic_core
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.errors import describe_validation_errors, json_problem
from service.fast_routes import (
    api_key_accepted,
    call_handler,
    handler_for,
    plain_series_id,
)
from service.json_block import repeated_observations_key
from service.security import MISSING_OR_WRONG_KEY, NO_KEY_CONFIGURED, same_origin
from service.series_ids import SERIES_ID_MAX, SERIES_ID_RULE
from service.state import ServiceState
from service.stream_fast_path import fast_observations
from service.stream_schemas import ObservationsRequest
from urnn_forecast.field_types import shown

logger = logging.getLogger(__name__)

ROUTE = "/series/stream"
METHOD = "WEBSOCKET"  # the request-latency metric's method label for one message
POLICY_VIOLATION = 1008  # close code of a refusal where the server has no denial responses
DENIAL_EXTENSION = "websocket.http.response"


async def serve_stream(websocket: WebSocket, state: ServiceState) -> None:
    headers = {key.lower(): value for key, value in reversed(websocket.scope["headers"])}
    refusal = handshake_refusal(state, headers)
    if refusal is not None:
        await deny(websocket, *refusal)
        return
    await websocket.accept()
    connections = state.metrics.stream_connections
    connections.inc()
    try:
        await _serve_messages(websocket, state)
    except WebSocketDisconnect:
        pass  # gone while its reply was written: what it sent was applied (a resend is a duplicate)
    finally:
        connections.dec()


def handshake_refusal(state: ServiceState, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """(status, detail) of a handshake to refuse, None for one to accept. The key's statuses
    and details are those of the POST route (`service.security.require_api_key`); neither the
    key sent nor the one configured is said."""
    if not api_key_accepted(state, headers):
        if state.settings.api_key is None:  # and not development
            return 403, NO_KEY_CONFIGURED
        return 401, MISSING_OR_WRONG_KEY
    if state.settings.api_key is None and not same_origin(headers):
        origin = headers.get(b"origin", b"").decode("latin-1")
        host = headers.get(b"host", b"").decode("latin-1").strip()[:100]  # echoed: shortened
        own = f"'http://{host}' or 'https://{host}'" if host else "none (no Host header)"
        return 403, (
            f"header 'Origin': {shown(origin)} is a page of another origin; with no "
            "URNN_API_KEY configured (URNN_ENV=development) this socket takes a handshake with "
            "no Origin header (a client that is not a browser) or with this service's own "
            f"origin, {own}; set URNN_API_KEY and send it as X-API-Key otherwise"
        )
    return None


async def deny(websocket: WebSocket, status: int, detail: str) -> None:
    """Refuse the handshake with `status` and `{"detail": ...}`, as an HTTP route would; a
    server without the denial extension can send no body (its answer is an empty 403), so
    the reason then goes in the close frame's reason, for whoever logs it."""
    if DENIAL_EXTENSION in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
        return
    reason = detail.encode()[:123].decode("utf-8", "ignore")  # a close reason: 123 bytes at most
    await websocket.close(code=POLICY_VIOLATION, reason=reason)


async def _serve_messages(websocket: WebSocket, state: ServiceState) -> None:
    latency: dict[int, Any] = {}  # status class -> labelled histogram child
    limit = state.settings.max_body_bytes
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        start = time.perf_counter()
        binary = message.get("bytes")
        raw: bytes | str = binary if binary is not None else message.get("text") or ""
        status, reply = await answer(websocket, state, raw, limit)
        if binary is not None:
            await websocket.send({"type": "websocket.send", "bytes": reply})
        else:
            await websocket.send({"type": "websocket.send", "text": reply.decode()})
        child = latency.get(status // 100)
        if child is None:
            child = latency[status // 100] = state.metrics.request_latency.labels(
                route=ROUTE, method=METHOD, status_class=f"{status // 100}xx"
            )
        child.observe(time.perf_counter() - start)
        if status < 400:
            state.streams.keep_awake()


async def answer(
    websocket: WebSocket, state: ServiceState, raw: bytes | str, limit: int
) -> tuple[int, bytes]:
    """(status, reply bytes) of one message; never raises for what the client sent."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
    if size > limit:
        return refused(
            None,
            413,
            f"the message is {size} bytes, above the limit of {limit} (URNN_MAX_BODY_BYTES)",
        )
    data = _loads(raw)
    if data is _INVALID:  # where and how, in the words POST /series/{id}/observations uses
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return refused(None, 422, f"the message is not valid JSON: {json_problem(text)}")
    if not isinstance(data, dict):
        return refused(None, 422, "the message must be a JSON object: series_id and the points")
    repeated = repeated_observations_key(raw, data)
    if repeated is not None:  # the POST route's 422; which of two ids was meant is not known
        if repeated.where != _SERIES_ID_FIELD:
            series_id = data.get("series_id")
            return refused(series_id if plain_series_id(series_id) else None, 422, str(repeated))
        said = str(repeated).replace("in the body", "in the message", 1)
        return refused(None, 422, said)
    series_id = data.pop("series_id", None)
    if not plain_series_id(series_id):
        # the id echoed when it is text (shortened), so a client can tell which message it was
        echoed = series_id[:SERIES_ID_MAX] if isinstance(series_id, str) else None
        what = "required" if series_id is None else f"got {shown(series_id)}"
        return refused(echoed, 422, f"field 'series_id': {what}; {SERIES_ID_RULE}")
    assert isinstance(series_id, str)
    try:
        body = fast_observations(data)
        if body is not None:
            return 200, await state.streams.observe_json(series_id, body)
        data = _exact(raw, data)
        try:
            request = ObservationsRequest.model_validate(data)
        except ValidationError as error:
            return refused(
                series_id,
                422,
                describe_validation_errors(error.errors(), data, ObservationsRequest),
            )
        response = await state.streams.observe(series_id, request)
        return 200, response.model_dump_json().encode()
    except Exception as error:
        return await _refused_by_handler(websocket, series_id, error)


_INVALID = object()
_SERIES_ID_FIELD = "field 'series_id'"


def _loads(raw: bytes | str) -> Any:
    """orjson, or the standard parser for what orjson refuses but the POST route reads (NaN
    and Infinity tokens: the schema then names the field); `_INVALID` for anything else."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply for the parser
        return _INVALID


def _exact(raw: bytes | str, data: dict[str, Any]) -> dict[str, Any]:
    """The message as the POST route's schema reads its body (pydantic_core's parser, as
    service.routes.fast_json): orjson reads an integer beyond 64 bits as a float (a horizon of
    10**20 became 1e20, refused as unparsable where POST says it is above the maximum)."""
    try:
        exact = pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError:
        return data
    if not isinstance(exact, dict):
        return data
    exact.pop("series_id", None)
    return exact


def refused(series_id: str | None, status: int, detail: str) -> tuple[int, bytes]:
    """The reply to a refused message. Text that is not UTF-8 (a lone surrogate, "\\ud800",
    which JSON can escape but no reply can carry) is written with backslash escapes in the
    detail, and the id, not echoable, is null."""
    try:
        return status, orjson.dumps({"series_id": series_id, "status": status, "detail": detail})
    except TypeError:  # orjson: "str is not valid UTF-8: surrogates not allowed"
        if series_id is not None and not _utf8(series_id):
            series_id = None
        detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")  # no-op on UTF-8
        return status, orjson.dumps({"series_id": series_id, "status": status, "detail": detail})


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _refused_by_handler(
    websocket: WebSocket, series_id: str, error: Exception
) -> tuple[int, bytes]:
    """The status and message the app's exception handlers give the POST route's `error`."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": METHOD,
        "path": ROUTE,
        "headers": [],
        "query_string": b"",
        "app": websocket.scope.get("app"),
    }
    handler = handler_for(scope, error)
    if handler is None:  # a bug, not the message: logged, answered, the connection stays
        logger.exception("unhandled error on a %s message", ROUTE)
        return refused(series_id, 500, f"internal error ({type(error).__name__})")
    response = await call_handler(handler, Request(scope), error)
    detail = orjson.loads(response.body).get("detail", "")
    return refused(series_id, response.status_code, str(detail))
