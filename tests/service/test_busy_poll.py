"""The event loop's busy polling after streaming answers (`service.busy_poll`)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.busy_poll import BusyPoll
from service.streaming import StreamEngine
from tests.service.conftest import API_KEY, Registry
from tests.service.test_streaming_api import points
from urnn_forecast.settings import Settings

FAST = {"X-API-Key": API_KEY, "content-type": "application/json"}
SLOW = {"X-API-Key": API_KEY, "content-type": "application/merge-patch+json"}


def test_a_touch_spins_for_the_window_then_stops() -> None:
    async def scenario() -> tuple[bool, bool]:
        poll = BusyPoll(0.02)
        poll.touch()
        spinning_at_once = poll.spinning
        await asyncio.sleep(0.2)  # well past the window, on a slow machine too
        return spinning_at_once, poll.spinning

    assert asyncio.run(scenario()) == (True, False)


def test_a_later_touch_moves_the_deadline() -> None:
    async def scenario() -> tuple[bool, float]:
        poll = BusyPoll(0.05)
        start = time.perf_counter()
        poll.touch()
        await asyncio.sleep(0.04)
        poll.touch()  # 0.05 s from here: the same spin goes on
        task = poll._task
        assert task is not None
        await task
        return poll.spinning, time.perf_counter() - start

    spinning, elapsed = asyncio.run(scenario())
    assert not spinning
    assert elapsed >= 0.09  # 0.04 + the second touch's 0.05 (less timer slack)


def test_zero_window_never_spins() -> None:
    async def scenario() -> bool:
        poll = BusyPoll(0.0)
        poll.touch()
        return poll.spinning

    assert asyncio.run(scenario()) is False


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        BusyPoll(-1e-6)


def test_the_loop_serves_sockets_and_other_tasks_while_spinning() -> None:
    """The spin yields every iteration: a socket that becomes readable mid-spin (written by
    another thread) is read and answered before the window ends."""

    async def scenario() -> tuple[bytes, float, bool]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        poll = BusyPoll(5.0)  # far longer than the exchange: the read must not wait for it
        poll.touch()
        writer = threading.Timer(0.05, lambda: theirs.sendall(b"ping"))
        writer.start()
        start = time.perf_counter()
        data = await asyncio.wait_for(loop.sock_recv(ours, 4), timeout=2.0)
        elapsed = time.perf_counter() - start
        still = poll.spinning
        await poll.stop()
        writer.join()
        ours.close()
        theirs.close()
        return data, elapsed, still and not poll.spinning

    data, elapsed, stopped_while_spinning = asyncio.run(scenario())
    assert data == b"ping"
    assert elapsed < 1.0
    assert stopped_while_spinning  # stop() ends a spin that had seconds left


def test_setting_is_bounded_and_named_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().stream_busy_poll_us == 200
    monkeypatch.setenv("URNN_STREAM_BUSY_POLL_US", "0")
    assert Settings().stream_busy_poll_us == 0
    for bad in ("-1", "10001", "fast"):
        monkeypatch.setenv("URNN_STREAM_BUSY_POLL_US", bad)
        with pytest.raises(ValidationError, match="stream_busy_poll_us"):
            Settings()


class Touches:
    def __init__(self) -> None:
        self.count = 0

    def touch(self) -> None:
        self.count += 1

    async def stop(self) -> None:
        pass


def test_streaming_answers_touch_the_poller_errors_do_not(
    stream_client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = stream_client_for(stream_busy_poll_us=150)
    engine: StreamEngine = client.app.state.service.streams  # type: ignore[attr-defined]
    assert engine._busy_poll.window == pytest.approx(150e-6)
    touches = Touches()
    engine._busy_poll = touches  # type: ignore[assignment]
    frame = registry.frame
    answer = client.post("/series/p/observations", json=points(frame, 0, 60), headers=FAST)
    assert answer.status_code == 200, answer.text
    assert touches.count == 1  # the fast path, once the answer is sent
    answer = client.post("/series/p/observations", json=points(frame, 60, 1), headers=SLOW)
    assert answer.status_code == 200, answer.text
    assert touches.count == 2  # FastAPI's path
    assert client.get("/series/p/forecast").status_code == 200
    assert touches.count == 3
    late = client.post(
        "/series/p/observations", json=points(frame, 10, 1, values=[1.5]), headers=FAST
    )
    assert late.status_code == 409, late.text  # out of order: no answer worth polling after
    assert client.get("/series/nobody/forecast").status_code == 404
    assert touches.count == 3
