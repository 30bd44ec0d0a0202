"""POST /jobs with an Idempotency-Key: a client that retries (a timeout, a crashed scheduler)
gets the job its first call queued instead of a second training run; the same key with another
spec is refused, naming the header and the job; concurrent retries still make one job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jobs.db import Database
from service.main import create_app
from tests.jobs.conftest import tiny_spec
from tests.jobs.test_api import KEY, NoModels
from urnn_forecast.settings import Settings


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, loader=NoModels())) as test_client:
        yield test_client


def test_a_retry_with_the_same_key_answers_the_first_job(client: TestClient, ett_csv: Path) -> None:
    spec = tiny_spec(ett_csv)
    first = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "nightly-42"})
    again = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "nightly-42"})
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    page = client.get("/jobs").json()
    assert page["total"] == 1
    assert page["items"][0]["idempotency_key"] == "nightly-42"
    # Without a key, or with another, each call queues its own job.
    other = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "nightly-43"})
    plain = client.post("/jobs", json=spec, headers=KEY)
    assert len({first.json()["id"], other.json()["id"], plain.json()["id"]}) == 3
    assert client.get("/jobs").json()["total"] == 3


def test_a_replay_reports_the_jobs_current_status(client: TestClient, ett_csv: Path) -> None:
    spec = tiny_spec(ett_csv)
    job_id = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "k1"}).json()["id"]
    assert client.post(f"/jobs/{job_id}/cancel", headers=KEY).status_code == 200
    again = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "k1"})
    assert again.json() == {"id": job_id, "status": "cancelled", "warnings": []}


def test_the_same_key_with_another_spec_is_refused(client: TestClient, ett_csv: Path) -> None:
    first = client.post(
        "/jobs", json=tiny_spec(ett_csv), headers={**KEY, "Idempotency-Key": "k2"}
    ).json()
    changed = tiny_spec(ett_csv)
    changed["promote"] = False
    refused = client.post("/jobs", json=changed, headers={**KEY, "Idempotency-Key": "k2"})
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert detail.startswith("header 'Idempotency-Key': 'k2' was already used for job")
    assert detail.endswith("with another body; use a new key for a new job")
    assert first["id"] in detail
    assert client.get("/jobs").json()["total"] == 1  # nothing stored was touched
    assert client.get(f"/jobs/{first['id']}").json()["status"] == "queued"


def test_a_retry_replays_whatever_became_of_the_data_file(
    client: TestClient, ett_csv: Path, tmp_path: Path
) -> None:
    data = tmp_path / "today.csv"
    data.write_bytes(ett_csv.read_bytes())
    spec = {**tiny_spec(ett_csv), "data": str(data)}
    first = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "moved"})
    data.unlink()  # moved away after the first call was queued
    again = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "moved"})
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    # A new key still gets the data checks.
    fresh = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "new"})
    assert fresh.status_code == 422 and "no such file" in fresh.json()["detail"]


def test_a_key_sent_twice_is_refused(client: TestClient, ett_csv: Path) -> None:
    answer = client.post(
        "/jobs",
        json=tiny_spec(ett_csv),
        headers=[
            ("X-API-Key", KEY["X-API-Key"]),
            ("Idempotency-Key", "a"),
            ("Idempotency-Key", "b"),
        ],
    )
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "header 'Idempotency-Key': sent 2 times; send one key per request"
    )
    assert client.get("/jobs").json()["total"] == 0


def test_a_malformed_key_names_the_header(client: TestClient, ett_csv: Path) -> None:
    for key in ("has space", "x" * 256, "clé"):
        answer = client.post(
            "/jobs",
            json=tiny_spec(ett_csv),
            headers={**KEY, "Idempotency-Key": key.encode()},
        )
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith(
            "header 'Idempotency-Key': must be 1 to 255 visible ASCII characters"
        )
    assert client.get("/jobs").json()["total"] == 0


def test_a_long_key_is_quoted_as_every_value_is(client: TestClient, ett_csv: Path) -> None:
    """docs/serving.md: a value the client sent is quoted whole up to 80 characters, else by
    its first 60 and its length; the key's 422s cut it at 40 (and quoted a 255-character key
    whole when it was reused)."""
    too_long = "x" * 256
    answer = client.post(
        "/jobs", json=tiny_spec(ett_csv), headers={**KEY, "Idempotency-Key": too_long}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"].endswith(f"got {'x' * 60!r}... (256 characters)")
    key = "k" * 70 + " b"  # 72 characters: quoted whole
    answer = client.post("/jobs", json=tiny_spec(ett_csv), headers={**KEY, "Idempotency-Key": key})
    assert answer.json()["detail"].endswith(f"got {key!r}")
    reused = "r" * 254  # and one letter per route: 255 characters, the most a key holds
    for path, body in (("/jobs", tiny_spec(ett_csv)), ("/schedules", _schedule(ett_csv))):
        headers = {**KEY, "Idempotency-Key": reused + path[1]}
        assert client.post(path, json=body, headers=headers).status_code in (201, 202)
        other = {**body, "target": "HUFL"} if path == "/jobs" else {**body, "cron": "0 4 * * *"}
        answer = client.post(path, json=other, headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(
            f"header 'Idempotency-Key': {'r' * 60!r}... (255 characters) was already used for "
        )


def _schedule(csv: Path, cron: str = "0 3 * * *") -> dict[str, object]:
    return {"cron": cron, "timezone": "Europe/Paris", "job": tiny_spec(csv)}


def test_a_schedule_retried_with_the_same_key_is_made_once(
    client: TestClient, ett_csv: Path
) -> None:
    """POST /schedules ignored the header: a retry made a second schedule, and each due time
    then trained twice."""
    headers = {**KEY, "Idempotency-Key": "nightly-schedule"}
    first = client.post("/schedules", json=_schedule(ett_csv), headers=headers)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    schedule_id = first.json()["id"]
    paused = client.patch(f"/schedules/{schedule_id}", json={"paused": True}, headers=KEY)
    assert paused.status_code == 200, paused.text
    again = client.post("/schedules", json=_schedule(ett_csv), headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == client.get(f"/schedules/{schedule_id}").json()  # as it is now
    assert again.json()["paused"] is True
    assert client.get("/schedules").json()["total"] == 1
    changed = client.post("/schedules", json=_schedule(ett_csv, "0 4 * * *"), headers=headers)
    assert changed.status_code == 422, changed.text
    assert changed.json()["detail"] == (
        f"header 'Idempotency-Key': 'nightly-schedule' was already used for schedule "
        f"{schedule_id} with another body; use a new key for a new schedule"
    )
    other = client.post(
        "/schedules", json=_schedule(ett_csv), headers={**KEY, "Idempotency-Key": "another"}
    )
    plain = client.post("/schedules", json=_schedule(ett_csv), headers=KEY)
    assert len({schedule_id, other.json()["id"], plain.json()["id"]}) == 3
    assert client.get("/schedules").json()["total"] == 3


def test_a_schedule_key_is_checked_as_a_jobs(client: TestClient, ett_csv: Path) -> None:
    answer = client.post(
        "/schedules", json=_schedule(ett_csv), headers={**KEY, "Idempotency-Key": "has space"}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(
        "header 'Idempotency-Key': must be 1 to 255 visible ASCII characters"
    )
    assert client.get("/schedules").json()["total"] == 0


@pytest.mark.parametrize(("path", "status"), [("/jobs", 202), ("/schedules", 201)])
def test_concurrent_retries_with_one_key_make_one(
    client: TestClient, ett_csv: Path, path: str, status: int
) -> None:
    body = tiny_spec(ett_csv) if path == "/jobs" else _schedule(ett_csv)
    headers = {**KEY, "Idempotency-Key": "burst"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.post(path, json=body, headers=headers), range(6)))
    assert {a.status_code for a in answers} == {status}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert client.get(path).json()["total"] == 1


@pytest.mark.parametrize("path", ["/jobs", "/schedules"])
def test_a_spec_nested_too_deeply_is_a_422_with_or_without_a_key(
    client: TestClient, ett_csv: Path, path: str
) -> None:
    """A config value 300 arrays deep was a 500 under an Idempotency-Key: pydantic's JSON
    serialiser, which the body's digest goes through, stops at about 255 levels (without a key
    the same body was a 422 from the config's own check). Refused before the digest, naming
    where, and nothing is stored."""
    nested = "[" * 300 + "]" * 300
    spec = tiny_spec(ett_csv)
    spec["config"]["train"]["test_series"] = "NESTED"
    job = json.dumps(spec).replace('"NESTED"', nested)
    body = job if path == "/jobs" else '{"cron": "0 3 * * *", "job": ' + job + "}"
    prefix = "" if path == "/jobs" else "job."
    for headers in ({**KEY, "Idempotency-Key": "deep"}, KEY):
        answer = client.post(
            path, content=body, headers={**headers, "content-type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith(f"field '{prefix}config.train.test_series[0][0]"), detail
        assert "nested more than 32 levels deep" in detail
    assert client.get(path).json()["total"] == 0


def test_a_schedule_sent_with_a_key_names_its_jobs_fields_under_job(
    client: TestClient, ett_csv: Path
) -> None:
    """The text and number checks made before the key's digest named a schedule's field
    without its `job.` (`field 'config.fit.lr'`), as no other answer of POST /schedules does."""
    job = json.dumps(tiny_spec(ett_csv)).replace('"max_epochs": 1', '"lr": NaN, "max_epochs": 1')
    answer = client.post(
        "/schedules",
        content='{"cron": "0 3 * * *", "job": ' + job + "}",
        headers={**KEY, "Idempotency-Key": "nan", "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("field 'job.config.fit.lr': must be a finite number")
    assert client.get("/schedules").json()["total"] == 0
