"""bench.loop_cost's own parts: the in-process driver and the callgrind reading."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bench.loop_cost import SERVICE_ENV, drive, loop_instructions
from urnn_forecast.settings import Settings


def _app(status: int, seen: list[bytes], answer: bytes = b"{}") -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    return app


def test_drive_sends_every_request_once_through_the_clients() -> None:
    seen: list[bytes] = []
    done = asyncio.run(drive(_app(200, seen), b"body", {"content-type": "x"}, 4, 10))
    assert done == 10
    assert seen == [b"body"] * 10


def test_drive_stops_when_the_app_does_not_answer_200() -> None:
    with pytest.raises(RuntimeError, match=r"3 requests answered \[503\]"):
        asyncio.run(drive(_app(503, []), b"body", {}, 1, 3))


def test_drive_says_what_the_service_answered_with_each_status() -> None:
    """A 503 under valgrind said only its status; the body says why (here: still loading)."""
    reason = b'{"detail":"no model is loaded: the service is starting"}'
    answers = iter(
        [(200, [b"{}"]), (503, [reason]), (503, [b"a later 503"]), (422, [b"(chun", b"ked)"])]
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        status, chunks = next(answers)
        await send({"type": "http.response.start", "status": status, "headers": []})
        for i, chunk in enumerate(chunks):
            more = i < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    with pytest.raises(RuntimeError) as raised:
        asyncio.run(drive(app, b"body", {}, 1, 4))
    assert str(raised.value) == (
        "3 requests answered [422, 503], not 200 "
        f"(422: (chunked); 503: {reason.decode()})"  # each status's first answer, whole
    )


def test_drive_cuts_a_long_answer_short() -> None:
    with pytest.raises(RuntimeError) as raised:
        asyncio.run(drive(_app(500, [], b"x" * 2000), b"body", {}, 1, 1))
    assert str(raised.value).endswith(f"(500: {'x' * 500} ...)")


def test_the_service_waits_for_its_model_however_long_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app's settings under the bench: start-up waits as long as the setting allows (the
    load took ~50 s under valgrind; the default 10 s let /forecast answer 503 "starting")."""
    for name in [*Settings.model_fields]:
        monkeypatch.delenv(f"URNN_{name.upper()}", raising=False)
    assert Settings().startup_load_wait_seconds == 10.0  # the default the bench must not keep
    for name, value in SERVICE_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    field = Settings.model_fields["startup_load_wait_seconds"]
    most = next(m.le for m in field.metadata if getattr(m, "le", None) is not None)
    assert settings.startup_load_wait_seconds == most
    assert most >= 600.0  # beyond the ~50 s load under valgrind, with room to spare
    assert settings.model_poll_seconds == 0 and settings.torch_threads == 1


def test_loop_instructions_reads_the_main_threads_file(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    (tmp_path / "callgrind.out-01").write_text("events: Ir\nfl=x\nsummary: 123456\n")
    (tmp_path / "callgrind.out-02").write_text("events: Ir\nsummary: 999\n")
    assert loop_instructions(out) == 123456
