"""URNN_SHUTDOWN_DRAIN_SECONDS: after SIGTERM the service keeps answering while /readyz says it
is shutting down, so a load balancer takes it out of rotation before uvicorn stops accepting;
then it shuts down. Checked on the handler itself and on real `urnn serve` processes (one
worker, and two behind uvicorn's supervisor)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bench.serve import free_port
from service.drain import Drain
from tests.service.conftest import HeldLoader, Registry, history, metric_value
from tests.service.test_contract import state_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGTERM, before[0])
    signal.signal(signal.SIGINT, before[1])


def _wait(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # signal handlers run between bytecodes of this thread
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _server_handlers() -> list[tuple[int, float]]:
    """Stand-ins for uvicorn's SIGTERM and SIGINT handlers, recording (signal, when)."""
    seen: list[tuple[int, float]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: seen.append((signum, time.monotonic())))
    return seen


def test_sigterm_drains_then_hands_over_once(sigterm_restored: None) -> None:
    seen = _server_handlers()
    drain = Drain(0.5)
    assert drain.install()
    os.kill(os.getpid(), signal.SIGTERM)
    asked = time.monotonic()
    _wait(lambda: drain.draining)
    assert seen == [] and "draining after SIGTERM" in drain.reason()
    _wait(lambda: bool(seen))
    assert seen[0][0] == signal.SIGTERM and seen[0][1] - asked >= 0.45  # after the drain
    os.kill(os.getpid(), signal.SIGTERM)  # later ones change nothing: shutting down already
    time.sleep(0.2)
    assert len(seen) == 1


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_second_signal_ends_the_drain_early(
    sigterm_restored: None, second: signal.Signals
) -> None:
    seen = _server_handlers()
    drain = Drain(2.0)
    assert drain.install()
    os.kill(os.getpid(), signal.SIGTERM)
    _wait(lambda: drain.draining)
    os.kill(os.getpid(), second)
    _wait(lambda: bool(seen), seconds=1.0)  # well before the 2 s drain
    # The drain's timer is cancelled: no SIGTERM handed over later (after a Ctrl-C, uvicorn
    # would re-raise it at exit); the server got the second signal only, through its own
    # handler (SIGINT: graceful, and forced the second time).
    time.sleep(2.3)
    assert [sig for sig, _ in seen] == [second]


def test_no_drain_leaves_sigterm_alone(sigterm_restored: None) -> None:
    assert not Drain(0.0).install()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert not Drain(5.0).install()  # no server handler to hand over to
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    done: list[bool] = []
    thread = threading.Thread(target=lambda: done.append(Drain(5.0).install()))
    thread.start()
    thread.join()
    assert done == [False]  # signal handlers belong to the main thread


def test_readyz_says_draining_while_forecasts_are_still_served(
    client_for: Callable[..., TestClient], registry: Registry
) -> None:
    client = client_for(shutdown_drain_seconds=30.0)
    assert client.get("/readyz").status_code == 200
    assert metric_value(client, "urnn_draining") == 0.0
    state_of(client).drain.since = time.monotonic()  # as the SIGTERM handler does
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("shutting down: draining after SIGTERM")
    body = {"series": [history(registry.frame)]}
    assert client.post("/forecast", json=body).status_code == 200
    assert metric_value(client, "urnn_draining") == 1.0  # what a dashboard can alert on


def test_a_sigterm_while_the_model_loads_drains_too(
    sigterm_restored: None, registry: Registry
) -> None:
    """A worker signalled during its start-up went to uvicorn's shutdown at once, then opened
    its socket on the way out and answered /readyz 200 to the balancer (CI saw it with two
    workers). The drain now takes SIGTERM before the load starts."""
    from service.state import ServiceState

    seen = _server_handlers()
    settings = registry.service_settings(shutdown_drain_seconds=0.5, startup_load_wait_seconds=30.0)
    loader = HeldLoader(settings)
    state = ServiceState.build(settings, loader=loader)

    async def start_signalled_while_loading() -> None:
        starting = asyncio.create_task(state.start())
        await asyncio.sleep(0.2)
        assert not starting.done()  # still loading
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert state.drain.draining and seen == []  # draining, not shut down
        loader.release.set()
        await starting
        try:
            assert state.manager.current is not None  # it loaded, and serves while draining
            deadline = time.monotonic() + 5.0
            while not seen:  # then the server's own shutdown, after the drain
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert [sig for sig, _ in seen] == [signal.SIGTERM]
        finally:
            await state.stop()

    asyncio.run(start_signalled_while_loading())


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_urnn_serve_drains_on_sigterm(registry: Registry, workers: int, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "URNN_VAR_DIR": str(registry.settings.var_dir),
        "URNN_MODEL_POLL_SECONDS": "0",
        "URNN_SHUTDOWN_DRAIN_SECONDS": "3",
        "OMP_NUM_THREADS": "1",
        "URNN_TORCH_THREADS": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "urnn_forecast.cli", "serve", "--port", str(port)]
    with log.open("w") as sink:  # the child holds its own copy
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        # Every worker started (the first ready one answers /readyz while another may still
        # load), so that each is signalled while it serves.
        while (
            _get_or_none(f"{base}/readyz") != 200
            or log.read_text().count("Application startup complete") < workers
        ):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        # Out of rotation... as soon as the workers have the signal: uvicorn's supervisor
        # looks at its signals every half second, then passes SIGTERM on.
        while _get(f"{base}/readyz") != 503:
            assert time.monotonic() - asked < 2.0, "/readyz did not turn 503 after SIGTERM"
            time.sleep(0.05)
        time.sleep(0.1)  # it signals every worker at once: none of them answers ready now
        assert [_get(f"{base}/readyz") for _ in range(10)] == [503] * 10
        body = json.dumps({"series": [history(registry.frame)]}).encode()
        request = urllib.request.Request(
            f"{base}/forecast", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # ...still serving
            assert response.status == 200
        # a clean stop, with one worker too (uvicorn re-raises the SIGTERM it caught once it
        # has shut down gracefully, which ended the command with 143)
        assert process.wait(timeout=60) == 0
        assert time.monotonic() - asked >= 2.5  # it waited for the drain
        # Every process logs through the command's format, INFO included: the workers of
        # --workers are spawned, and their lines came out bare ("SIGTERM: /readyz answers
        # 503 ...", no time, level or logger) and their INFO lines not at all.
        said = log.read_text()
        assert said.count(" INFO service.manager: serving ") == workers, said
        assert said.count(" INFO service.drain: on SIGTERM: draining for 3 s") == workers
        assert said.count(" WARNING service.drain: SIGTERM: /readyz answers 503") == workers
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _get_or_none(url: str) -> int | None:
    try:
        return _get(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.slow
def test_urnn_serve_with_one_worker_shuts_down_gracefully_on_sighup(
    registry: Registry, tmp_path: Path
) -> None:
    """SIGHUP (the terminal or ssh session of `urnn serve` closing, or `kill -HUP` as with
    --workers N, where uvicorn restarts its workers on it) killed one worker outright: no
    graceful shutdown, requests in flight cut, write-behind streaming states never flushed
    (points already acknowledged lost), exit -1. It now stops as on SIGTERM."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "URNN_VAR_DIR": str(registry.settings.var_dir),
        "URNN_MODEL_POLL_SECONDS": "0",
        "OMP_NUM_THREADS": "1",
        "URNN_TORCH_THREADS": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "urnn_forecast.cli", "serve", "--port", str(port)]
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sink
        )
    try:
        deadline = time.monotonic() + 120
        while _get_or_none(f"http://127.0.0.1:{port}/readyz") != 200:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert "Application shutdown complete" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
