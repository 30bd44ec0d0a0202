"""`urnn serve`'s request-head bound (service.http_head), over real sockets under uvicorn."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from service.http_head import MAX_HEAD_BYTES, BoundedHeadProtocol


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers the body's length: enough to tell a request that went through."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = json.dumps({"body_bytes": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    config = uvicorn.Config(
        echo_app, host="127.0.0.1", port=free, http=BoundedHeadProtocol, log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(timeout=10)


def exchange(port: int, *requests: bytes) -> bytes:
    """Sends `requests` on one connection and reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for request in requests:
            try:
                conn.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server refused the head and closed before reading the rest
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def get(header_bytes: int, *, close: bool = True) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: " + connection + b"\r\n"
        b"X-Padding: " + b"a" * header_bytes + b"\r\n\r\n"
    )


def test_a_head_above_the_limit_is_answered_431_and_the_connection_closed(port: int) -> None:
    """A 4 MiB header went through (at a cost quadratic in its size, on the event loop)."""
    answer = exchange(port, get(4 * 2**20))
    assert answer.startswith(b"HTTP/1.1 431 ")
    detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
    assert f"{MAX_HEAD_BYTES:,} bytes" in detail


def test_a_long_url_is_a_head_too(port: int) -> None:
    request = b"GET /?q=" + b"a" * (2 * MAX_HEAD_BYTES) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert exchange(port, request).startswith(b"HTTP/1.1 431 ")


def test_a_head_below_the_limit_is_served(port: int) -> None:
    answer = exchange(port, get(MAX_HEAD_BYTES - 1024))
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_large_body_sent_with_its_head_is_not_counted_as_head(port: int) -> None:
    body = b"x" * (4 * MAX_HEAD_BYTES)
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer = exchange(port, request)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"body_bytes": len(body)}


def test_each_request_on_a_kept_alive_connection_has_the_whole_limit(port: int) -> None:
    """The count starts again with each request: three heads of 3/4 of the limit each pass."""
    size = MAX_HEAD_BYTES * 3 // 4
    answer = exchange(port, get(size, close=False), get(size, close=False), get(size))
    assert answer.count(b"HTTP/1.1 200 ") == 3
    assert b" 431 " not in answer
