"""A submission's warnings (what jobs.spec.check_job could not do) are stored with the job and
the schedule (migration 0006): GET one, the lists, a job's cancel and an Idempotency-Key replay
answer the list the POST answered; a job a schedule enqueues carries the schedule's; rows from
before the migration (NULL) answer []. On SQLite and on the real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from jobs import schedules
from jobs.db import Database, downgrade, make_engine, upgrade
from jobs.models import Job, Schedule
from jobs.spec import JobSpec
from service.main import create_app
from tests.jobs.conftest import tiny_spec
from tests.jobs.test_api import KEY, NoModels
from urnn_forecast.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's httpx deprecation note, as in tests/service
    from fastapi.testclient import TestClient

# What check_job_data says when the full check is off (URNN_JOB_DATA_CHECK_MAX_BYTES=0): the
# one warning a small file can be made to give.
HEADER_ONLY = "data: only the header was checked at submission (URNN_JOB_DATA_CHECK_MAX_BYTES=0)"


@pytest.fixture
def header_only(db: Database, settings: Settings) -> Iterator[TestClient]:
    """The API with the full data check off: every submission is accepted with a warning."""
    off = settings.model_copy(update={"job_data_check_max_bytes": 0})
    with TestClient(create_app(off, loader=NoModels())) as test_client:
        yield test_client


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, loader=NoModels())) as test_client:
        yield test_client


def test_a_jobs_warnings_are_answered_by_get_the_list_cancel_and_a_replay(
    header_only: TestClient, db: Database, ett_csv: Path
) -> None:
    spec = tiny_spec(ett_csv)
    keyed = {**KEY, "Idempotency-Key": "nightly-7"}
    first = header_only.post("/jobs", json=spec, headers=keyed)
    assert first.status_code == 202, first.text
    said = first.json()["warnings"]
    assert len(said) == 1 and said[0].startswith(HEADER_ONLY)
    job_id = first.json()["id"]
    assert header_only.get(f"/jobs/{job_id}").json()["warnings"] == said
    assert [j["warnings"] for j in header_only.get("/jobs").json()["items"]] == [said]
    again = header_only.post("/jobs", json=spec, headers=keyed)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {"id": job_id, "status": "queued", "warnings": said}
    cancelled = header_only.post(f"/jobs/{job_id}/cancel", headers=KEY).json()
    assert (cancelled["status"], cancelled["warnings"]) == ("cancelled", said)
    replayed = header_only.post("/jobs", json=spec, headers=keyed).json()
    assert replayed == {"id": job_id, "status": "cancelled", "warnings": said}
    with db.session() as session:  # the row holds the list itself, as JSON
        assert session.get_one(Job, job_id).warnings == said


def test_a_job_checked_in_full_stores_an_empty_list_not_null(
    client: TestClient, db: Database, ett_csv: Path
) -> None:
    """[] records "checked, nothing to say"; NULL is left to rows from before migration 0006,
    which recorded nothing."""
    answer = client.post("/jobs", json=tiny_spec(ett_csv), headers=KEY)
    assert answer.status_code == 202 and answer.json()["warnings"] == []
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT id FROM jobs WHERE warnings IS NULL")).all() == []
    with db.session() as session:
        assert session.scalars(select(Job.warnings)).all() == [[]]


def test_a_schedules_warnings_are_stored_and_carried_by_the_jobs_it_enqueues(
    header_only: TestClient, client: TestClient, db: Database, ett_csv: Path
) -> None:
    made = header_only.post(
        "/schedules", json={"cron": "0 3 * * *", "job": tiny_spec(ett_csv)}, headers=KEY
    )
    assert made.status_code == 201, made.text
    schedule = made.json()
    said = schedule["warnings"]
    assert len(said) == 1 and said[0].startswith(HEADER_ONLY)
    url = f"/schedules/{schedule['id']}"
    assert header_only.get(url).json() == schedule
    assert header_only.get("/schedules").json()["items"] == [schedule]
    # the worker's tick enqueues the run; nothing is checked then: the job says whose check
    with db.session() as session:
        due = session.get_one(Schedule, schedule["id"]).next_due_at
    (job_id,) = schedules.enqueue_due(db, max_attempts=3, now=due + timedelta(minutes=1))
    job = header_only.get(f"/jobs/{job_id}").json()
    assert job["schedule_id"] == schedule["id"]
    assert job["warnings"] == [
        f"schedule {schedule['id']} (checked when its job was set): {said[0]}"
    ]
    # a job change checked in full clears the schedule's; the job enqueued keeps its own
    cleared = client.patch(url, json={"job": tiny_spec(ett_csv, covariates=[])}, headers=KEY)
    assert cleared.status_code == 200 and cleared.json()["warnings"] == []
    assert client.get(url).json()["warnings"] == []
    assert client.get(f"/jobs/{job_id}").json()["warnings"] == job["warnings"]
    # deleting the schedule clears the job's schedule_id; its warnings still name it
    assert client.delete(url, headers=KEY).status_code == 204
    kept = client.get(f"/jobs/{job_id}").json()
    assert kept["schedule_id"] is None and kept["warnings"] == job["warnings"]


def test_rows_from_before_the_migration_answer_an_empty_list(
    client: TestClient, database_url: str, ett_csv: Path
) -> None:
    """A job (with an Idempotency-Key), a schedule and the job it enqueued, stored at 0005 and
    migrated: NULL warnings answer [] everywhere, a replay of the job included."""
    spec = tiny_spec(ett_csv)
    checked = JobSpec.model_validate(spec).model_copy(update={"data": str(ett_csv.resolve())})
    digest = hashlib.sha256(
        json.dumps(JobSpec.model_validate(spec).model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    downgrade(database_url, "0005")  # the db fixture migrated to head: back to before 0006
    at = {"at": datetime(2026, 1, 1), "spec": json.dumps(checked.model_dump())}
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO schedules (id, cron, timezone, spec, created_at, next_due_at, "
                    "paused) VALUES ('nightly', '0 3 * * *', 'UTC', :spec, :at, :at, false)"
                ),
                at,
            )
            connection.execute(
                text(
                    "INSERT INTO jobs (id, status, spec, created_at, attempts, max_attempts, "
                    "cancel_requested, idempotency_key, request_hash) VALUES ('job-old', "
                    f"'queued', :spec, :at, 0, 3, false, 'old-key', '{digest}')"
                ),
                at,
            )
    finally:
        engine.dispose()
    upgrade(database_url)
    job = client.get("/jobs/job-old").json()
    assert (job["id"], job["warnings"]) == ("job-old", [])
    assert [j["warnings"] for j in client.get("/jobs").json()["items"]] == [[]]
    replay = client.post("/jobs", json=spec, headers={**KEY, "Idempotency-Key": "old-key"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == {"id": "job-old", "status": "queued", "warnings": []}
    assert client.get("/schedules/nightly").json()["warnings"] == []
    assert [s["warnings"] for s in client.get("/schedules").json()["items"]] == [[]]
    paused = client.patch("/schedules/nightly", json={"paused": True}, headers=KEY)
    assert paused.status_code == 200 and paused.json()["warnings"] == []
    # a run of the old schedule: nothing recorded to carry, answered [] as well
    resumed = client.patch("/schedules/nightly", json={"paused": False}, headers=KEY).json()
    due = datetime.fromisoformat(resumed["next_due_at"])
    database = Database.from_url(database_url)
    try:
        (run,) = schedules.enqueue_due(database, max_attempts=3, now=due + timedelta(minutes=1))
    finally:
        database.dispose()
    assert client.get(f"/jobs/{run}").json()["warnings"] == []


def test_the_openapi_schema_says_warnings_is_always_a_list_of_strings(
    client: TestClient,
) -> None:
    """Generated clients read the field as required and never null (it was optional and
    left out of answers that had nothing to say)."""
    components = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("JobAccepted", "JobPublic", "SchedulePublic"):
        schema = components[name]
        field = schema["properties"]["warnings"]
        assert (field["type"], field["items"]) == ("array", {"type": "string"}), name
        assert "warnings" in schema["required"], name
        assert "[]" in field["description"] and "Stored" in field["description"], name
    assert "ScheduleAnswer" not in components  # POST and PATCH answer what GET does
