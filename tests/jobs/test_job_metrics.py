"""The job queue on /metrics: counts by status, the newest failure and success, the oldest
queued job, on SQLite and PostgreSQL; read off the event loop; a database that cannot be read
says so with urnn_jobs_database_up 0, and an embedded default with no job database exposes no
job metric at all (and creates no file)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from jobs import queue
from jobs.db import Database, upgrade
from jobs.models import JOB_STATUSES
from service.job_status import JobStatusReader
from service.main import create_app
from service.metrics import JobMetrics
from tests.jobs.test_api import NoModels
from urnn_forecast.settings import Settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in a text exposition, None if it is absent."""
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def exposition(reader: JobStatusReader) -> str:
    registry = CollectorRegistry()
    registry.register(JobMetrics(reader.latest))
    return generate_latest(registry).decode()


def run_to_end(db: Database, status: str) -> str:
    """Submit one job, claim it and finish it with `status`; its id."""
    with db.session() as session:
        job_id = queue.submit(session, spec={"data": "x.csv"}, max_attempts=1).id
    claimed = queue.claim(db, worker_id="w", lease_seconds=60)
    assert claimed is not None and claimed.id == job_id
    queue.finish(db, job_id=job_id, worker_id="w", attempt=1, status=status, error="boom")
    return job_id


def test_the_queue_is_counted_by_status_with_its_newest_failure_and_oldest_waiting_job(
    db: Database, settings: Settings
) -> None:
    reader = JobStatusReader(settings.resolved_database_url())
    empty = reader.refresh_now()
    assert empty is not None and empty.up and empty.summary is not None
    assert empty.summary.counts == dict.fromkeys(JOB_STATUSES, 0)
    text = exposition(reader)
    assert sample(text, "urnn_jobs_database_up") == 1.0
    assert sample(text, "urnn_job_last_failure_timestamp_seconds") == 0.0
    assert sample(text, "urnn_job_oldest_queued_timestamp_seconds") == 0.0

    before = datetime.now(UTC).timestamp()
    run_to_end(db, "succeeded")
    run_to_end(db, "failed")
    with db.session() as session:
        queue.submit(session, spec={"data": "y.csv"}, max_attempts=1)
    after = datetime.now(UTC).timestamp()
    reader.refresh_now()
    text = exposition(reader)
    assert sample(text, "urnn_jobs", '{status="failed"}') == 1.0
    assert sample(text, "urnn_jobs", '{status="succeeded"}') == 1.0
    assert sample(text, "urnn_jobs", '{status="queued"}') == 1.0
    assert sample(text, "urnn_jobs", '{status="running"}') == 0.0
    for name in (
        "urnn_job_last_failure_timestamp_seconds",
        "urnn_job_last_success_timestamp_seconds",
        "urnn_job_oldest_queued_timestamp_seconds",
    ):
        value = sample(text, name)
        assert value is not None and before - 1 <= value <= after + 1, name
    # the alert's rule: the newest finished job failed
    failure = sample(text, "urnn_job_last_failure_timestamp_seconds")
    success = sample(text, "urnn_job_last_success_timestamp_seconds")
    assert failure is not None and success is not None and failure >= success


def test_a_database_that_cannot_be_read_is_down_and_keeps_the_last_counts(
    db: Database, settings: Settings
) -> None:
    reader = JobStatusReader(settings.resolved_database_url())
    run_to_end(db, "failed")
    assert reader.refresh_now() is not None
    with db.engine.begin() as connection:  # the table gone: every read now fails
        connection.exec_driver_sql("ALTER TABLE jobs RENAME TO jobs_elsewhere")
    try:
        reading = reader.refresh_now()
        assert reading is not None and not reading.up
        text = exposition(reader)
        assert sample(text, "urnn_jobs_database_up") == 0.0
        assert sample(text, "urnn_jobs", '{status="failed"}') == 1.0  # the last good read
    finally:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE jobs_elsewhere RENAME TO jobs")


def test_a_missing_sqlite_job_database_exposes_nothing_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "var" / "jobs.db"
    reader = JobStatusReader(f"sqlite:///{path}")
    assert reader.latest() is None and reader.refresh_now() is None
    assert "urnn_job" not in exposition(reader)
    assert not path.exists()


