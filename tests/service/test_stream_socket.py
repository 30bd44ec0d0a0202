"""WS /series/stream answers each message as POST /series/{id}/observations answers its body."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import anyio
import orjson
import pytest
from fastapi import WebSocket
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from service.stream_socket import deny, serve_stream
from tests.service.conftest import API_KEY, Registry, metric_value
from tests.service.test_streaming_api import points, post

KEY = {"X-API-Key": API_KEY}


@pytest.fixture
def client(stream_client_for: Callable[..., TestClient]) -> TestClient:
    return stream_client_for(stream_tail_points=50)


def renamed(content: bytes, mine: str, theirs: str) -> bytes:
    """`content` with series id `mine` written as `theirs` (in JSON and in messages)."""
    content = content.replace(json.dumps(mine).encode(), json.dumps(theirs).encode())
    return content.replace(repr(mine).encode(), repr(theirs).encode())


def test_each_message_is_answered_as_the_post_route_answers_it(
    client: TestClient, registry: Registry
) -> None:
    frame = registry.frame
    steps: list[dict[str, Any]] = [
        points(frame, 0, 10),  # warming up: forecast null
        points(frame, 10, 38),  # ready now
        *(points(frame, row, 1) for row in range(48, 60)),  # one point at a time
        points(frame, 60, 1, horizon=3, quantiles=[0.9, 0.1]),
        points(frame, 58, 4),  # 3 duplicates, 1 new
        points(frame, 64, 1, gap_policy="interpolate"),  # 2 filled
        points(frame, 70, 1),  # a gap without the policy: 409
        points(frame, 65, 1, values=[float("nan")]),  # NaN: 422 naming the field
        points(frame, 65, 1, horizon=10_000),  # above the maximum: 422
        points(frame, 65, 1, horizon=10**20),  # beyond 64 bits: the same 422 on both
        points(frame, 65, 1, horizon=2.0),  # a whole float, as the POST route reads it
        {"start": frame.index[65].isoformat(), "values": []},  # empty: 422
        points(frame, 65, 1, covariates={}),  # a missing covariate: 422
        points(frame, 65, 1),  # and the stream goes on
    ]
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        for step in steps:
            answer = client.post(
                "/series/by-post/observations",
                content=json.dumps(step),  # NaN as the standard library writes it
                headers={**KEY, "content-type": "application/json"},
            )
            socket.send_text(json.dumps({"series_id": "by-socket", **step}))
            reply = socket.receive_text().encode()
            if answer.status_code == 200:
                assert renamed(reply, "by-socket", "by-post") == answer.content
            else:
                expected = {
                    "series_id": "by-socket",
                    "status": answer.status_code,
                    "detail": answer.json()["detail"].replace("'by-post'", "'by-socket'"),
                }
                assert json.loads(reply) == expected, step
    assert client.get("/series/by-socket").json() == {
        **client.get("/series/by-post").json(),
        "id": "by-socket",
    }


def test_binary_frames_get_binary_replies(client: TestClient, registry: Registry) -> None:
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_bytes(orjson.dumps({"series_id": "b", **points(registry.frame, 0, 50)}))
        reply = orjson.loads(socket.receive_bytes())
    assert reply["series"]["id"] == "b"
    assert reply["series"]["points_seen"] == 50
    assert reply["forecast"] is not None


@pytest.mark.parametrize(
    ("message", "status", "says"),
    [
        # where and how, as POST /series/{id}/observations says it (it said only "not valid")
        (b"{not json", 422, "the message is not valid JSON: unexpected 'n' at line 1, column 2"),
        (b"{", 422, "the message is not valid JSON: it ends before its JSON value is complete"),
        (b"", 422, "the message is not valid JSON: it is empty; send one JSON object"),
        (b"[" * 5000 + b"]" * 5000, 422, "not valid JSON: it is nested too deeply"),
        (b"[1, 2]", 422, "must be a JSON object"),
        (b'{"values": [1.0], "start": "2020-01-01"}', 422, "series_id"),
        (b'{"series_id": "", "values": [1.0]}', 422, "series_id"),
        (b'{"series_id": 7, "values": [1.0]}', 422, "series_id"),
        # ids GET/DELETE /series/{id} could never name: refused, not stored
        (b'{"series_id": "u/1", "values": [1.0]}', 422, "without '/', control characters"),
        (b'{"series_id": "u\\u0000", "values": [1.0]}', 422, "without '/', control"),
        (b'{"series_id": " ", "values": [1.0]}', 422, "not blank"),
        # Unicode spaces are blank, and C1 characters control ones (both were stored)
        (b'{"series_id": "\\u3000", "values": [1.0]}', 422, "not blank"),
        (b'{"series_id": "\\u00a0", "values": [1.0]}', 422, "not blank"),
        (b'{"series_id": "u\\u0085", "values": [1.0]}', 422, "without '/', control"),
        # URL dot-segments: clients drop /series/../ before sending (stored over the socket)
        (b'{"series_id": "..", "values": [1.0]}', 422, "not '.' or '..'"),
        (b'{"series_id": ".", "values": [1.0]}', 422, "not '.' or '..'"),
        # a lone surrogate: its reply could not be written and the connection closed (a fuzzer's)
        (b'{"series_id": "\\ud800", "values": [1.0]}', 422, "field 'series_id': got '\\ud800'"),
        (b'{"series_id": "u", "start": "\\ud800", "values": [1.0]}', 422, "field 'start'"),
        (
            b'{"series_id": "u", "values": [1.0], "colour": 1}',
            422,
            "field 'colour': unknown field; the allowed fields are values, timestamps, start, "
            "covariates, horizon, quantiles, gap_policy, timezone",
        ),
        (b'{"series_id": "u", "values": [1.0], "covariates": {"x": [0.0]}}', 422, "start"),
    ],
)
def test_bad_messages_are_answered_and_the_connection_stays(
    client: TestClient, registry: Registry, message: bytes, status: int, says: str
) -> None:
    good = {"series_id": "s", **points(registry.frame, 0, 50)}
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_bytes(message)
        reply = orjson.loads(socket.receive_bytes())
        assert reply["status"] == status, reply
        assert says in reply["detail"], reply
        socket.send_bytes(orjson.dumps(good))  # the next message is served as usual
        assert orjson.loads(socket.receive_bytes())["series"]["points_seen"] == 50
    assert client.get("/series/u").status_code == 404  # nothing stored for the refused ones


def test_a_message_above_the_size_limit_answers_413(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = stream_client_for(max_body_bytes=2_000)
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_bytes(orjson.dumps({"series_id": "big", **points(registry.frame, 0, 100)}))
        reply = orjson.loads(socket.receive_bytes())
        assert reply["status"] == 413
        assert "URNN_MAX_BODY_BYTES" in reply["detail"]
        socket.send_bytes(orjson.dumps({"series_id": "big", **points(registry.frame, 0, 5)}))
        assert orjson.loads(socket.receive_bytes())["series"]["points_seen"] == 5


def denied(client: TestClient, headers: dict[str, str]) -> WebSocketDenialResponse:
    """The HTTP answer to a refused handshake (the socket is never opened)."""
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect("/series/stream", headers=headers) as socket,
    ):
        socket.receive_text()
    return refused.value


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_the_handshake_needs_the_key(
    client: TestClient, registry: Registry, headers: dict[str, str]
) -> None:
    """A refused handshake was an empty 403: the client could not tell a wrong key from a
    refused origin. It is now the POST route's answer to the same headers: 401 with a JSON
    detail naming the header (and neither the key sent nor the one configured)."""
    answer = denied(client, headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"detail": "missing or wrong X-API-Key header"}
    assert API_KEY not in answer.text
    post = client.post("/series/s/observations", json=points(registry.frame, 0, 5), headers=headers)
    assert (post.status_code, post.json()) == (answer.status_code, answer.json())


def test_with_no_key_configured_the_handshake_says_how_to_open_it(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = stream_client_for(api_key=None, env="production")
    answer = denied(client, {})
    assert answer.status_code == 403
    assert "URNN_API_KEY" in answer.json()["detail"]
    post = client.post("/series/s/observations", json=points(registry.frame, 0, 5))
    assert (post.status_code, post.json()) == (answer.status_code, answer.json())


def test_a_server_without_denial_responses_gets_the_reason_in_the_close_frame() -> None:
    """An ASGI server without the denial extension can send no body: the handshake is closed
    with 1008 and the detail as the close reason (cut to the 123 bytes a reason may take)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/series/stream", "headers": [], "extensions": {}}
    socket = WebSocket(scope, receive, send)
    anyio.run(socket.receive)  # the connect message, as Starlette's router reads it first
    anyio.run(deny, socket, 403, "header 'Origin': " + "x" * 200)
    assert sent == [
        {"type": "websocket.close", "code": 1008, "reason": ("header 'Origin': " + "x" * 200)[:123]}
    ]


