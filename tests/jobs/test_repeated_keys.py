"""A key given twice in a POST /jobs, POST /schedules or PATCH /schedules body: a 422 naming
it, as /forecast answers (service.json_block), not the last of the two kept without a word.
Before 2026-12-07 `{"target": "OT", "target": "HUFL"}` queued a job that trained on HUFL, and
`{"cron": "0 3 * * *", "cron": "0 4 * * *"}` stored a schedule due at 04:00."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.db import Database
from service.main import create_app
from tests.jobs.conftest import tiny_spec
from tests.jobs.test_api import KEY, NoModels
from urnn_forecast.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's httpx deprecation note, as in tests/service
    from fastapi.testclient import TestClient

JSON = {**KEY, "content-type": "application/json"}


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, loader=NoModels())) as test_client:
        yield test_client


def _with_repeat(body: dict[str, Any], path: list[str], first: object) -> str:
    """`body` as JSON text with the key at `path` written twice: `first`, then its value."""
    *parents, key = path
    marker = "__REPEATED__"
    inner = body
    for name in parents:
        inner = inner[name]
    value = inner.pop(key)
    inner[marker] = None
    inner[key] = value
    text = json.dumps(body)
    return text.replace(f'"{marker}": null', f'"{key}": {json.dumps(first)}')


def test_a_repeated_top_level_key_of_a_job_is_a_422_naming_it(
    client: TestClient, ett_csv: Path
) -> None:
    body = _with_repeat(tiny_spec(ett_csv), ["target"], "HUFL")
    assert body.count('"target"') == 2
    answer = client.post("/jobs", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("field 'target': is given twice"), detail
    assert "give each key once" in detail
    assert client.get("/jobs").json()["total"] == 0


def test_a_repeated_key_deep_in_the_config_is_named_by_its_path(
    client: TestClient, ett_csv: Path
) -> None:
    """The valid value last, the wrong one first: a reader keeping the last accepted it."""
    body = _with_repeat(tiny_spec(ett_csv), ["config", "fit", "max_epochs"], 0)
    answer = client.post("/jobs", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("field 'config.fit.max_epochs': is given twice")
    assert client.get("/jobs").json()["total"] == 0


def test_a_repeated_key_of_a_schedule_is_a_422_and_nothing_is_stored(
    client: TestClient, ett_csv: Path
) -> None:
    schedule = {"cron": "0 4 * * *", "job": tiny_spec(ett_csv)}
    body = _with_repeat(schedule, ["cron"], "0 3 * * *")
    answer = client.post("/schedules", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("field 'cron': is given twice"), answer.text
    body = _with_repeat({"cron": "0 4 * * *", "job": tiny_spec(ett_csv)}, ["job", "target"], "x")
    answer = client.post("/schedules", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("field 'job.target': is given twice"), answer.text
    assert client.get("/schedules").json()["total"] == 0


def test_a_repeated_key_in_a_patch_changes_nothing(client: TestClient, ett_csv: Path) -> None:
    made = client.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
    )
    assert made.status_code == 201, made.text
    schedule_id = made.json()["id"]
    answer = client.patch(
        f"/schedules/{schedule_id}", content='{"paused": true, "paused": false}', headers=JSON
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("field 'paused': is given twice"), answer.text
    assert client.get(f"/schedules/{schedule_id}").json() == made.json()


def test_the_same_key_in_sibling_objects_is_not_a_repeat(client: TestClient, ett_csv: Path) -> None:
    """`season_length` may be in `model` and in `train`: each object's keys are its own."""
    spec = tiny_spec(ett_csv)
    spec["config"]["model"]["kind"] = "seasonal_naive"
    spec["config"]["model"]["season_length"] = 24
    spec["config"]["train"]["season_length"] = 24
    answer = client.post("/jobs", content=json.dumps(spec), headers=JSON)
    assert "given twice" not in answer.text
    assert answer.status_code == 202, answer.text


def test_a_body_that_is_not_an_object_is_told_so_first(client: TestClient) -> None:
    answer = client.post("/jobs", content='[{"a": 1, "a": 2}]', headers=JSON)
    assert answer.status_code == 422, answer.text
    assert "must be a JSON object" in answer.json()["detail"], answer.text
