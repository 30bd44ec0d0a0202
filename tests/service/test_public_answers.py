"""What the open endpoints tell anyone who reaches the service when no model serves: the
reason in a user's words, never where the MLflow store lives (a local path, a database URL)
nor a password. The whole reason stays in the server log and behind the API key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.processes import free_port
from tests.service.conftest import API_KEY, Registry, history

KEY = {"X-API-Key": API_KEY}


def public_answers(client: TestClient, registry: Registry) -> list[tuple[str, int, str]]:
    """Every open endpoint a client may call while no model serves, as (what, status, text)."""
    body = {"series": [history(registry.frame)]}
    answers = {
        "GET /readyz": client.get("/readyz"),
        "GET /model": client.get("/model"),
        "POST /forecast": client.post("/forecast", json=body),
        "GET /series/s": client.get("/series/s"),
        "GET /series/s/forecast": client.get("/series/s/forecast"),
        "GET /healthz": client.get("/healthz"),
        "GET /metrics": client.get("/metrics"),
        "GET /openapi.json": client.get("/openapi.json"),
    }
    return [(what, answer.status_code, answer.text) for what, answer in answers.items()]


def assert_nothing_internal(answers: list[tuple[str, int, str]], *internal: str) -> None:
    for what, _, text in answers:
        for secret in internal:
            assert secret not in text, f"{what} answers {secret!r}: {text[:400]}"
        for scheme in ("file://", "sqlite:", "postgresql:", "mlruns"):
            assert scheme not in text, f"{what} answers {scheme!r}: {text[:400]}"


def test_an_empty_store_is_answered_without_its_path(
    client_for: Callable[..., TestClient],
    registry: Registry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A new stack before its first `urnn train`: /readyz answered "nothing is registered at
    models:/urnn-forecaster@champion in sqlite:////var/lib/urnn/mlflow.db (...)" to anyone."""
    caplog.set_level(logging.WARNING, logger="service.manager")
    client = client_for(var_dir=tmp_path / "empty")
    answers = public_answers(client, registry)
    assert_nothing_internal(answers, str(tmp_path))
    ready = client.get("/readyz").json()["detail"]
    assert "no version of urnn-forecaster has alias 'champion'" in ready
    assert "register one with `urnn train`" in ready
    assert client.post("/forecast", json={"series": [history(registry.frame)]}).status_code == 503
    assert str(tmp_path) in caplog.text  # the operator's log keeps where it looked
    keyed = client.post("/model/reload", headers=KEY)  # behind the key: the whole reason
    assert keyed.status_code == 502 and str(tmp_path) in keyed.json()["detail"]


def test_a_version_whose_weights_were_removed_is_answered_without_the_store_path(
    client_for: Callable[..., TestClient],
    registry: Registry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    version = registry.register("weightless", corrupt="removed")
    store = registry.settings.var_dir.resolve()
    caplog.set_level(logging.ERROR, logger="service.manager")
    client = client_for(model_uri="models:/weightless@champion")
    answers = public_answers(client, registry)
    assert_nothing_internal(answers, str(store), str(store.parent))
    ready = client.get("/readyz").json()["detail"]
    assert f"version {version} of weightless failed to load" in ready
    assert "urnn models promote" in ready
    assert str(store) in caplog.text
    keyed = client.post("/model/reload", headers=KEY)
    assert keyed.status_code == 502 and "weights.pt" in keyed.json()["detail"]


@pytest.mark.parametrize("kind", ["missing-folder", "file-store", "database"])
def test_an_unusable_tracking_uri_is_answered_without_it(
    kind: str,
    client_for: Callable[..., TestClient],
    registry: Registry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tracking URI that names no store (a folder that does not exist, a database that does
    not answer, with its password): the open answers say the registry cannot be read."""
    uri = {
        "missing-folder": f"sqlite:///{tmp_path}/no/such/folder/mlflow.db",
        "file-store": f"file://{tmp_path}/no-such-mlruns",
        "database": f"postgresql://mluser:s3cr3t-pw@127.0.0.1:{free_port()}/mlflow",
    }[kind]
    caplog.set_level(logging.WARNING, logger="service.manager")
    client = client_for(mlflow_tracking_uri=uri, database_url=uri if kind == "database" else None)
    answers = public_answers(client, registry)
    assert_nothing_internal(answers, str(tmp_path), "s3cr3t-pw", "mluser", "127.0.0.1")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "urnn-forecaster" in ready.json()["detail"]
    assert "s3cr3t-pw" not in caplog.text
