"""A minimal blocking HTTP/1.1 keep-alive client on one socket, for latency benchmarks.

Why not httpx: on this 2-core box httpx.Client spends ~0.3 ms of its own per request (measured
against a bare uvicorn app answering a fixed body: 0.41 ms p50 with httpx, 0.09 ms with this
client), which is larger than the streaming update it is meant to time. This client writes the
request bytes, reads the status line, the headers and a Content-Length (or chunked) body, and
nothing else: no redirects, no cookies, no TLS, no pooling. Both sides of a comparison go
through the same client, so the ratio is not tilted either way.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import NamedTuple, Self

HEADER_END = b"\r\n\r\n"


class RawHTTPError(RuntimeError):
    """The server closed the connection or answered something this client does not read."""


class Head(NamedTuple):
    """What a client needs of an answer's head: its status and how its body is delimited."""

    status: int
    length: int | None  # Content-Length; None for a chunked body


def parse_head(head: bytes) -> Head:
    """The status line and headers before HEADER_END (not included); RawHTTPError for a body
    delimited neither by Content-Length nor chunked (this client and bench.load_client's)."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        return Head(status, int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return Head(status, None)
    raise RawHTTPError(f"a response with neither Content-Length nor chunked body: {head!r}")


class SocketClient:
    """One blocking TCP connection (Nagle off) with a receive buffer: what the bare HTTP and
    WebSocket clients of the benchmarks share."""

    error: type[RuntimeError] = RuntimeError  # raised when the server closes the connection

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port = host, port
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise self.error(f"{self.host}:{self.port} closed the connection mid-response")
        self._buffer += chunk


class RawHTTPClient(SocketClient):
    """One keep-alive connection to `host:port`; `headers` go with every request."""

    error = RawHTTPError

    def __init__(
        self, host: str, port: int, headers: dict[str, str] | None = None, timeout: float = 600.0
    ) -> None:
        super().__init__(host, port, timeout)
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request; the whole response is read before it returns."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._sock.sendall(head.encode("latin-1") + body)
        return self._read_response()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self.request("POST", path, body)

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def _read_response(self) -> tuple[int, bytes]:
        while (end := self._buffer.find(HEADER_END)) < 0:
            self._fill()
        head = parse_head(self._buffer[:end])
        self._buffer = self._buffer[end + len(HEADER_END) :]
        body = self._chunked() if head.length is None else self._take(head.length)
        return head.status, body

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        body, self._buffer = self._buffer[:n], self._buffer[n:]
        return body

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self._line().split(b";", 1)[0], 16)
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._take(size))
            self._take(2)  # the chunk's CRLF
