"""Jobs train in a child process group (jobs/worker.py `train_in_child`): a stop reaches a job
wherever it is, not only inside the training loop, and a child that dies fails its job.

The stuck job reads its data from a named pipe nobody writes to: `urnn train` blocks in the
loader, before any training loop could poll a stop check. In the worker's own thread (the
design before) such a job kept renewing its lease and stayed `running` for ever.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from jobs import queue
from jobs.db import Database
from jobs.models import Job
from jobs.spec import JobSpec
from jobs.worker import (
    JobContext,
    JobInterruptedError,
    JobOutcome,
    Worker,
    _alive,
    _child_failure,
    _ChildMarkers,
    _descendants,
    _supervise,
    _terminate_tree,
    worker_token,
)
from tests.jobs.conftest import cancel_once_logged, tiny_spec, worker_settings
from urnn_forecast.settings import Settings


def stuck_job(db: Database, tmp_path: Path, ett_csv: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A job whose training child hangs before it trains, as on a data file on a hung mount:
    its Python blocks at start (a sitecustomize on its PYTHONPATH that sleeps). A named pipe
    with no writer did it once; the loader now refuses one without waiting on it."""
    hang = tmp_path / "hang"
    hang.mkdir()
    (hang / "sitecustomize.py").write_text("import time\n\ntime.sleep(3600)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hang), os.environ.get("PYTHONPATH", "")]))
    spec = JobSpec.model_validate(tiny_spec(ett_csv))
    with db.session() as session:
        return queue.submit(session, spec=spec.model_dump(), max_attempts=1).id


def run_one_job(settings: Settings, spec: dict[str, Any]) -> Job:
    """Submit `spec` (one attempt), let a real worker run it to its end, and read it back."""
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            job_id = queue.submit(session, spec=spec, max_attempts=1).id
        assert Worker(db, settings).run_once() == job_id
        with db.session() as session:
            return queue.get(session, job_id=job_id)
    finally:
        db.dispose()


def wait_for(db: Database, job_id: str, text: str, seconds: float = 60) -> Job:
    deadline = time.monotonic() + seconds
    while True:
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
        if text in (job.log_tail or ""):
            return job
        assert time.monotonic() < deadline, job.log_tail
        time.sleep(0.1)


@pytest.mark.slow
def test_a_job_stuck_before_training_is_cancelled(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings, device="cpu")
    db = Database.from_settings(settings)
    try:
        job_id = stuck_job(db, tmp_path, ett_csv, monkeypatch)
        # the child is up and blocked at its start 3 s after the launch
        job, stopped_after = cancel_once_logged(db, settings, job_id, "launching: ", settle=3.0)
    finally:
        db.dispose()
    assert job.status == "cancelled", (job.error, job.log_tail)
    assert stopped_after < 15.0  # a heartbeat, then SIGTERM (SIGKILL after 10 s at worst)
    launch = next(line for line in (job.log_tail or "").splitlines() if "launching: " in line)
    # the worker's URNN_DEVICE when the job sets no fit.device (it was "auto": a GPU if any);
    # covariates go in the config file (--covariates splits names at commas)
    assert "--device cpu" in launch and "--covariates" not in launch


@pytest.mark.slow
def test_a_job_stuck_before_training_times_out(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings, job_timeout_seconds=4.0)
    db = Database.from_settings(settings)
    try:
        job_id = stuck_job(db, tmp_path, ett_csv, monkeypatch)
        assert Worker(db, settings).run_once() == job_id  # returns: the child was stopped
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
    finally:
        db.dispose()
    assert job.status == "failed"
    assert job.error is not None and job.error.startswith("timed out: stopped after")


@pytest.mark.slow
def test_a_failing_child_fails_the_job_with_the_line_that_says_why(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings)
    spec = tiny_spec(ett_csv)
    spec["target"] = "not-a-column"  # past the API's column check, as a file changed since
    job = run_one_job(settings, spec)
    assert job.status == "failed"
    assert job.error is not None and "not-a-column" in job.error, job.error


def test_child_failure_names_the_signal_or_the_error_line() -> None:
    from collections import deque

    lines = deque(["Training urnn ...", "urnn train: error: --data x.csv: no such file"])
    assert _child_failure(2, lines) == (
        "urnn train exited with code 2: urnn train: error: --data x.csv: no such file"
    )
    assert _child_failure(-9, deque(["epoch 1"])) == (
        "urnn train was killed by SIGKILL (out of memory?)"  # not "epoch 1": no cause
    )
    assert _child_failure(1, deque()) == "urnn train exited with code 1"


# --- the supervision's parts, without a training -------------------------------------------


class _Process:
    """A child that runs for `polls` polls, then exits 0."""

    def __init__(self, polls: int) -> None:
        self.polls = polls

    def poll(self) -> int | None:
        self.polls -= 1
        return None if self.polls > 0 else 0


def _context(job_id: str = "job-1", *, stop: bool = False, record: Any = None) -> JobContext:
    spec = JobSpec.model_validate({"data": "x.csv", "target": "y"})
    lines: list[str] = []
    context = JobContext(
        job_id, 1, spec, lambda: stop, lines.append, record or (lambda run_id: None)
    )
    context.lines = lines  # type: ignore[attr-defined]
    return context


def test_the_removed_checkpoint_line_promises_no_retry(tmp_path: Path) -> None:
    """A cancelled, timed-out or failed job is not retried, yet its log said the worker
    removed the checkpoint because "a retry starts afresh" (a user waited for one after
    URNN_JOB_TIMEOUT_SECONDS stopped a job)."""
    from jobs.worker import _say_removed

    context = _context()
    _say_removed(context, [tmp_path / "run-1"])
    (line,) = context.lines  # type: ignore[attr-defined]
    assert line.startswith(f"removed {tmp_path / 'run-1'}, this attempt's checkpoint")
    assert "retry" not in line and "jobs do not resume from a checkpoint" in line


def test_a_stop_while_the_model_registers_lets_the_run_finish(tmp_path: Path) -> None:
    started = tmp_path / "started.json"
    started.write_text(json.dumps({"run_id": "r1", "registering": True}))
    context = _context(stop=True)
    _supervise(_Process(polls=3), context, _ChildMarkers(started), tmp_path / "result.json")
    assert context.lines == [  # type: ignore[attr-defined]
        "stop asked while the model is being registered: letting it finish"
    ]


def test_a_stop_after_the_result_is_written_lets_the_run_exit(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("{}")
    process, context = _Process(polls=3), _context(stop=True)
    _supervise(process, context, _ChildMarkers(tmp_path / "started.json"), tmp_path / "result.json")
    assert process.polls == 0  # polled until the child exited, not left running
    assert context.lines == [  # type: ignore[attr-defined]
        "stop asked while the model is being registered: letting it finish"
    ]


def test_a_stop_before_registering_stops_the_run(tmp_path: Path) -> None:
    started = tmp_path / "started.json"
    started.write_text(json.dumps({"run_id": "r1", "registering": False}))
    with pytest.raises(JobInterruptedError, match="stopped the training of job job-1"):
        _supervise(
            _Process(polls=50), _context(stop=True), _ChildMarkers(started), tmp_path / "r.json"
        )


def test_a_database_hiccup_recording_the_run_is_retried(tmp_path: Path) -> None:
    started = tmp_path / "started.json"
    started.write_text(json.dumps({"run_id": "r1", "registering": False}))
    calls: list[str] = []

    def record(run_id: str) -> None:
        calls.append(run_id)
        if len(calls) == 1:
            raise OperationalError("UPDATE jobs", {}, Exception("database is locked"))

    markers = _ChildMarkers(started)
    context = _context(record=record)
    markers.update(context)  # logged, not raised
    assert not markers.recorded
    markers.update(context)
    assert markers.recorded and calls == ["r1", "r1"]


def test_child_failure_names_a_rank_killed_under_torchrun() -> None:
    from collections import deque

    report = deque(
        [
            "epoch 3",
            "============================================================",
            "urnn_forecast.cli FAILED",
            "------------------------------------------------------------",
            "  exitcode  : -9 (pid: 4242)",
            "  traceback : Signal 9 (SIGKILL) received by PID 4242",
            "============================================================",
        ]
    )
    assert _child_failure(1, report) == (
        "a training process was killed by SIGKILL (out of memory?)"
    )
    # two ranks failed: the one torchrun SIGTERMed after the other aborted is listed first,
    # the root cause last (CI's run of 2026-12-05 was reported as "killed by SIGTERM")
    two = deque(
        [
            "urnn_forecast.cli FAILED",
            "Failures:",
            "[1]:",
            "  traceback : Signal 15 (SIGTERM) received by PID 4243",
            "Root Cause (first observed failure):",
            "[0]:",
            "  traceback : Signal 6 (SIGABRT) received by PID 4242",
        ]
    )
    assert _child_failure(1, two) == "a training process was killed by SIGABRT"
    assert _child_failure(1, deque(["Traceback ...", "ValueError: bad", "====="])) == (
        "urnn train exited with code 1: ValueError: bad"
    )


SLEEPER = """
import subprocess, sys, time
# like torchrun: a rank in a session of its own, outside the parent's process group
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                  "signal.SIG_IGN); time.sleep(600)"], start_new_session=True)
time.sleep(600)
"""


def test_terminating_a_job_reaches_ranks_in_their_own_session() -> None:
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)
    deadline = time.monotonic() + 20
    while not _descendants(parent.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (rank,) = _descendants(parent.pid)
    _terminate_tree(parent, grace_seconds=1.0)  # the rank ignores SIGTERM: SIGKILL after 1 s
    assert parent.returncode is not None
    deadline = time.monotonic() + 10
    while _alive(rank):
        assert time.monotonic() < deadline, "the rank outlived its job"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_cancel_during_registration_records_what_the_run_did(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    settings = worker_settings(tmp_path, mlflow_settings)
    db = Database.from_settings(settings)
    try:
        spec = JobSpec.model_validate(tiny_spec(ett_csv))
        with db.session() as session:
            job_id = queue.submit(session, spec=spec.model_dump(), max_attempts=1).id
        job, _ = cancel_once_logged(db, settings, job_id, "Successfully registered model")
    finally:
        db.dispose()
    # Too late to cancel: the version exists (and is champion), and the job says so.
    assert job.status == "succeeded", (job.error, job.log_tail)
    assert (job.registered_version, job.promoted) == ("1", True)


def test_a_stray_byte_in_the_output_does_not_stop_the_log(tmp_path: Path) -> None:
    import sys
    from collections import deque

    from jobs.worker import _launch, _pipe_to_log

    script = "import sys; sys.stdout.buffer.write(b'bad \\xff byte\\n'); print('after', flush=True)"
    process = _launch([sys.executable, "-c", script], Settings(var_dir=tmp_path / "var"))
    output: deque[str] = deque(maxlen=10)
    _pipe_to_log(process, _context(), output, tmp_path / "attempt-1.log")
    assert process.wait(timeout=30) == 0
    assert list(output) == ["bad \ufffd byte", "after"]
    assert (tmp_path / "attempt-1.log").read_text() == "bad \ufffd byte\nafter\n"


def test_a_tracking_server_that_hangs_does_not_hold_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import jobs.worker as worker

    monkeypatch.setattr(worker, "TRACKING_CALL_SECONDS", 0.3)
    monkeypatch.setattr(worker, "_attach_log", lambda *args: time.sleep(5))
    started = time.monotonic()
    worker.attach_log(Settings(var_dir=tmp_path / "var"), "run-1", tmp_path / "x.log")
    assert time.monotonic() - started < 2
    assert "no answer from the tracking server in 0.3 s; moving on" in caplog.text


# --- a worker killed outright: its attempt's folder and log ---------------------------------

DOOMED_WORKER = """
import sys
from jobs.db import Database
from jobs.worker import Worker
from urnn_forecast.settings import Settings

settings = Settings(var_dir=sys.argv[1], database_url=sys.argv[2], job_lease_seconds=1.0,
                    job_heartbeat_seconds=0.2)
Worker(Database.from_settings(settings), settings, worker_id="doomed").run_once()
"""


@pytest.mark.slow
def test_a_killed_workers_attempt_log_reaches_its_run_and_its_folder_is_removed(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    """SIGKILL a worker mid-training: the next worker on its var_dir attaches the lost
    attempt's whole log to that attempt's MLflow run (KILLED) and removes the attempt's
    folder; before, the folder stayed in /tmp and the run had no log."""
    import signal
    import subprocess
    import sys

    from mlflow import MlflowClient

    settings = worker_settings(tmp_path, mlflow_settings)
    db = Database.from_settings(settings)
    spec = tiny_spec(ett_csv)
    spec["config"]["fit"].update(max_epochs=1000, patience=1000)  # trains until killed
    root = Path(__file__).resolve().parents[2]
    try:
        with db.session() as session:
            job_id = queue.submit(session, spec=spec, max_attempts=2).id
        doomed = subprocess.Popen(
            [sys.executable, "-c", DOOMED_WORKER, str(settings.var_dir),
             settings.resolved_database_url()],
            env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}, cwd=root,
        )  # fmt: skip
        try:
            running = wait_for(db, job_id, "epoch 2/1000", seconds=120)
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        lost_run = running.mlflow_run_id
        assert lost_run is not None
        folder = settings.var_dir / "job-attempts" / job_id / f"attempt-1-{worker_token('doomed')}"
        assert (folder / "attempt-1.log").is_file()  # left behind by the killed worker

        survivor = Worker(db, settings, executor=lambda context: JobOutcome())
        deadline = time.monotonic() + 30
        while survivor.run_once() != job_id:  # once the lease has expired
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with db.session() as session:
            job = queue.get(session, job_id=job_id)
    finally:
        db.dispose()
    assert (job.status, job.attempts) == ("succeeded", 2), job.error
    assert not (settings.var_dir / "job-attempts" / job_id).exists()
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri())
    assert client.get_run(lost_run).info.status == "KILLED"
    log = Path(client.download_artifacts(lost_run, "job/attempt-1.log", str(tmp_path)))
    assert "epoch 2/1000" in log.read_text()


def test_collecting_leaves_live_and_foreign_attempts_alone_and_clears_unreadable_leftovers(
    tmp_path: Path, db: Database, settings: Settings
) -> None:
    from jobs.worker import collect_lost_attempts

    with db.session() as session:
        job_id = queue.submit(session, spec={"data": "x"}, max_attempts=3).id
    assert queue.claim(db, worker_id="alive", lease_seconds=60) is not None  # attempt 1 runs
    attempts = settings.var_dir / "job-attempts"
    live, old = attempts / job_id / "attempt-1", attempts / job_id / "attempt-0"
    orphan = attempts / "no-such-job" / "attempt-3"
    for folder in (live, old, orphan):
        folder.mkdir(parents=True)
        (folder / "started.json").write_text("{not json")  # a marker cut short
    (attempts / job_id / "attempt-x").mkdir()  # not ours to judge
    assert collect_lost_attempts(db, settings) == [old]
    assert live.is_dir() and not old.exists()
    assert orphan.is_dir()  # another job database's job (an audit's: its live run lost its files)
    assert (attempts / job_id / "attempt-x").is_dir()


def test_a_job_handed_back_and_claimed_by_a_replica_gets_folders_of_its_own(
    tmp_path: Path, db: Database, settings: Settings
) -> None:
    """A shutdown hands the job back without spending the attempt: a replica on the same
    volume (compose's `--scale worker=N` share one) that claimed it before the first worker
    had done its bookkeeping took over the first's `attempt-1` folder, its stale started.json
    (the stopped run recorded as the new attempt's) and log; and the stopped attempt was
    never collected (its run left RUNNING, its log unattached), the job running attempt 1."""
    from jobs.worker import attempt_folder, collect_lost_attempts

    with db.session() as session:
        job_id = queue.submit(session, spec={"data": "x"}, max_attempts=3).id
    assert queue.claim(db, worker_id="first", lease_seconds=60) is not None
    with attempt_folder(settings, job_id, 1, "first") as first:
        (first / "started.json").write_text("{not json")  # a marker of the stopped run
        (first / "attempt-1.log").write_text("the first worker's training\n")
        keep = first.parent / "kept"
        shutil.copytree(first, keep)  # left for collection, as LeftForCollectionError leaves it
    keep.rename(first)
    assert queue.release(db, job_id=job_id, worker_id="first", attempt=1, reason="shut down")
    assert queue.claim(db, worker_id="replica", lease_seconds=60) is not None  # attempt 1 again
    with attempt_folder(settings, job_id, 1, "replica") as mine:
        assert mine != first and list(mine.iterdir()) == []
        assert collect_lost_attempts(db, settings) == [first]  # the stopped attempt's
        assert mine.is_dir()  # the live one is left alone


def test_a_job_whose_data_left_the_allowed_folders_fails_before_training(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    """A schedule made before URNN_JOB_DATA_DIRS was set still names its old path."""
    settings = worker_settings(tmp_path, mlflow_settings, job_data_dirs=str(tmp_path / "only"))
    job = run_one_job(settings, tiny_spec(ett_csv))
    assert job.status == "failed"
    assert job.error == (
        f"not started: field 'data': {ett_csv}: outside the folders jobs may read "
        f"(URNN_JOB_DATA_DIRS: {tmp_path / 'only'})"
    )
    assert "launching" not in (job.log_tail or "")
    # one line saying why, as the 422 at submission would have: no traceback of the worker
    assert job.log_tail is not None and job.log_tail.splitlines()[-1] == job.error
    assert "Traceback" not in job.log_tail


def test_a_job_whose_data_file_went_away_after_submission_fails_naming_the_field(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings
) -> None:
    """On the end-to-end walk a job's file was removed between POST /jobs (which had checked
    it) and its run: the job failed with `urnn train exited with code 2: urnn train: error:
    --data ...: no such file`, an option the API's user never typed, after launching a
    training process for nothing. Now it fails before launching, naming the job's field and
    what to do, as the 422 at submission names it."""
    gone = tmp_path / "gone.csv"
    shutil.copy(ett_csv, gone)
    spec = tiny_spec(gone)
    gone.unlink()
    job = run_one_job(worker_settings(tmp_path, mlflow_settings), spec)
    assert job.status == "failed"
    assert job.error == (
        f"not started: field 'data': {gone}: no such file (it was readable when the job was "
        "submitted): put the file back, or submit the job again (PATCH a schedule's job) "
        "with `data` naming where the file is now"
    )
    assert "launching" not in (job.log_tail or "")
    assert job.log_tail is not None and job.log_tail.splitlines()[-1] == job.error


def test_the_childs_output_is_logged_with_the_settings_secrets_masked(tmp_path: Path) -> None:
    """An audit's finding: `urnn train` printed the tracking URI whole ('MLflow: runs logged
    ... in postgresql+psycopg://postgres:hunter2@...'), so a job's log tail, which GET /jobs
    answers without a key by default, held the store's password; MLflow's 'View run' line
    prints a tracking server's user:password@ too. The worker now masks every secret of its
    settings in the child's output (log tail, worker log, the run's job/ log)."""
    import sys
    from collections import deque

    from pydantic import SecretStr

    from jobs.worker import _launch, _pipe_to_log
    from urnn_forecast.url_text import secret_masker

    settings = Settings(
        var_dir=tmp_path / "var",
        mlflow_tracking_uri="postgresql+psycopg://mlflow:hunter2@db:5432/mlflow",
        mlflow_artifact_root="https://user:t%40ken-9@store/artifacts",
        database_url="postgresql+psycopg://urnn@db/urnn?password=pg-pass-1",
        api_key=SecretStr("the-api-key-1"),
    )
    printed = [
        "in postgresql+psycopg://mlflow:hunter2@db:5432/mlflow",
        "View run job-1 at: https://user:t%40ken-9@store/#/experiments/1",
        "decoded t@ken-9, query pg-pass-1, key the-api-key-1",
        "nothing secret here",
    ]
    script = "import sys; print(sys.argv[1])"
    process = _launch([sys.executable, "-c", script, "\n".join(printed)], settings)
    output: deque[str] = deque(maxlen=10)
    context = _context()
    _pipe_to_log(process, context, output, tmp_path / "attempt-1.log", secret_masker(settings))
    assert process.wait(timeout=30) == 0
    assert list(output) == [
        "in postgresql+psycopg://mlflow:***@db:5432/mlflow",
        "View run job-1 at: https://user:***@store/#/experiments/1",
        "decoded ***, query ***, key ***",
        "nothing secret here",
    ]
    assert context.lines == list(output)  # type: ignore[attr-defined]
    logged = (tmp_path / "attempt-1.log").read_text()
    for secret in ("hunter2", "t%40ken-9", "t@ken-9", "pg-pass-1", "the-api-key-1"):
        assert secret not in logged
    plain = Settings(var_dir=tmp_path / "var")  # nothing to mask: lines as they are
    assert secret_masker(plain)(printed[0]) == printed[0]


def test_short_and_name_like_passwords_are_masked_where_written_as_passwords(
    tmp_path: Path,
) -> None:
    """A review's findings on the masking: docker-compose's default password 'urnn' (also the
    user and database name) masked every 'urnn' in a log ('***_forecast/cli.py'), and a
    password under 4 characters was not masked at all, not even in MLflow's 'View run' URL."""
    from urnn_forecast.url_text import secret_masker

    compose = secret_masker(
        Settings(
            var_dir=tmp_path / "var",
            database_url="postgresql+psycopg://urnn:urnn@postgres:5432/urnn",
            mlflow_tracking_uri="http://admin:abc@mlflow:5000",
        )
    )
    assert compose('File "/app/urnn_forecast/cli.py", line 3') == (
        'File "/app/urnn_forecast/cli.py", line 3'
    )
    assert compose("urnn train: epoch 3/20") == "urnn train: epoch 3/20"
    assert compose("db postgresql+psycopg://urnn:urnn@postgres:5432/urnn") == (
        "db postgresql+psycopg://urnn:***@postgres:5432/urnn"
    )
    assert compose("View run x at: http://admin:abc@mlflow:5000/#/experiments/1") == (
        "View run x at: http://admin:***@mlflow:5000/#/experiments/1"
    )
    assert compose("abc and cab stay") == "abc and cab stay"
    queried = secret_masker(
        Settings(var_dir=tmp_path / "var", database_url="postgresql://u@db/m?password=pw1")
    )
    assert queried("dsn host=db password=pw1 user=u") == "dsn host=db password=*** user=u"
    # a second review: a '=' after any key masked names ('dbname=***'); quoted forms leaked;
    # 'postgres' as a password was never masked on its own (a substring of 'postgresql'),
    # and is now masked as a word only
    assert compose("host=postgres dbname=urnn user=urnn") == "host=postgres dbname=urnn user=urnn"
    assert compose("password='urnn' PGPASSWORD=\"urnn\"") == "password='***' PGPASSWORD=\"***\""
    assert compose("password: abc") == "password: ***"
    named = secret_masker(
        Settings(
            var_dir=tmp_path / "var",
            mlflow_tracking_uri="postgresql+psycopg://admin:postgres@db/urnn",
        )
    )
    assert named("the password is postgres.") == "the password is ***."
    assert named("postgresql+psycopg://admin:postgres@db") == "postgresql+psycopg://admin:***@db"


def test_the_child_reads_the_file_the_worker_checked_not_the_link(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job data paths are stored as given (a link `current.csv` re-pointed at each export),
    and the worker checks where the link points against URNN_JOB_DATA_DIRS before each run.
    The child was handed the link itself, so a link re-pointed outside the folders between
    that check and the child's read (seconds: the child imports torch first) was read, and
    its lines quoted in the job's error. The child is now handed the file that was checked."""
    import jobs.worker as worker_module

    folder, outside = tmp_path / "only", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    export = folder / "export-1.csv"
    export.write_bytes(ett_csv.read_bytes())
    secret = outside / "secret.csv"
    secret.write_text("password\nhunter2\n")
    link = folder / "current.csv"
    link.symlink_to(export)
    launched: list[list[str]] = []

    def repointed_then_launch(command: list[str], settings: Settings) -> Any:
        link.unlink()  # after the worker's check, before the child opens the file
        link.symlink_to(secret)
        launched.append(command)
        raise RuntimeError("stopped before the child ran")

    monkeypatch.setattr(worker_module, "_launch", repointed_then_launch)
    settings = worker_settings(tmp_path, mlflow_settings, job_data_dirs=str(folder))
    job = run_one_job(settings, tiny_spec(link))
    assert job.status == "failed" and len(launched) == 1
    data = launched[0][launched[0].index("--data") + 1]
    assert Path(data).resolve() == export.resolve()  # not the secret the link names now


def test_a_target_column_that_starts_with_a_dash_reaches_the_child_as_its_value(
    tmp_path: Path, ett_csv: Path, mlflow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker passed the target as a separate argument after `--target`, so a column
    named '-HUFL' (accepted at submission: it is a column of the file) was read by the child's
    argparse as an option, and the job failed with 'argument --target: expected one
    argument'. A value from the request must never be able to read as an option of the child."""
    import jobs.worker as worker_module
    from urnn_forecast.cli import build_parser

    data = tmp_path / "dashed.csv"
    data.write_text(ett_csv.read_text().replace(",HUFL,", ",-HUFL,", 1))
    launched: list[list[str]] = []

    def launch(command: list[str], settings: Settings) -> Any:
        launched.append(command)
        raise RuntimeError("stopped before the child ran")

    monkeypatch.setattr(worker_module, "_launch", launch)
    settings = worker_settings(tmp_path, mlflow_settings)
    job = run_one_job(settings, tiny_spec(data, target="-HUFL", covariates=["OT"]))
    assert job.status == "failed" and len(launched) == 1
    command = launched[0]
    argv = command[command.index("urnn_forecast.cli") + 1 :]
    assert build_parser().parse_args(argv).target == "-HUFL"


def test_the_training_child_gets_no_api_key_nor_the_job_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training child inherited the worker's whole environment: URNN_API_KEY (which lets
    anyone holding it submit jobs and reload models) and the job database's URL (its
    password), though `urnn train` uses neither; code in a training run (a model's or a
    data file's) could read them. What training does use stays: the tracking URI and the
    other URNN_* settings, MLflow's own variables, PATH."""
    import sys

    from pydantic import SecretStr

    from jobs.worker import _launch

    monkeypatch.setenv("URNN_API_KEY", "the-api-key-1")
    monkeypatch.setenv("urnn_api_key", "the-api-key-2")  # pydantic-settings reads any case
    monkeypatch.setenv("URNN_API_KEY_FOR_READS", "true")
    monkeypatch.setenv("URNN_DATABASE_URL", "postgresql+psycopg://urnn:pg-pass-1@db/urnn")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tracking-token-1")
    settings = Settings(
        var_dir=tmp_path / "var",
        mlflow_tracking_uri="http://mlflow:5000",
        database_url="postgresql+psycopg://urnn:pg-pass-1@db/urnn",
        api_key=SecretStr("the-api-key-1"),
        api_key_for_reads=True,
    )
    script = (
        "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
        "if k.upper().startswith(('URNN_', 'MLFLOW_'))}))"
    )
    process = _launch([sys.executable, "-c", script], settings)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    seen = json.loads(out)
    for name in ("URNN_API_KEY", "urnn_api_key", "URNN_API_KEY_FOR_READS", "URNN_DATABASE_URL"):
        assert name not in seen, name
    assert "the-api-key" not in out and "pg-pass-1" not in out
    assert seen["URNN_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert seen["MLFLOW_TRACKING_TOKEN"] == "tracking-token-1"  # the tracking server's own
    assert seen["URNN_VAR_DIR"] == str(tmp_path / "var")


def test_a_tracking_uri_with_a_mistyped_scheme_is_masked_in_a_jobs_output(
    tmp_path: Path,
) -> None:
    """URNN_MLFLOW_TRACKING_URI=mluser:pw@host:5000 (the http:// left out): MLflow refuses it
    quoting it whole, and that line became the job's error and log tail (GET /jobs, open by
    default) with the password: the masking found no password without a scheme."""
    from urnn_forecast.url_text import secret_masker

    mask = secret_masker(
        Settings(var_dir=tmp_path / "var", mlflow_tracking_uri="mluser:s3cr3t-pw@mlflow:5000")
    )
    line = "got unsupported URI 'mluser:s3cr3t-pw@mlflow:5000' for model registry data storage"
    assert "s3cr3t-pw" not in mask(line) and "@mlflow:5000" in mask(line), mask(line)