def test_without_a_key_a_page_of_another_origin_cannot_open_the_socket(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    """With no key configured (URNN_ENV=development) the handshake needed nothing, and a
    browser sends no preflight for a WebSocket: any web page the developer opened could
    connect to the local service and write (and read) streaming series. A handshake whose
    Origin is another site's is refused, with a 403 whose detail names the Origin header and
    what is allowed; a client that sends no Origin (not a browser), or the service's own
    origin, still connects."""
    client = stream_client_for(api_key=None, env="development")
    for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
        answer = denied(client, {"Origin": origin})
        assert answer.status_code == 403, origin
        detail = answer.json()["detail"]
        assert "'Origin'" in detail and repr(origin) in detail, detail
        assert "http://testserver" in detail and "URNN_API_KEY" in detail, detail
    long_origin = "https://" + "x" * 5_000 + ".example"
    assert len(denied(client, {"Origin": long_origin}).json()["detail"]) < 600
    for n, headers in enumerate([{}, {"Origin": "http://testserver"}]):
        with client.websocket_connect("/series/stream", headers=headers) as socket:
            socket.send_text(json.dumps({"series_id": f"dev-{n}", **points(registry.frame, 0, 5)}))
            assert json.loads(socket.receive_text())["series"]["points_seen"] == 5


def test_a_windowed_model_answers_409_per_message(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = client_for()  # the trained kind "urnn" champion
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_text(json.dumps({"series_id": "w", **points(registry.frame, 0, 50)}))
        reply = json.loads(socket.receive_text())
    assert reply["status"] == 409
    assert "not a streaming model" in reply["detail"]


def test_messages_are_counted_in_the_request_latency(
    client: TestClient, registry: Registry
) -> None:
    labels = {"route": "/series/stream", "method": "WEBSOCKET"}
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_text("{")
        socket.receive_text()  # the connection is up once it has answered
        assert metric_value(client, "urnn_stream_connections") == 1
        for row in (0, 50):
            socket.send_text(json.dumps({"series_id": "m", **points(registry.frame, row, 50)}))
            socket.receive_text()
        socket.send_text("{")
        socket.receive_text()
    deadline = time.monotonic() + 10  # the server sees the close on its own thread
    while metric_value(client, "urnn_stream_connections") != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metric_value(client, "urnn_stream_connections") == 0  # closed again
    count = "urnn_http_request_duration_seconds_count"
    assert metric_value(client, count, status_class="2xx", **labels) == 2
    assert metric_value(client, count, status_class="4xx", **labels) == 2
    # the same series is then readable, and POST continues it where the socket left it
    assert post(client, "m", points(registry.frame, 100, 1)).json()["series"]["points_seen"] == 101


class GoneBeforeTheReply:
    """A WebSocket whose client sends one message and is gone when the reply is written (as
    uvicorn reports it to Starlette: the send raises WebSocketDisconnect)."""

    def __init__(self, message: bytes) -> None:
        self.scope = {"headers": [(b"x-api-key", API_KEY.encode())], "app": None}
        self.messages: list[dict[str, Any]] = [{"type": "websocket.receive", "bytes": message}]

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict[str, Any]:
        return self.messages.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        raise WebSocketDisconnect(code=1006)


def test_a_client_gone_before_its_reply_leaves_the_points_applied(
    client: TestClient, registry: Registry
) -> None:
    state = client.app.state.service  # type: ignore[attr-defined]
    message = orjson.dumps({"series_id": "gone", **points(registry.frame, 0, 60)})
    socket = cast(WebSocket, GoneBeforeTheReply(message))
    portal = client.portal
    assert portal is not None
    portal.call(partial(serve_stream, socket, state))  # returns: the disconnect is no error
    assert metric_value(client, "urnn_stream_connections") == 0
    assert client.get("/series/gone").json()["points_seen"] == 60
    # a resend of the last points (those the stored tail can verify) is a duplicate, not an error
    again = post(client, "gone", points(registry.frame, 50, 10)).json()
    assert (again["accepted"], again["duplicates"]) == (0, 10)


def test_a_refused_id_is_echoed_and_said_as_given(client: TestClient) -> None:
    with client.websocket_connect("/series/stream", headers=KEY) as socket:
        socket.send_bytes(b'{"series_id": "bad/id", "values": [1.0]}')
        reply = orjson.loads(socket.receive_bytes())
        assert reply["series_id"] == "bad/id"  # which message it was, for the client
        assert reply["detail"].startswith("field 'series_id': got 'bad/id'; a string of 1 to")
        socket.send_bytes(b'{"values": [1.0]}')
        reply = orjson.loads(socket.receive_bytes())
        assert reply["series_id"] is None
        assert reply["detail"].startswith("field 'series_id': required; a string of 1 to")
