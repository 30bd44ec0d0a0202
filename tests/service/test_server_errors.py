"""A bug (an exception no handler takes) answers 500 with a one-line detail that names only
the exception's type, and tells the client the connection closes: the server drops it after
such an error, and a client that reused it saw its next request reset (an audit's)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.service.conftest import Registry


def test_an_unhandled_error_is_a_500_that_closes_the_connection(registry: Registry) -> None:
    app = create_app(registry.service_settings())

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error (RuntimeError)"}
    assert answer.headers["connection"] == "close"


def test_an_unhandled_error_is_logged_once_under_uvicorn(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """One traceback per 500, with the request's method and path: Starlette re-raises the
    exception after the app's handler answered (and logged) it, and uvicorn logged it again
    as "Exception in ASGI application", a second traceback of the same error without the
    request, in every 500 of a real server."""
    import threading
    import time

    import httpx
    import uvicorn

    from tests.e2e.processes import free_port

    app = create_app(registry.service_settings())

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    with caplog.at_level(logging.INFO):
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.started
            answer = httpx.get(f"http://127.0.0.1:{port}/boom", timeout=30)
            time.sleep(0.2)  # uvicorn logs after the answer is sent
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    assert answer.status_code == 500
    tracebacks = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert "GET /boom" in tracebacks[0].getMessage()
