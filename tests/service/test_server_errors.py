"""A bug (an exception no handler takes) answers 500 with a one-line detail that names only
the exception's type, and tells the client the connection closes: the server drops it after
such an error, and a client that reused it saw its next request reset (an audit's)."""

from __future__ import annotations

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
