"""bench.load_client: answers delimited by Content-Length or chunks however the bytes arrive,
statuses counted, and a run against a real socket server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from bench.load_client import _Answer, http_request, run_load
from bench.raw_http import RawHTTPError

LENGTH_ANSWER = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n{"a": 1.5}'
)
CHUNKED_ANSWER = (
    b"HTTP/1.1 422 Unprocessable Entity\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
)


def feed_in_pieces(answer: bytes, size: int) -> tuple[_Answer, list[bytes | None]]:
    reader = _Answer()
    results = [reader.feed(answer[i : i + size]) for i in range(0, len(answer), size)]
    return reader, results


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
@pytest.mark.parametrize(("answer", "status"), [(LENGTH_ANSWER, 200), (CHUNKED_ANSWER, 422)])
def test_an_answer_ends_at_its_last_byte_however_it_is_split(
    answer: bytes, status: int, size: int
) -> None:
    reader, results = feed_in_pieces(answer, size)
    assert results[-1] == b""  # complete at the last piece, nothing after it
    assert all(r is None for r in results[:-1])  # and not before
    assert reader.status == status


def test_bytes_after_the_answer_are_handed_back() -> None:
    assert _Answer().feed(LENGTH_ANSWER + b"HTTP/1.1") == b"HTTP/1.1"


def test_an_answer_it_cannot_delimit_is_an_error() -> None:
    with pytest.raises(RawHTTPError, match="neither Content-Length nor chunked"):
        _Answer().feed(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nbody")


@pytest.fixture
def answering_server() -> Iterator[int]:
    """A keep-alive server on loopback answering each POST: 200 with a body of 50,000 bytes
    (Content-Length), every third one 503 (chunked)."""
    loop = asyncio.new_event_loop()
    big = b"x" * 50_000
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                served += 1
                if served % 3 == 0:
                    writer.write(
                        b"HTTP/1.1 503 Busy\r\ntransfer-encoding: chunked\r\n\r\n"
                        b"4\r\nbusy\r\n0\r\n\r\n"
                    )
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def test_a_run_counts_answers_and_their_statuses(answering_server: int) -> None:
    result = run_load(
        answering_server, "/forecast", b"{}", {"Content-Type": "application/json"}, 4, 0.2, 0.5
    )
    assert result.count > 10
    assert len(result.latencies) == result.count
    assert all(0 < t < 5 for t in result.latencies)
    assert set(result.statuses) == {200, 503}
    assert result.errors == result.statuses[503] > 0
    assert result.answers >= result.count  # the warm-up's answers too
    assert result.client_cpu_per_request_ms > 0


def test_the_request_carries_its_body_length() -> None:
    request = http_request(8000, "/forecast", b"abc", {"Content-Type": "application/json"})
    assert request.startswith(b"POST /forecast HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")
    assert request.endswith(b"Content-Length: 3\r\n\r\nabc")


def test_the_blocking_client_reads_the_same_answers_by_the_same_head_parser(
    answering_server: int,
) -> None:
    from bench.raw_http import RawHTTPClient

    with RawHTTPClient("127.0.0.1", answering_server, timeout=10) as client:
        answers = [client.post("/forecast", b"{}") for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 503]
    assert [len(body) for _, body in answers] == [50_000, 50_000, 4]  # the chunked b"busy"
