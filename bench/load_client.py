"""The serving benchmarks' HTTP/1.1 load generator: keep-alive clients as asyncio Protocols.

`make bench-serve` runs the service, its load and (c) on one 2-core machine, so every
microsecond the load generator spends per request is taken from the server it measures. The
first generator (bench.serve until 2026-12-07) read each answer through asyncio's StreamReader:
a `readuntil` for the head, a dict of its headers, and a `readexactly` that copies the ~100 KB
body of a 16-series JSON answer across several buffers, all in Python on the standard event
loop. This one counts bytes in `data_received` and keeps nothing but the status, on uvloop
where it is installed (the service's own loop). It also reports its own CPU time per request,
so a run shows what the harness cost the server. The head is read as bench.raw_http's blocking
client reads it (`parse_head`).

Each connection sends its next request when the last answer is complete (a closed loop, as
before): `concurrency` requests in flight at most. Answers may come with `Content-Length` or
chunked (`mlflow models serve`'s server may chunk); anything else stops the run with the head
received, since counting it would measure nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from bench.raw_http import HEADER_END, RawHTTPError, parse_head


class ProtocolError(RuntimeError):
    """Bytes after a complete answer, which a closed-loop client never asked for."""


@dataclass
class LoadResult:
    count: int  # answers completed inside the measured window
    latencies: list[float]
    errors: int  # of those, the ones whose status was not 200
    client_cpu_seconds: float  # this thread's CPU over the whole run, warm-up included
    answers: int  # every answer completed, warm-up included (client_cpu_seconds' divisor)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def client_cpu_per_request_ms(self) -> float:
        return 1e3 * self.client_cpu_seconds / self.answers if self.answers else float("nan")


class _Answer:
    """Delimits one HTTP/1.1 answer in the bytes received: status, then body by Content-Length
    or chunked transfer coding."""

    __slots__ = ("_buffer", "_chunked", "_remaining", "status")

    def __init__(self) -> None:
        self.status = 0
        self._buffer = bytearray()
        self._remaining = -1  # body bytes still to come; -1 while the head is incomplete
        self._chunked = False

    def feed(self, data: bytes) -> bytes | None:
        """None while the answer is incomplete; else the bytes received past its end (empty
        on a keep-alive connection that waits for our next request)."""
        if self._remaining < 0 or self._chunked:
            self._buffer += data
            if self._remaining < 0:
                end = self._buffer.find(HEADER_END)
                if end < 0:
                    return None
                self._head(bytes(self._buffer[:end]))
                del self._buffer[: end + len(HEADER_END)]
                if not self._chunked:
                    rest = bytes(self._buffer)
                    self._buffer.clear()
                    return self._body(rest)
            return self._chunks()
        return self._body(data)

    def _head(self, head: bytes) -> None:
        self.status, length = parse_head(head)
        self._chunked = length is None
        self._remaining = 0 if length is None else length

    def _body(self, data: bytes) -> bytes | None:
        if len(data) < self._remaining:
            self._remaining -= len(data)
            return None
        rest = data[self._remaining :]
        self._remaining = 0
        return rest

    def _chunks(self) -> bytes | None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return None
            size = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
            if size == 0:  # the last chunk; no trailers from the servers measured here
                if len(buffer) < line_end + 4:
                    return None
                rest = bytes(buffer[line_end + 4 :])
                buffer.clear()
                return rest
            if len(buffer) < line_end + 2 + size + 2:
                return None
            del buffer[: line_end + 2 + size + 2]


class _Client(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        measure_from: float,
        stop_at: float,
        record: Callable[[float, float, int], None],
        done: asyncio.Future[None],
    ) -> None:
        self.request = request
        self.measure_from = measure_from
        self.stop_at = stop_at
        self.record = record
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.answer = _Answer()
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport; it has its methods
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.answer = _Answer()
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            rest = self.answer.feed(data)
        except (RawHTTPError, ProtocolError, ValueError, IndexError) as error:
            self._finish(error)
            return
        if rest is None:
            return
        now = time.perf_counter()
        self.record(self.sent_at, now, self.answer.status)
        if rest:
            self._finish(ProtocolError(f"{len(rest)} bytes after a complete answer"))
        elif now < self.stop_at:
            self._send()
        else:
            self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or ConnectionError("the server closed the connection mid-run"))

    def _finish(self, error: BaseException | None) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)


async def _load(
    port: int,
    request: bytes,
    concurrency: int,
    warmup: float,
    seconds: float,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    answers = 0

    def record(sent: float, received: float, status: int) -> None:
        nonlocal answers
        answers += 1
        # Counted by completion time, so a server slower than the window still shows.
        if measure_from <= received <= stop_at:
            latencies.append(received - sent)
            statuses[status] = statuses.get(status, 0) + 1

    cpu_start = time.thread_time()
    finished: list[asyncio.Future[None]] = []
    for _ in range(concurrency):
        done: asyncio.Future[None] = loop.create_future()
        client = partial(_Client, request, measure_from, stop_at, record, done)
        await loop.create_connection(client, "127.0.0.1", port)
        finished.append(done)
    await asyncio.gather(*finished)
    cpu = time.thread_time() - cpu_start
    errors = sum(n for status, n in statuses.items() if status != 200)
    return LoadResult(len(latencies), latencies, errors, cpu, answers, statuses)


def http_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One keep-alive POST, as bytes to send again and again."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def run_load(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    warmup: float,
    seconds: float,
) -> LoadResult:
    """`concurrency` closed-loop clients for `warmup` + `seconds`, on uvloop when installed."""
    request = http_request(port, path, body, headers)
    coroutine = _load(port, request, concurrency, warmup, seconds)
    try:
        import uvloop
    except ImportError:  # the service's extras not installed: the standard loop
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
