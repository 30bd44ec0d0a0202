"""`service.fast_routes.FastRoutesMiddleware` at the ASGI level, with a fake app behind it.

What the byte-for-byte tests of the two endpoints (test_fast_path, test_streaming_fast_path)
cannot reach through TestClient: a body replayed intact whenever the fast handler steps aside,
a path under a root_path, exception handlers chosen as Starlette's ExceptionMiddleware chooses
them, a client that leaves before sending its body, and the route label the metrics read.
Through the real app: the streaming endpoint's latency label.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from fastapi import Response
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException
from starlette.types import Message

from service.fast_routes import FastRoute, FastRoutesMiddleware, Outermost
from service.metrics import ServiceMetrics
from service.middleware import ROUTE_TEMPLATE
from tests.service.conftest import API_KEY, Registry, metric_value
from tests.service.test_streaming_api import points


class Downstream:
    """The app behind the middleware: records the body it reads and answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"downstream"})


class RefusedError(Exception):
    pass


class UnhandledError(Exception):
    pass


async def on_refused(request: Any, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": f"refused: {exc}"})


async def on_teapot(request: Any, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=418, content={"detail": "teapot"})


class FakeApp:
    exception_handlers: ClassVar[dict[Any, Callable[..., Any]]] = {
        RefusedError: on_refused,
        418: on_teapot,
        Exception: on_refused,  # ServerErrorMiddleware's: must not be used by the fast path
    }


async def handler(state: Any, data: Any, params: dict[str, str], headers: Any) -> Any:
    action = data.get("do")
    if action == "answer":
        return Response(content=f"fast {params['name']}".encode(), media_type="text/plain")
    if action == "refuse":
        raise RefusedError(params["name"])
    if action == "teapot":
        raise HTTPException(status_code=418)
    if action == "crash":
        raise UnhandledError("boom")
    return None  # not sure: FastAPI's path decides


def call(
    path: str,
    body: bytes,
    *,
    content_type: bytes | None = b"application/json",
    root_path: str = "",
    messages: list[Message] | None = None,
    outermost: Outermost | None = None,
    app: Any = None,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[list[Message], Downstream, dict[str, Any]]:
    downstream = Downstream()
    route = FastRoute("POST", "/things/{name}", re.compile(r"/things/(?P<name>[^/]+)"), handler)
    middleware = FastRoutesMiddleware(
        downstream,  # type: ignore[arg-type]
        state=None,  # type: ignore[arg-type]
        routes=[route],
        outermost=outermost,
    )
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": root_path,
        "headers": [
            *([(b"content-type", content_type)] if content_type is not None else []),
            *extra_headers,
        ],
        "query_string": b"",
        "app": FakeApp() if app is None else app,
    }
    incoming = list(messages or [{"type": "http.request", "body": body, "more_body": False}])
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent, downstream, scope


def status_and_body(sent: list[Message]) -> tuple[int, bytes]:
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_answers_a_matching_json_post_and_names_its_route() -> None:
    sent, downstream, scope = call("/things/a1", b'{"do": "answer"}')
    assert status_and_body(sent) == (200, b"fast a1")
    assert downstream.bodies == []
    assert scope[ROUTE_TEMPLATE] == "/things/{name}"
    assert scope["path_params"] == {"name": "a1"}


def test_matches_under_a_root_path() -> None:
    sent, _, _ = call("/api/things/b", b'{"do": "answer"}', root_path="/api")
    assert status_and_body(sent) == (200, b"fast b")


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/things/a", b'{"do": "unsure"}', b"application/json"),  # the handler steps aside
        ("/things/a", b'{"do": NaN}', b"application/json"),  # JSON orjson refuses
        ("/things/a", b'{"do": "answer"}', b"application/merge+json"),  # FastAPI reads it
        ("/things/a/b", b'{"do": "answer"}', b"text/plain"),  # another path, any type
        ("/things/a/b", b'{"do": "answer"}', b"application/json"),  # another path
    ],
)
def test_everything_else_reaches_the_app_with_its_body_intact(
    path: str, body: bytes, content_type: bytes
) -> None:
    sent, downstream, _ = call(path, body, content_type=content_type)
    assert status_and_body(sent) == (299, b"downstream")
    assert downstream.bodies == [body]


@pytest.mark.parametrize("content_type", [b"text/plain", None])
def test_a_body_the_route_cannot_read_is_415_without_reaching_the_app(
    content_type: bytes | None,
) -> None:
    sent, downstream, _ = call("/things/a", b'{"do": "answer"}', content_type=content_type)
    status, body = status_and_body(sent)
    assert status == 415 and downstream.bodies == []
    said = "'text/plain'" if content_type else "missing"
    assert json.loads(body)["detail"] == (
        f"header 'Content-Type': {said}; this endpoint reads a body sent as application/json"
    )


def test_a_body_in_several_chunks_is_read_whole() -> None:
    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"do": ', "more_body": True},
        {"type": "http.request", "body": b'"unsure"}', "more_body": False},
    ]
    sent, downstream, _ = call("/things/a", b"", messages=chunks)
    assert status_and_body(sent)[0] == 299
    assert downstream.bodies == [b'{"do": "unsure"}']


def test_exceptions_go_to_the_apps_handlers_as_starlette_chooses_them() -> None:
    assert status_and_body(call("/things/x", b'{"do": "refuse"}')[0]) == (
        409,
        b'{"detail":"refused: x"}',
    )
    assert status_and_body(call("/things/x", b'{"do": "teapot"}')[0]) == (
        418,
        b'{"detail":"teapot"}',
    )
    # no handler of its own (the catch-all Exception one is ServerErrorMiddleware's): raised
    with pytest.raises(UnhandledError):
        call("/things/x", b'{"do": "crash"}')


