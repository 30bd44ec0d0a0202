"""Jobs train in a child process group (jobs/worker.py `train_in_child`): a stop reaches a job
wherever it is, not only inside the training loop, and a child that dies fails its job.

The stuck job reads its data from a named pipe nobody writes to: `urnn train` blocks in the
loader, before any training loop could poll a stop check. In the worker's own thread (the
design before) such a job kept renewing its lease and stayed `running` for ever.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from jobs import queue
from jobs.db import Database
from jobs.models import Job
from jobs.spec import JobSpec
from jobs.worker import Worker, _child_failure
from tests.jobs.conftest import tiny_spec, worker_settings
from urnn_forecast.settings import Settings

pytestmark = pytest.mark.slow


def stuck_job(db: Database, tmp_path: Path, ett_csv: Path) -> str:
    """A job whose data is a FIFO with no writer (submitted past the API's checks, which
    would block on it too)."""
    fifo = tmp_path / "never-written.csv"
    os.mkfifo(fifo)
    spec = JobSpec.model_validate({**tiny_spec(ett_csv), "data": str(fifo)})
    with db.session() as session:
        return queue.submit(session, spec=spec.model_dump(), max_attempts=1).id


def wait_for(db: Database, job_id: str, text: str, seconds: float = 60) -> Job:
    deadline = time.monotonic() + seconds
    while True:
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
        if text in (job.log_tail or ""):
            return job
        assert time.monotonic() < deadline, job.log_tail
        time.sleep(0.1)


def test_a_job_stuck_before_training_is_cancelled(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings)
    db = Database.from_settings(settings)
    try:
        job_id = stuck_job(db, tmp_path, ett_csv)
        worker = Worker(db, settings)
        thread = threading.Thread(target=worker.run_once)
        thread.start()
        wait_for(db, job_id, "launching: ")
        time.sleep(3.0)  # the child is up and blocked opening the pipe
        with db.session() as session:
            queue.cancel(session, job_id=job_id)
        asked = time.monotonic()
        thread.join(timeout=30)
        assert not thread.is_alive()
        stopped_after = time.monotonic() - asked
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
    finally:
        worker.request_stop()
        db.dispose()
    assert job.status == "cancelled", (job.error, job.log_tail)
    assert stopped_after < 15.0  # a heartbeat, then SIGTERM (SIGKILL after 10 s at worst)


def test_a_job_stuck_before_training_times_out(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings, job_timeout_seconds=4.0)
    db = Database.from_settings(settings)
    try:
        job_id = stuck_job(db, tmp_path, ett_csv)
        assert Worker(db, settings).run_once() == job_id  # returns: the child was stopped
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
    finally:
        db.dispose()
    assert job.status == "failed"
    assert job.error is not None and job.error.startswith("timed out: stopped after")


def test_a_failing_child_fails_the_job_with_the_line_that_says_why(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings)
    db = Database.from_settings(settings)
    spec = tiny_spec(ett_csv)
    spec["target"] = "not-a-column"  # past the API's column check, as a file changed since
    try:
        with db.session() as session:
            job_id = queue.submit(session, spec=spec, max_attempts=1).id
        assert Worker(db, settings).run_once() == job_id
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
    finally:
        db.dispose()
    assert job.status == "failed"
    assert job.error is not None and "not-a-column" in job.error, job.error


def test_child_failure_names_the_signal_or_the_error_line() -> None:
    from collections import deque

    lines = deque(["Training urnn ...", "urnn train: error: --data x.csv: no such file"])
    assert _child_failure(2, lines) == (
        "urnn train exited with code 2: urnn train: error: --data x.csv: no such file"
    )
    assert _child_failure(-9, deque(["epoch 1"])) == (
        "urnn train was killed by SIGKILL (out of memory?): epoch 1"
    )
    assert _child_failure(1, deque()) == "urnn train exited with code 1"