def test_a_configured_sqlite_job_database_that_is_missing_is_down_and_is_not_created(
    tmp_path: Path,
) -> None:
    """URNN_DATABASE_URL names a SQLite file that is not there (moved, a volume not mounted):
    the job API answers 503, so UrnnJobDatabaseUnreadable must have a 0 to fire on."""
    path = tmp_path / "jobs.db"
    reader = JobStatusReader(f"sqlite:///{path}", configured=True)
    reading = reader.refresh_now()
    assert reading is not None and not reading.up
    assert sample(exposition(reader), "urnn_jobs_database_up") == 0.0
    assert not path.exists()


def test_a_configured_sqlite_job_database_deleted_after_a_read_turns_down(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    upgrade(f"sqlite:///{path}")
    reader = JobStatusReader(f"sqlite:///{path}", configured=True)
    first = reader.refresh_now()
    assert first is not None and first.up
    moved = path.rename(tmp_path / "moved.db")
    try:
        reading = reader.refresh_now()  # the pooled connection still holds the old file
        assert reading is not None and not reading.up
        assert not path.exists()
    finally:
        moved.rename(path)


def test_the_service_says_a_configured_job_database_that_is_missing_is_down(
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    missing = tmp_path / "elsewhere" / "jobs.db"
    settings = Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{missing}")
    with TestClient(create_app(settings, loader=NoModels())) as client:
        assert client.get("/jobs").status_code == 503
        deadline = time.monotonic() + 10
        while True:  # the first scrape starts the read, a later one shows it
            text = client.get("/metrics").text
            up = sample(text, "urnn_jobs_database_up")
            if up is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert up == 0.0
    assert not missing.exists()


def test_a_scrape_never_waits_for_the_read(db: Database, settings: Settings) -> None:
    """`latest` hands back the last reading at once and reads in a thread when it is stale."""
    now = [0.0]
    reader = JobStatusReader(settings.resolved_database_url(), ttl=10.0, clock=lambda: now[0])
    assert reader.latest() is None  # nothing read yet: the read has started
    reader.wait(10)
    first = reader.latest()
    assert first is not None and first.summary is not None
    assert first.summary.counts["failed"] == 0
    run_to_end(db, "failed")
    assert reader.latest() is first  # within ttl: no new read
    now[0] = 11.0
    assert reader.latest() is first  # stale: answered at once, refreshed behind it
    reader.wait(10)
    second = reader.latest()
    assert second is not None and second.summary is not None
    assert second.summary.counts["failed"] == 1


@pytest.fixture
def client(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    from fastapi.testclient import TestClient

    import service.job_status as job_status

    # the service reads the queue as it starts: a job submitted after that shows within the
    # reading's ttl (15 s by default)
    monkeypatch.setattr(job_status, "TTL_S", 0.5)
    with TestClient(create_app(settings, loader=NoModels())) as test_client:
        yield test_client


def test_the_service_exposes_the_queue_on_metrics(client: TestClient, db: Database) -> None:
    run_to_end(db, "failed")
    deadline = time.monotonic() + 10
    while True:  # read at start-up, before the job; then again within the ttl
        text = client.get("/metrics").text
        if sample(text, "urnn_jobs", '{status="failed"}') == 1.0 or (time.monotonic() > deadline):
            break
        time.sleep(0.05)
    assert sample(text, "urnn_jobs", '{status="failed"}') == 1.0
    assert sample(text, "urnn_jobs_database_up") == 1.0


def test_a_read_that_never_returns_reads_as_down(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL server that stops answering on an open connection (a network partition:
    no reset, so the SELECT waits out TCP's retransmissions, a quarter of an hour or more)
    held the one read in flight: no other read started, and every scrape answered the last
    reading, urnn_jobs_database_up 1, so UrnnJobDatabaseUnreadable could not fire and the
    job gauges froze. A read in flight for longer than READ_DEADLINE_S now reads as down."""
    import threading

    import service.job_status as job_status
    from jobs.queue import summary as answer

    now = [0.0]
    reader = JobStatusReader(settings.resolved_database_url(), ttl=10.0, clock=lambda: now[0])
    assert reader.refresh_now() is not None
    released = threading.Event()

    def hung(session):  # type: ignore[no-untyped-def]
        released.wait(30)
        return answer(session)

    monkeypatch.setattr(job_status, "summary", hung)
    now[0] = 11.0
    first = reader.latest()  # stale: the read starts and hangs
    assert first is not None and first.up
    now[0] = 11.0 + job_status.READ_DEADLINE_S + 1
    try:
        late = reader.latest()
        assert late is not None and not late.up
        assert late.summary == first.summary  # the last counts are still shown
        text = exposition(reader)
        assert sample(text, "urnn_jobs_database_up") == 0.0
    finally:
        released.set()
        reader.wait(10)
    back = reader.latest()  # the read came back: up again
    assert back is not None and back.up


def test_a_reading_is_kept_fresh_between_scrapes(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scrape answers the last reading and starts the next read: with `urnn serve --workers
    2` each worker keeps its own, and a scrape reaching the one scraped less often showed a
    reading a minute old (`urnn_jobs{status="succeeded"}` read 4, 2, 4 on three scrapes a
    second apart). Each process now reads every third of the ttl, scraped or not: the first
    scrape after a change shows it."""
    from fastapi.testclient import TestClient

    import service.job_status as job_status

    monkeypatch.setattr(job_status, "TTL_S", 0.3)
    with TestClient(create_app(settings, loader=NoModels())) as client:
        deadline = time.monotonic() + 10
        while sample(client.get("/metrics").text, "urnn_jobs", '{status="failed"}') != 0.0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        run_to_end(db, "failed")
        time.sleep(1.5)  # no scrape meanwhile: another worker's turn
        text = client.get("/metrics").text
    assert sample(text, "urnn_jobs", '{status="failed"}') == 1.0


def test_a_look_that_fails_neither_ends_the_looks_nor_breaks_the_shutdown(
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The looks between scrapes ran as an asyncio task that an error ended: its exception
    then came out of the lifespan's shutdown, before the streaming states were flushed. A
    failing look is logged once and the looks go on."""
    from fastapi.testclient import TestClient

    import service.job_status as job_status

    monkeypatch.setattr(job_status, "TTL_S", 0.3)
    looks: list[float] = []
    latest = JobStatusReader.latest

    def failing_first(reader: JobStatusReader) -> object:
        looks.append(time.monotonic())
        if len(looks) <= 3:
            raise RuntimeError("can't start new thread")
        return latest(reader)

    monkeypatch.setattr(JobStatusReader, "latest", failing_first)
    with TestClient(create_app(settings, loader=NoModels())):
        deadline = time.monotonic() + 10
        while len(looks) < 6:  # the looks went on past the failures
            assert time.monotonic() < deadline
            time.sleep(0.05)
    said = [r for r in caplog.records if "looking at the job database's reading" in r.message]
    assert len(said) == 1 and said[0].exc_info is not None


def test_a_database_whose_driver_is_missing_is_down_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """URNN_DATABASE_URL=mysql://... (a dialect whose driver is not installed): the job API
    answers 503 saying so, but the metrics' read raised ModuleNotFoundError out of its thread,
    printed a traceback, and left the read "in flight" for ever: the next scrapes never read
    again. It reads as down, said once in one line, and the next look reads again."""
    import threading

    import service.job_status as job_status

    def no_driver(url: str, **kwargs: object) -> object:
        raise ModuleNotFoundError("No module named 'MySQLdb'")

    monkeypatch.setattr(job_status, "make_engine", no_driver)
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    now = [0.0]
    reader = JobStatusReader("mysql://u:PW-SECRET@127.0.0.1/x", ttl=10.0, clock=lambda: now[0])
    assert reader.latest() is None  # nothing read yet: the read starts in the background
    reader.wait(5)
    assert escaped == []
    reading = reader.latest()
    assert reading is not None and not reading.up
    said = [r.getMessage() for r in caplog.records if "job database" in r.getMessage()]
    assert len(said) == 1 and "MySQLdb" in said[0] and "PW-SECRET" not in said[0]
    now[0] = 20.0  # stale again: another read starts (none is stuck in flight)
    reader.latest()
    reader.wait(5)
    assert escaped == []
    assert len([r for r in caplog.records if "job database" in r.getMessage()]) == 1
