"""Workers on SQLite and PostgreSQL: exactly-once claims under a race, crash recovery after
SIGKILL, cancellation of queued and running jobs, failures, graceful shutdown.

A fake executor stands in for training here (tests/jobs/test_api.py runs the real one)."""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs import queue
from jobs.db import Database
from jobs.models import Job
from jobs.worker import JobContext, JobInterruptedError, JobOutcome, Worker
from urnn_forecast.settings import Settings

SPEC = {"data": "/nowhere.csv", "target": "y"}  # the fake executors never read it
ROOT = Path(__file__).resolve().parents[2]


def submit(db: Database, n: int = 1, **fields: object) -> list[str]:
    with db.session() as session:
        return [
            queue.submit(session, spec=dict(SPEC), max_attempts=3, **fields).id  # type: ignore[arg-type]
            for _ in range(n)
        ]


def job(db: Database, job_id: str) -> Job:
    with db.session() as session:
        return queue.get(session, job_id=job_id)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def until_stopped(context: JobContext) -> JobOutcome:
    """A job that runs until told to stop, like the training loop polling should_stop."""
    while not context.should_stop():
        time.sleep(0.01)
    raise JobInterruptedError("stopped")


def test_two_workers_race_over_20_jobs_each_runs_once(db: Database, settings: Settings) -> None:
    ids = submit(db, 20)
    ran: list[tuple[str, str]] = []
    lock = threading.Lock()

    def executor(context: JobContext) -> JobOutcome:
        with lock:
            ran.append((context.job_id, threading.current_thread().name))
        time.sleep(0.005)
        return JobOutcome(mlflow_run_id=f"run-{context.job_id[:8]}")

    databases = [Database.from_settings(settings) for _ in range(2)]  # one engine per "process"
    workers = [
        Worker(d, settings, executor=executor, worker_id=f"w{i}") for i, d in enumerate(databases)
    ]
    start = threading.Barrier(2)

    def work(worker: Worker) -> None:
        start.wait()
        while worker.run_once() is not None:
            pass

    threads = [threading.Thread(target=work, args=(w,), name=w.worker_id) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for database in databases:
        database.dispose()
    assert sorted(job_id for job_id, _ in ran) == sorted(ids)  # each exactly once
    for job_id in ids:
        row = job(db, job_id)
        assert (row.status, row.attempts) == ("succeeded", 1)
        assert row.mlflow_run_id == f"run-{job_id[:8]}"
        assert row.worker_id in ("w0", "w1")


def test_an_idle_worker_rides_out_a_database_outage(
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The job database gone for a few seconds (a restart, a failover) ended every idle
    worker with an OperationalError traceback; a busy one rode it out. Now it logs, waits
    longer each try and carries on, and runs the job queued meanwhile."""
    from sqlalchemy.exc import OperationalError

    claim = queue.claim
    failures = iter(range(3))

    def flaky_claim(*args: object, **kwargs: object) -> Job | None:
        if next(failures, None) is not None:
            raise OperationalError("SELECT", {}, Exception('database "jobs" does not exist'))
        return claim(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queue, "claim", flaky_claim)
    (job_id,) = submit(db)
    quick = settings.model_copy(update={"worker_poll_seconds": 0.05})
    worker = Worker(db, quick, executor=lambda context: JobOutcome(mlflow_run_id="r"))
    with caplog.at_level("INFO", logger="jobs.worker"):
        assert worker.run(max_jobs=1) == 1
    assert job(db, job_id).status == "succeeded"
    said = [r.getMessage() for r in caplog.records]
    assert sum("the job database does not answer (try 1" in m for m in said) == 1
    assert 'database "jobs" does not exist; trying again' in "\n".join(said)
    assert any("the job database answers again after" in m for m in said)
    with pytest.raises(OperationalError):  # a one-off drain reports it and stops
        failures = iter(range(1))
        Worker(db, quick).run(until_idle=True)


def test_a_busy_worker_says_a_database_outage_in_lines_not_a_traceback_per_beat(
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The heartbeat logged every miss with its traceback: a PostgreSQL outage of 4 s under a
    running job, heartbeats every second, wrote 449 lines (a minute's outage at the default
    5 s, about 1,300). It says the outage once (then every tenth miss), in one line, and
    when the database answers again, as an idle worker does; the job still finishes. The
    retried write of its outcome is one line too."""
    from sqlalchemy.exc import OperationalError

    beat = queue.heartbeat
    misses = iter(range(5))

    def flaky_heartbeat(*args: object, **kwargs: object) -> queue.Beat:
        if next(misses, None) is not None:
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection"))
        return beat(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queue, "heartbeat", flaky_heartbeat)
    finish = queue.finish
    refusals = iter(range(1))

    def flaky_finish(*args: object, **kwargs: object) -> bool:
        if next(refusals, None) is not None:
            raise OperationalError(
                "UPDATE jobs SET log_tail=%(log_tail)s", {"log_tail": "x"}, Exception("failover")
            )
        return finish(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queue, "finish", flaky_finish)

    def busy(context: JobContext) -> JobOutcome:
        wait_for(lambda: operator.length_hint(misses) == 0)  # every miss spent
        time.sleep(0.3)  # a beat or more that goes through
        return JobOutcome(mlflow_run_id="r")

    (job_id,) = submit(db)
    with caplog.at_level("INFO", logger="jobs.worker"):
        assert Worker(db, settings, executor=busy).run_once() == job_id
    assert job(db, job_id).status == "succeeded"
    said = [r for r in caplog.records if "heartbeat" in r.getMessage()]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in said), said
    texts = [r.getMessage() for r in said]
    assert sum("the job database does not answer (try 1," in t for t in texts) == 1, texts
    assert "server closed the connection; trying again" in texts[0]
    assert sum("answers again" in t for t in texts) == 1, texts
    assert len(said) == 2, texts
    # the outcome's write, retried, in one line too (it showed the SQL and the log tail)
    [retry] = [r.getMessage() for r in caplog.records if "recording the success" in r.getMessage()]
    assert retry.endswith("failed (failover); again in 0.5 s"), retry


@pytest.mark.postgres
def test_an_idle_worker_rides_out_a_postgres_that_is_read_only_for_a_while(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL failover can hand the worker a server that refuses writes for a while (the
    old primary back as a standby, a promotion not done yet, default_transaction_read_only
    for maintenance): its claim raised InternalError (ReadOnlySqlTransaction), which the
    loop did not wait out, and every idle worker of the fleet exited with code 2. It is an
    outage like a refused connection now: said, waited out, the queued job run after."""
    from jobs.db import upgrade
    from tests.jobs.conftest import _admin_connect

    upgrade(postgres_url)
    settings = Settings(
        var_dir=tmp_path / "var", database_url=postgres_url, worker_poll_seconds=0.05
    )
    db = Database.from_settings(settings)
    name = postgres_url.rsplit("/", 1)[1]

    def read_only(on: bool) -> None:
        value = "on" if on else "off"
        with _admin_connect() as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
        db.engine.dispose()  # new connections read the setting

    try:
        (job_id,) = submit(db)
        read_only(True)
        worker = Worker(db, settings, executor=lambda context: JobOutcome(mlflow_run_id="r"))
        done: list[int] = []
        with caplog.at_level("INFO", logger="jobs.worker"):
            thread = threading.Thread(target=lambda: done.append(worker.run(max_jobs=1)))
            thread.start()
            wait_for(lambda: any("does not answer" in r.getMessage() for r in caplog.records))
            read_only(False)
            thread.join(timeout=30)
        assert done == [1]
        assert job(db, job_id).status == "succeeded"
        said = "\n".join(r.getMessage() for r in caplog.records)
        assert "read-only transaction" in said and "answers again" in said
    finally:
        db.dispose()


def test_a_worker_that_cannot_renew_its_lease_for_a_whole_lease_stops_the_training(
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker cut off from the database (a network partition) kept training after its lease
    had expired: another worker could claim the job and train it too, and both register a
    version (the fencing stops only the database writes). Once its heartbeats have failed
    for a whole lease (URNN_JOB_LEASE_SECONDS, 1.5 s here), it stops the training as if it
    had seen the lease lost; the job is recovered from the expired lease as usual."""
    from sqlalchemy.exc import OperationalError

    def cut_off(*args: object, **kwargs: object) -> queue.Beat:
        raise OperationalError("UPDATE jobs", {}, Exception("no route to host"))

    monkeypatch.setattr(queue, "heartbeat", cut_off)
    stopped: list[float] = []

    def trains(context: JobContext) -> JobOutcome:
        started = time.monotonic()
        while time.monotonic() - started < 8:
            if context.should_stop():
                stopped.append(time.monotonic() - started)
                raise JobInterruptedError("stopped")
            time.sleep(0.02)
        return JobOutcome(mlflow_run_id="r")  # trained on, lease or not

    (job_id,) = submit(db)
    with caplog.at_level("INFO", logger="jobs.worker"):
        Worker(db, settings, executor=trains, worker_id="cut-off").run_once()
    assert stopped and 1.4 <= stopped[0] < 4, stopped
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "no lease renewal for 1.5 s" in said, said
    assert job(db, job_id).status == "running"  # nothing recorded: the lease tells
    wait_for(lambda: bool(queue.recover_expired(db)))
    assert (job(db, job_id).status, job(db, job_id).attempts) == ("queued", 1)


def test_urnn_worker_stops_on_a_database_it_cannot_write_in_one_line(
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A read-only SQLite file (or any outage under --until-idle): `urnn worker` ended in a
    traceback with the claim's SQL and its parameters, exit 1. One line, exit 2, as `urnn db`
    and the worker's start-up check say a database they cannot use."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from urnn_forecast.cli import main

    def readonly_claim(*args: object, **kwargs: object) -> Job | None:
        raise OperationalError(
            "UPDATE jobs SET ...",
            {},
            sqlite3.OperationalError("attempt to write a readonly database"),
        )

    submit(db)
    monkeypatch.setattr(queue, "claim", readonly_claim)
    for until_idle in (["--until-idle"], []):  # lasting: not waited out either way
        assert main(["worker", *until_idle], settings=settings) == 2
        err = capsys.readouterr().err
        assert err == (
            "urnn worker: error: the job database at "
            f"{settings.resolved_database_url()} failed: attempt to write a readonly database\n"
        )


def test_an_outage_without_words_is_logged_and_a_deterministic_error_still_raises(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error with an empty message raised IndexError from the outage's log line, which the
    retry was meant to stop; a ProgrammingError (a schema not upgraded) fails at every try and
    is raised, not retried for ever under "does not answer" (a review)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from jobs.worker import _Outage

    _Outage().failed(OperationalError("SELECT 1", {}, Exception("")))

    def schema_behind(*args: object, **kwargs: object) -> None:
        raise ProgrammingError("SELECT", {}, Exception('column "warnings" does not exist'))

    monkeypatch.setattr(queue, "claim", schema_behind)
    with pytest.raises(ProgrammingError):
        Worker(db, settings).run()

    def table_gone(*args: object, **kwargs: object) -> None:  # SQLite says it this way
        raise OperationalError("SELECT", {}, Exception("no such table: jobs"))

    monkeypatch.setattr(queue, "claim", table_gone)
    with pytest.raises(OperationalError, match="no such table"):
        Worker(db, settings).run()


def test_cancel_a_queued_job(db: Database, settings: Settings) -> None:
    (job_id,) = submit(db)
    with db.session() as session:
        assert queue.cancel(session, job_id=job_id).status == "cancelled"
    worker = Worker(db, settings, executor=until_stopped)
    assert worker.run_once() is None  # nothing left to claim
    row = job(db, job_id)
    assert (row.status, row.attempts, row.error) == ("cancelled", 0, "cancelled before it started")
    with db.session() as session, pytest.raises(queue.JobFinishedError):
        queue.cancel(session, job_id=job_id)
    with db.session() as session, pytest.raises(queue.JobNotFoundError):
        queue.cancel(session, job_id="no-such-job")


def test_cancel_a_running_job_within_seconds(db: Database, settings: Settings) -> None:
    (job_id,) = submit(db)
    worker = Worker(db, settings, executor=until_stopped)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    wait_for(lambda: job(db, job_id).status == "running")
    asked = time.monotonic()
    with db.session() as session:
        assert queue.cancel(session, job_id=job_id).status == "running"  # flagged, not yet done
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - asked < 3 * settings.job_heartbeat_seconds + 1.0
    row = job(db, job_id)
    assert (row.status, row.error) == ("cancelled", "cancelled while running")
    assert row.finished_at is not None and row.lease_expires_at is None


@pytest.mark.parametrize(
    ("logged", "raised", "error", "shown"),
    [
        (
            "loading the data",
            FloatingPointError("urnn diverged in epoch 3: loss nan"),
            "FloatingPointError: urnn diverged in epoch 3: loss nan",
            "loading the data",
        ),
        # PostgreSQL's text holds no NUL: a log or error with one failed every write of the
        # outcome, and the job stayed `running` with nothing said (an audit's)
        (
            "column 'x\x00z' read",
            RuntimeError("x\x00z"),
            "RuntimeError: x\\x00z",
            "column 'x\\x00z' read",
        ),
    ],
    ids=["plain", "with a NUL"],
)
def test_a_failing_job_is_failed_with_its_error_and_log(
    db: Database, settings: Settings, logged: str, raised: Exception, error: str, shown: str
) -> None:
    (job_id,) = submit(db)

    def explode(context: JobContext) -> JobOutcome:
        context.log(logged)
        raise raised

    assert Worker(db, settings, executor=explode).run_once() == job_id
    row = job(db, job_id)
    assert row.status == "failed"
    assert row.error == error
    assert row.log_tail is not None and shown in row.log_tail


def test_expired_lease_is_retried_then_failed_after_max_attempts(
    db: Database, settings: Settings
) -> None:
    (job_id,) = submit(db)
    with db.session() as session:
        session.get_one(Job, job_id).max_attempts = 2
    for attempt in (1, 2):
        claimed = queue.claim(db, worker_id=f"ghost-{attempt}", lease_seconds=0.05)
        assert claimed is not None and claimed.attempts == attempt
        time.sleep(0.1)
        (recovered,) = queue.recover_expired(db)
        assert "stopped heartbeating" in (recovered.error or "")
    row = job(db, job_id)
    assert row.status == "failed"
    assert "gave up after 2 attempt(s)" in (row.error or "")
    # The ghost's late writes are fenced off.
    assert not queue.finish(db, job_id=job_id, worker_id="ghost-2", attempt=2, status="succeeded")


def test_a_lost_workers_log_tail_ends_with_what_became_of_its_attempt(
    db: Database, settings: Settings
) -> None:
    """On the end-to-end walk a worker killed with SIGKILL at epoch 24 left its job's log tail
    ending at that epoch: requeued, then failed for good after its last attempt, the log never
    said the worker was lost (only `error` did), while a shutdown's requeue ends the log with
    its line. The lease's recovery now ends the log with the line `error` says, within the
    tail's 60 lines."""
    from jobs.worker import LOG_TAIL_LINES

    (job_id,) = submit(db)
    with db.session() as session:
        session.get_one(Job, job_id).max_attempts = 2
    epochs = [f"  epoch {n}/60: train loss 0.1" for n in range(1, LOG_TAIL_LINES + 1)]
    for attempt, status in ((1, "queued"), (2, "failed")):
        assert queue.claim(db, worker_id=f"ghost-{attempt}", lease_seconds=0.05) is not None
        beat = queue.heartbeat(
            db,
            job_id=job_id,
            worker_id=f"ghost-{attempt}",
            attempt=attempt,
            lease_seconds=0.05,
            log_tail="\n".join(epochs),
        )
        assert beat.alive
        time.sleep(0.1)
        assert [lost.id for lost in queue.recover_expired(db)] == [job_id]
        row = job(db, job_id)
        assert row.status == status
        lines = (row.log_tail or "").splitlines()
        assert lines[-1] == row.error
        assert lines[-1].startswith(f"attempt {attempt} lost: worker ghost-{attempt} stopped ")
        assert lines[:-1] == epochs[1:]  # the tail keeps its length
    assert "gave up after 2 attempt(s)" in (row.error or "")


def test_stop_requeues_the_running_job_without_spending_an_attempt(
    db: Database, settings: Settings
) -> None:
    (job_id,) = submit(db)
    worker = Worker(db, settings, executor=until_stopped)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    wait_for(lambda: job(db, job_id).status == "running")
    worker.request_stop()  # what SIGTERM does
    thread.join(timeout=10)
    row = job(db, job_id)
    assert (row.status, row.attempts) == ("queued", 0)
    assert "shut down" in (row.error or "")
    assert row.log_tail is not None
    assert row.log_tail.splitlines()[-1] == row.error  # what happened, last
    assert row.log_tail.splitlines()[-1].startswith("requeued: worker ")


def test_a_stopped_workers_last_line_counts_the_job_it_handed_back_as_such(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """On the walk a worker SIGTERMed in its first job ended its log `worker pgA stopped
    after 1 job(s)`, as one that had trained a job to its end says it, though the job went
    back to the queue for another worker to train."""
    (job_id,) = submit(db)
    worker = Worker(db, settings, executor=until_stopped, worker_id="w")
    with caplog.at_level("INFO", logger="jobs.worker"):
        thread = threading.Thread(target=worker.run)
        thread.start()
        wait_for(lambda: job(db, job_id).status == "running")
        worker.request_stop()
        thread.join(timeout=10)
    assert job(db, job_id).status == "queued"
    said = [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]
    assert said == ["worker w stopped after 1 job(s), 1 of them handed back to the queue"]


def test_a_cancel_the_worker_had_not_seen_at_its_shutdown_is_not_requeued(
    db: Database, settings: Settings
) -> None:
    """POST /jobs/{id}/cancel on a running job, then SIGTERM to its worker before a heartbeat
    saw the cancel (within URNN_JOB_HEARTBEAT_SECONDS): the shutdown handed the job back to
    the queue, cancel pending, and the next worker claimed it and trained it again (a job
    shorter than a heartbeat ran to its end, registered and promoted). Now it is cancelled,
    and its attempt is counted: it ran."""
    (job_id,) = submit(db)
    slow_beats = settings.model_copy(update={"job_heartbeat_seconds": 30.0})
    worker = Worker(db, slow_beats, executor=until_stopped)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    wait_for(lambda: job(db, job_id).status == "running")
    # the heartbeat's first beat (the claim stores no log tail; a beat does) comes before the
    # cancel: one that came after it, on a loaded machine, read the flag, and the job was
    # cancelled as a beat sees it, not as this case (a CI run failed so on 2026-12-08)
    wait_for(lambda: job(db, job_id).log_tail is not None)
    with db.session() as session:
        assert queue.cancel(session, job_id=job_id).status == "running"  # flagged
    worker.request_stop()  # what SIGTERM does, before the next beat reads the flag
    thread.join(timeout=10)
    row = job(db, job_id)
    assert (row.status, row.attempts) == ("cancelled", 1), row.error
    assert row.finished_at is not None
    assert "cancel" in (row.error or "")
    # its log says so too: it ended with the worker's "requeued: ..." line, which it never was
    assert row.log_tail is not None
    last = row.log_tail.splitlines()[-1]
    assert last == row.error, row.log_tail
    assert last.startswith("cancelled while running (seen as its worker stopped: worker "), last
    assert "requeued" not in row.log_tail, row.log_tail
    assert queue.claim(db, worker_id="next", lease_seconds=60) is None


def test_a_release_without_a_pending_cancel_still_requeues(db: Database) -> None:
    (job_id,) = submit(db)
    assert queue.claim(db, worker_id="w", lease_seconds=60) is not None
    released = queue.release(
        db, job_id=job_id, worker_id="w", attempt=1, reason="shut down", log_tail="a\nb"
    )
    assert released == "queued"
    row = job(db, job_id)
    assert (row.status, row.attempts, row.finished_at) == ("queued", 0, None)
    assert row.log_tail == "a\nb\nrequeued: shut down"  # the outcome's line after the attempt's
    assert row.error == "requeued: shut down"


def test_a_release_with_a_pending_cancel_logs_the_cancel_not_a_requeue(db: Database) -> None:
    """The status and the log's last line are decided in the same UPDATE: a cancel committed
    between the worker's last beat and its release is what both say."""
    (job_id,) = submit(db)
    assert queue.claim(db, worker_id="w", lease_seconds=60) is not None
    with db.session() as session:
        assert queue.cancel(session, job_id=job_id).status == "running"  # flagged
    released = queue.release(
        db, job_id=job_id, worker_id="w", attempt=1, reason="shut down", log_tail="a"
    )
    assert released == "cancelled"
    row = job(db, job_id)
    assert (row.status, row.attempts) == ("cancelled", 1)
    assert row.log_tail == "a\ncancelled while running (seen as its worker stopped: shut down)"
    assert row.error == row.log_tail.splitlines()[-1]
    # fenced: another worker's release of it changes nothing
    assert queue.release(db, job_id=job_id, worker_id="w", attempt=1, reason="x") is None


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from jobs.db import Database
    from jobs.worker import JobOutcome, Worker
    from urnn_forecast.settings import Settings

    def slow(context):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not context.should_stop():
            time.sleep(0.05)
        return JobOutcome()

    settings = Settings(database_url=sys.argv[1], job_lease_seconds=1.0,
                        job_heartbeat_seconds=0.1)
    Worker(Database.from_settings(settings), settings, executor=slow,
           worker_id="doomed").run_once()
    """
)


def test_a_job_whose_worker_is_killed_is_retried_and_finished_by_another(
    db: Database, settings: Settings
) -> None:
    (job_id,) = submit(db)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    doomed = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, settings.resolved_database_url()], env=env, cwd=ROOT
    )
    try:
        wait_for(lambda: job(db, job_id).worker_id == "doomed", timeout=30)
        time.sleep(0.3)  # a few heartbeats
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert doomed.returncode == -signal.SIGKILL
    assert job(db, job_id).status == "running"  # nobody told the database

    ran: list[int] = []

    def quick(context: JobContext) -> JobOutcome:
        ran.append(context.attempt)
        return JobOutcome(mlflow_run_id="rescued")

    survivor = Worker(db, settings, executor=quick, worker_id="survivor")
    wait_for(lambda: survivor.run_once() == job_id, timeout=15)  # once the lease has expired
    row = job(db, job_id)
    assert (row.status, row.attempts, row.worker_id) == ("succeeded", 2, "survivor")
    assert ran == [2]


def test_a_lost_attempts_run_is_killed_and_its_reason_kept_through_the_retry(
    db: Database, settings: Settings
) -> None:
    """The attempt's MLflow run id is on the job from the run's start; when the attempt is
    lost, the run is marked KILLED (it would show RUNNING forever), and the next attempt
    keeps the reason it was retried in `error`, through to its success."""
    from mlflow import MlflowClient

    from urnn_forecast.tracking import ensure_experiment

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    run = client.create_run(ensure_experiment("jobs", settings))  # left RUNNING: the ghost died
    (job_id,) = submit(db)
    ghost = queue.claim(db, worker_id="ghost", lease_seconds=0.05)
    assert ghost is not None
    assert queue.record_run(db, job_id=job_id, worker_id="ghost", attempt=1, run_id=run.info.run_id)
    assert job(db, job_id).mlflow_run_id == run.info.run_id
    time.sleep(0.1)

    seen: list[str | None] = []

    def quick(context: JobContext) -> JobOutcome:
        seen.append(job(db, job_id).error)
        return JobOutcome()

    assert Worker(db, settings, executor=quick, worker_id="survivor").run_once() == job_id
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    assert seen[0] is not None and seen[0].startswith("attempt 1 lost: worker ghost stopped")
    row = job(db, job_id)
    assert row.status == "succeeded" and (row.error or "").startswith("attempt 1 lost")
    assert row.mlflow_run_id is None  # the survivor's (fake) attempt started no run


@pytest.mark.parametrize("run_status", ["RUNNING", "FINISHED"])
def test_a_version_a_lost_attempt_left_half_registered_is_deleted(
    db: Database, settings: Settings, run_status: str
) -> None:
    """A worker killed between registering the version and deciding its promotion left it
    READY and 'challenger', with no scores, beside the retry's version. When the lost
    attempt's run is ended, such a version goes; a finished one (its decision tagged), or one
    that already holds the champion alias, stays. The promotion is decided after the run
    ends, so a run that died comparing with the champion is FINISHED already."""
    from mlflow import MlflowClient

    from urnn_forecast.tracking import ensure_experiment

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    run = client.create_run(ensure_experiment("jobs", settings))
    other = client.create_run(ensure_experiment("jobs", settings))
    client.set_terminated(other.info.run_id)
    client.create_registered_model("pumps")

    def register(run_id: str) -> str:
        made = client.create_model_version("pumps", f"runs:/{run_id}/model", run_id=run_id)
        return str(made.version)

    finished = register(other.info.run_id)  # another run's, no decision: not this one's to judge
    half = register(run.info.run_id)
    client.set_registered_model_alias("pumps", "challenger", half)
    champion = register(run.info.run_id)
    client.set_registered_model_alias("pumps", "champion", champion)
    decided = register(run.info.run_id)
    client.set_model_version_tag("pumps", decided, "promotion.decision", "kept")
    if run_status != "RUNNING":
        client.set_terminated(run.info.run_id, status=run_status)

    (job_id,) = submit(db)
    ghost = queue.claim(db, worker_id="ghost", lease_seconds=0.05)
    assert ghost is not None
    assert queue.record_run(db, job_id=job_id, worker_id="ghost", attempt=1, run_id=run.info.run_id)
    time.sleep(0.1)
    assert Worker(db, settings, executor=lambda _: JobOutcome(), worker_id="w").run_once() == job_id
    left = {str(v.version) for v in client.search_model_versions("name = 'pumps'")}
    assert left == {finished, champion, decided}
    assert client.get_registered_model("pumps").aliases == {"champion": int(champion)}


def decided_version(settings: Settings, decision: str, reason: str) -> tuple[Any, Any, Any]:
    """(client, run, version): a run of the jobs experiment whose version of 'pumps' carries
    the promotion decision a training records as it ends (the run left RUNNING: the caller
    ends it as the case needs)."""
    from mlflow import MlflowClient

    from urnn_forecast.tracking import ensure_experiment

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    run = client.create_run(ensure_experiment("jobs", settings))
    client.create_registered_model("pumps")
    made = client.create_model_version("pumps", "runs:/x/model", run_id=run.info.run_id)
    client.set_model_version_tag("pumps", made.version, "promotion.decision", decision)
    client.set_model_version_tag("pumps", made.version, "promotion.reason", reason)
    return client, run, made


def test_a_lost_attempt_whose_run_had_finished_is_recorded_not_trained_again(
    db: Database, settings: Settings
) -> None:
    """A worker killed after its training had ended (attaching the log, recording the
    outcome: on the PJM walk a SIGKILL one second after `urnn train` printed its decision)
    left a FINISHED run and a decided version; the next worker put the job back in the queue
    and trained it again, registering a second version of the same data. It is recorded as
    the run ended, and the run is not marked KILLED."""

    client, run, made = decided_version(settings, "promoted", "no champion yet")
    client.set_terminated(run.info.run_id)  # FINISHED: the training had ended

    (job_id,) = submit(db)
    ghost = queue.claim(db, worker_id="ghost", lease_seconds=0.05)
    assert ghost is not None
    assert queue.record_run(db, job_id=job_id, worker_id="ghost", attempt=1, run_id=run.info.run_id)
    time.sleep(0.1)
    ran: list[int] = []

    def quick(context: JobContext) -> JobOutcome:
        ran.append(context.attempt)
        return JobOutcome()

    assert Worker(db, settings, executor=quick, worker_id="survivor").run_once() is None
    assert ran == []  # nothing trained again
    row = job(db, job_id)
    assert (row.status, row.attempts, row.mlflow_run_id) == ("succeeded", 1, run.info.run_id)
    assert (row.registered_name, row.registered_version, row.promoted) == (
        "pumps",
        str(made.version),
        True,
    )
    assert (row.error or "").startswith(
        "attempt 1's worker ghost was lost after its run had finished: recorded as the run "
        f"ended (version {made.version}, promoted), not trained again"
    )
    # the log says it too, where the ghost's last heartbeat left it (on the walk at
    # "Validating input example", a job `succeeded` whose log ended mid-registration)
    assert (row.log_tail or "").splitlines()[-1] == row.error
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_lost_attempt_whose_run_had_finished_is_not_claimed_while_it_is_checked(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the PostgreSQL walk a worker SIGKILLed while its `urnn train` registered the model:
    the survivor put the job back in the queue first and read the run from MLflow after (2.1 s
    on the walk), so for that long the job was `queued`, and any other worker (idle ones look
    every URNN_WORKER_POLL_SECONDS, 2 s) claimed it and trained the same data again, a second
    version, the twin the check exists to prevent. The job stays the lost worker's while its
    run is read; only a run that had not finished puts it back in the queue."""

    import jobs.worker as worker_module

    client, run, made = decided_version(settings, "kept", "mae 2 >= 1")
    client.set_terminated(run.info.run_id)

    (job_id,) = submit(db)
    assert queue.claim(db, worker_id="ghost", lease_seconds=0.05) is not None
    assert queue.record_run(db, job_id=job_id, worker_id="ghost", attempt=1, run_id=run.info.run_id)
    time.sleep(0.1)
    claimed_meanwhile: list[str] = []
    reading = worker_module.finished_attempt

    def read_while_another_worker_polls(settings: Settings, run_id: str) -> JobOutcome | None:
        other = queue.claim(db, worker_id="other", lease_seconds=60)
        if other is not None:
            claimed_meanwhile.append(other.id)
        return reading(settings, run_id)

    monkeypatch.setattr(worker_module, "finished_attempt", read_while_another_worker_polls)
    assert Worker(db, settings, executor=lambda _: JobOutcome(), worker_id="w").run_once() is None
    assert claimed_meanwhile == []
    row = job(db, job_id)
    assert (row.status, row.attempts, row.registered_version) == ("succeeded", 1, str(made.version))


def test_an_attempt_past_its_timeout_is_stopped_and_failed(
    db: Database, settings: Settings
) -> None:
    (job_id,) = submit(db)
    timed = settings.model_copy(update={"job_timeout_seconds": 0.3})
    started = time.monotonic()
    assert Worker(db, timed, executor=until_stopped, worker_id="w").run_once() == job_id
    assert time.monotonic() - started < 10
    row = job(db, job_id)
    assert row.status == "failed"
    assert row.error == "timed out: stopped after URNN_JOB_TIMEOUT_SECONDS=0.3 s of this attempt"
    assert "timed out" in (row.log_tail or "")


def test_a_success_the_database_refuses_fails_the_job_once_instead_of_rerunning_it(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL refused a 230-character registered name for jobs.registered_name
    (VARCHAR(200)): the worker retried the write for 15 s, left the job running, and its
    expired lease ran the training again, registering a second version. A refusal for the
    values is not retried: the job fails once, naming what was made."""
    from sqlalchemy.exc import DataError

    if db.engine.dialect.name == "sqlite":  # SQLite stores any length: refuse as PostgreSQL
        real_finish = queue.finish

        def finish(db: Database, **values: object) -> bool:
            if len(str(values.get("registered_name") or "")) > 200:
                raise DataError("UPDATE jobs ...", {}, ValueError("value too long for type"))
            return real_finish(db, **values)  # type: ignore[arg-type]

        monkeypatch.setattr(queue, "finish", finish)
    (job_id,) = submit(db)
    runs = []

    def registers(context: JobContext) -> JobOutcome:
        runs.append(context.attempt)
        return JobOutcome(mlflow_run_id="r1", registered_name="m" * 230, registered_version="1")

    started = time.monotonic()
    assert Worker(db, settings, executor=registers).run_once() == job_id
    assert time.monotonic() - started < 5  # not 15 s of retries
    row = job(db, job_id)
    assert (row.status, row.attempts, row.mlflow_run_id) == ("failed", 1, "r1")
    assert row.error is not None and row.error.startswith(
        "trained (MLflow run r1, registered as 'mmmm"
    )
    assert "the job is not run again, so that the model is not registered twice" in row.error
    assert Worker(db, settings, executor=registers).run_once() is None  # nothing left to run
    assert runs == [1]
