"""bench.loop_cost's own parts: the in-process driver and the callgrind reading."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bench.loop_cost import drive, loop_instructions


def _app(status: int, seen: list[bytes]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def test_drive_sends_every_request_once_through_the_clients() -> None:
    seen: list[bytes] = []
    done = asyncio.run(drive(_app(200, seen), b"body", {"content-type": "x"}, 4, 10))
    assert done == 10
    assert seen == [b"body"] * 10


def test_drive_stops_when_the_app_does_not_answer_200() -> None:
    with pytest.raises(RuntimeError, match=r"3 requests answered \[503\]"):
        asyncio.run(drive(_app(503, []), b"body", {}, 1, 3))


def test_loop_instructions_reads_the_main_threads_file(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    (tmp_path / "callgrind.out-01").write_text("events: Ir\nfl=x\nsummary: 123456\n")
    (tmp_path / "callgrind.out-02").write_text("events: Ir\nsummary: 999\n")
    assert loop_instructions(out) == 123456