def test_a_client_that_leaves_before_its_body_gets_no_answer() -> None:
    sent, downstream, _ = call("/things/a", b"", messages=[{"type": "http.disconnect"}])
    assert sent == [] and downstream.bodies == []


def test_streaming_updates_answered_by_the_fast_path_carry_the_route_label(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = stream_client_for()
    headers = {"X-API-Key": API_KEY}
    requests = "urnn_http_request_duration_seconds_count"
    label = dict(route="/series/{series_id}/observations", method="POST", status_class="2xx")
    for start, n in ((0, 50), (50, 1), (51, 1)):
        answer = client.post(
            "/series/m1/observations", json=points(registry.frame, start, n), headers=headers
        )
        assert answer.status_code == 200, answer.text
    assert metric_value(client, requests, **label) == 3.0
    assert "m1" not in client.get("/metrics").text


# --- ahead of FastAPI's stack (`Outermost`): the stack's work for what it answers itself ---


def outermost(max_body_bytes: int = 1024) -> Outermost:
    return Outermost(metrics=ServiceMetrics(), max_body_bytes=max_body_bytes)


def latency_count(outer: Outermost, status_class: str) -> float:
    value = outer.metrics.registry.get_sample_value(
        "urnn_http_request_duration_seconds_count",
        {"route": "/things/{name}", "method": "POST", "status_class": status_class},
    )
    return 0.0 if value is None else value


def test_outermost_records_the_latency_of_what_it_answers_and_leaves_the_rest_to_the_stack() -> (
    None
):
    outer = outermost()
    assert status_and_body(call("/things/a", b'{"do": "answer"}', outermost=outer)[0])[0] == 200
    assert status_and_body(call("/things/a", b'{"do": "refuse"}', outermost=outer)[0])[0] == 409
    assert latency_count(outer, "2xx") == 1.0 and latency_count(outer, "4xx") == 1.0
    # Stepped aside: the stack's own metrics middleware counts it, not the fast path.
    sent, downstream, _ = call("/things/a", b'{"do": "unsure"}', outermost=outer)
    assert status_and_body(sent)[0] == 299 and downstream.bodies == [b'{"do": "unsure"}']
    assert latency_count(outer, "2xx") == 1.0


def test_outermost_leaves_a_declared_oversized_body_to_the_stacks_limit() -> None:
    body = b'{"do": "answer", "pad": "' + b"x" * 2000 + b'"}'
    length = (b"content-length", str(len(body)).encode())
    sent, downstream, _ = call("/things/a", body, outermost=outermost(), extra_headers=(length,))
    assert status_and_body(sent)[0] == 299  # the stack (its size limit) decides, body unread
    assert downstream.bodies == [body]


def test_outermost_answers_413_to_a_streamed_body_past_the_limit() -> None:
    outer = outermost(max_body_bytes=1024)
    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"do": "answer", "pad": "', "more_body": True},
        {"type": "http.request", "body": b"x" * 2000, "more_body": True},
        {"type": "http.request", "body": b'"}', "more_body": False},
    ]
    sent, downstream, _ = call("/things/a", b"", messages=chunks, outermost=outer)
    status, body = status_and_body(sent)
    assert status == 413 and b"URNN_MAX_BODY_BYTES" in body
    assert (b"connection", b"close") in sent[0]["headers"]
    assert downstream.bodies == [] and latency_count(outer, "4xx") == 1.0


def test_outermost_answers_an_unhandled_error_as_server_error_middleware_does() -> None:
    outer = outermost()
    # The app's catch-all handler answers, then the error propagates for the server's log.
    sent = call_collecting("/things/x", b'{"do": "crash"}', outer, FakeApp())
    assert status_and_body(sent) == (409, b'{"detail":"refused: boom"}')  # FakeApp's Exception
    # Without a catch-all handler: a plain 500.
    sent = call_collecting("/things/x", b'{"do": "crash"}', outer, object())
    assert status_and_body(sent) == (500, b"Internal Server Error")
    assert latency_count(outer, "4xx") == 1.0 and latency_count(outer, "5xx") == 1.0


def call_collecting(path: str, body: bytes, outer: Outermost, app: Any) -> list[Message]:
    """`call`'s messages when the call raises (the error is swallowed here)."""
    route = FastRoute("POST", "/things/{name}", re.compile(r"/things/(?P<name>[^/]+)"), handler)
    middleware = FastRoutesMiddleware(Downstream(), state=None, routes=[route], outermost=outer)  # type: ignore[arg-type]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
        "app": app,
    }
    incoming: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(UnhandledError):
        asyncio.run(middleware(scope, receive, send))
    return sent


def test_with_opentelemetry_on_the_fast_path_runs_inside_the_stack(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = stream_client_for(otel_telemetry=True)
    app = client.app
    assert getattr(app, "fast_routes", None) is None
    assert any(m.cls is FastRoutesMiddleware for m in app.user_middleware)  # type: ignore[attr-defined]
    headers = {"X-API-Key": API_KEY}
    answer = client.post(
        "/series/o1/observations", json=points(registry.frame, 0, 50), headers=headers
    )
    assert answer.status_code == 200, answer.text
    label = dict(route="/series/{series_id}/observations", method="POST", status_class="2xx")
    assert metric_value(client, "urnn_http_request_duration_seconds_count", **label) == 1.0
