"""URNN_API_KEY_FOR_READS: job and schedule reads (specs and log tails name data files and
runs) need the API key when the operator asks; by default they stay open, and /forecast,
/model and the health endpoints never need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from jobs.db import Database
from service.main import create_app
from tests.jobs.conftest import tiny_spec
from tests.jobs.test_api import KEY, NoModels
from urnn_forecast.settings import Settings

READS = ("/jobs", "/jobs/{job}", "/schedules", "/schedules/{schedule}")


def ids(client: TestClient, ett_csv: Path) -> dict[str, str]:
    job = client.post("/jobs", json=tiny_spec(ett_csv), headers=KEY).json()["id"]
    schedule = client.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
    )
    assert schedule.status_code == 201, schedule.text
    return {"job": job, "schedule": schedule.json()["id"]}


def test_reads_are_open_by_default(db: Database, settings: Settings, ett_csv: Path) -> None:
    with TestClient(create_app(settings, loader=NoModels())) as client:
        made = ids(client, ett_csv)
        for path in READS:
            assert client.get(path.format(**made)).status_code == 200, path


def test_reads_need_the_key_when_asked(db: Database, settings: Settings, ett_csv: Path) -> None:
    guarded = settings.model_copy(update={"api_key_for_reads": True})
    with TestClient(create_app(guarded, loader=NoModels())) as client:
        made = ids(client, ett_csv)
        for path in READS:
            url = path.format(**made)
            answer = client.get(url)
            assert answer.status_code == 401, (url, answer.text)
            assert answer.json()["detail"] == "missing or wrong X-API-Key header"
            assert client.get(url, headers={"X-API-Key": "wrong"}).status_code == 401
            assert client.get(url, headers=KEY).status_code == 200, url
        # Serving and health stay open to consumers without the operator's key.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503  # no model: not a key matter
        assert client.post("/forecast", json={"series": []}).status_code != 401


def test_reads_closed_without_any_key_outside_development(db: Database, settings: Settings) -> None:
    keyless = settings.model_copy(update={"api_key_for_reads": True, "api_key": None})
    with TestClient(create_app(keyless, loader=NoModels())) as client:
        answer = client.get("/jobs")
        assert answer.status_code == 403
        assert "set URNN_API_KEY" in answer.json()["detail"]


def _operation(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = schema["paths"][path][method]
    return operation


def test_the_openapi_asks_for_the_key_on_reads_only_when_they_need_it(
    db: Database, settings: Settings
) -> None:
    schema_paths = ("/jobs", "/jobs/{job_id}", "/schedules", "/schedules/{schedule_id}")
    for reads_need_key in (False, True):
        chosen = settings.model_copy(update={"api_key_for_reads": reads_need_key})
        with TestClient(create_app(chosen, loader=NoModels())) as client:
            schema = client.get("/openapi.json").json()
        assert "x-urnn-read-guard" not in str(schema)  # the internal mark is not published
        for path in schema_paths:
            read = _operation(schema, path, "get")
            assert ("security" in read) is reads_need_key, (path, read)
            assert ("401" in read["responses"]) is reads_need_key, path
            assert ("403" in read["responses"]) is reads_need_key, path
        # The mutating routes ask for it in both modes.
        for path, method in (("/jobs", "post"), ("/schedules", "post"), ("/model/reload", "post")):
            write = _operation(schema, path, method)
            assert write["security"] == [{"APIKeyHeader": []}], (path, write)
            assert "401" in write["responses"], path


def test_every_documented_422_is_the_sentence_the_service_sends(
    db: Database, settings: Settings
) -> None:
    """FastAPI documents a parameter's 422 as its own error list (`HTTPValidationError`); the
    service sends `{"detail": "<sentence>"}` for every 422, and the schema now says so."""
    with TestClient(create_app(settings, loader=NoModels())) as client:
        schema = client.get("/openapi.json").json()
        sent = client.get("/jobs", params={"limit": 0})
    assert sent.status_code == 422 and isinstance(sent.json()["detail"], str)
    refs = [
        operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        if "422" in operation["responses"]
    ]
    assert len(refs) >= 15 and set(refs) == {"#/components/schemas/ErrorResponse"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, method in (
        ("/jobs", "get"),
        ("/jobs", "post"),
        ("/schedules/{schedule_id}", "patch"),
    ):
        assert "503" in _operation(schema, path, method)["responses"], (path, method)
    assert "413" in _operation(schema, "/jobs", "post")["responses"]
    assert "413" in _operation(schema, "/series/{series_id}/observations", "post")["responses"]
