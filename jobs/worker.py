"""`urnn worker`: claim a queued job, keep its lease alive, train, record the outcome. Repeat.

    worker = Worker(Database.from_settings(settings), settings)
    worker.run_once()          # schedules tick, expired leases recovered, one job claimed and run
    worker.run()               # until SIGTERM/SIGINT (install_signal_handlers) or request_stop()

While a job runs, a heartbeat thread renews its lease every `job_heartbeat_seconds` and reads
the job's cancel flag. The training runs as a child process group (`train_in_child`), which
the executor terminates as soon as `should_stop` answers True, wherever the training is: a
cancel is honoured within about one heartbeat. Outcomes:

- the executor returns: succeeded, with the MLflow run id, registered version and promotion;
- it raises: failed, with the error (no retry: a bad file or a diverging model fails again);
- a cancel was requested: cancelled;
- a timeout (`job_timeout_seconds`): the child is terminated, failed, "timed out";
- the child exits non-zero or is killed (out of memory): failed, with the line that says why;
- SIGTERM: the child is terminated and the job goes back to the queue without spending an
  attempt; the worker exits;
- the worker dies (SIGKILL, lost machine): its lease expires and any worker's next
  `recover_expired` requeues it (or fails it after `max_attempts` claims).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from jobs import queue, schedules
from jobs.db import Database
from jobs.models import Job
from jobs.spec import JobSpec
from urnn_forecast.settings import Settings

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 60
QUIET_ARTIFACTS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class JobInterruptedError(RuntimeError):
    """The executor stopped early because `should_stop` answered True."""


@dataclass(frozen=True)
class JobOutcome:
    mlflow_run_id: str | None = None
    registered_name: str | None = None
    registered_version: str | None = None
    promoted: bool | None = None
    message: str | None = None  # e.g. the promotion decision's reason


@dataclass
class JobContext:
    """What an executor gets: the job, a stop check to poll, and a log for the job's tail."""

    job_id: str
    attempt: int
    spec: JobSpec
    should_stop: Callable[[], bool]
    log: Callable[[str], None]
    # the attempt's MLflow run, recorded on the job as soon as it exists
    on_run_started: Callable[[str], None] = lambda run_id: None


Executor = Callable[[JobContext], JobOutcome]


def train_executor(settings: Settings) -> Executor:
    """The real executor: `urnn train` with the job's spec, in a child process group
    (`train_in_child`)."""

    def execute(context: JobContext) -> JobOutcome:
        return train_in_child(context, settings)

    return execute


def train_in_child(context: JobContext, settings: Settings) -> JobOutcome:
    """`urnn train` as a child process group of this worker (under torchrun with the spec's
    `nproc` processes when above 1): its output goes to the job's log, the MLflow run is
    recorded on the job as soon as the child writes its id (--started-json), rank 0 writes the
    outcome as JSON (--result-json).

    Why a child process, even for one: a stop (cancel, timeout, worker shutdown) must stop the
    job wherever it is. In the worker's own thread a job stuck outside the training loop (a
    data file on a hung mount, a tracking server that does not answer) never polled its stop
    check, kept its lease alive through the heartbeat and stayed `running` for ever; a child's
    group is terminated (SIGTERM, then SIGKILL after 10 s) and its MLflow run marked KILLED.
    A crash of the training (out of memory, a fault in compiled code) fails the job instead of
    taking the worker down with it."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from training.distributed import launch_command

    spec = context.spec
    config = spec.train_config()  # checked again: the file may have changed since submission
    context.log(
        f"training {config.model.kind} (lookback {config.model.lookback}, horizon "
        f"{config.model.horizon}) on {config.data}, target {config.load.target!r}"
    )
    with tempfile.TemporaryDirectory(prefix=f"urnn-job-{context.job_id[:8]}-") as tmp:
        sections = {name: dict(values) for name, values in spec.config.items()}
        sections.setdefault("train", {}).update(
            promote=spec.promote, run_name=f"job-{context.job_id[:8]}"
        )
        config_file, result_file = Path(tmp) / "config.json", Path(tmp) / "result.json"
        started_file = Path(tmp) / "started.json"
        config_file.write_text(json.dumps(sections))
        argv = ["train", "--data", spec.data, "--target", spec.target]
        if spec.covariates:
            argv += ["--covariates", ",".join(spec.covariates)]
        argv += ["--config", str(config_file), "--device", config.fit.device]
        argv += ["--result-json", str(result_file), "--started-json", str(started_file)]
        if spec.nproc > 1:
            command = launch_command(spec.nproc, argv)
            context.log(f"launching {spec.nproc} processes: {' '.join(command)}")
        else:
            command = [sys.executable, "-m", "urnn_forecast.cli", *argv]
            context.log(f"launching: {' '.join(command)}")
        process = subprocess.Popen(
            command,
            # MLflow's artifact progress bars would fill the job's 60-line log tail
            env={**os.environ, **settings.environment(), QUIET_ARTIFACTS: "false"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # one process group: a stop terminates every rank
            preexec_fn=_die_with_parent(),
        )
        output: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        reader = threading.Thread(target=_pipe_to_log, args=(process, context, output), daemon=True)
        reader.start()
        run_id: str | None = None
        while process.poll() is None:
            if run_id is None and started_file.exists():
                run_id = str(json.loads(started_file.read_text())["run_id"])
                context.on_run_started(run_id)
            if context.should_stop():
                _terminate_group(process)
                reader.join(timeout=5)
                if run_id is not None:
                    end_run_killed(settings, run_id)
                raise JobInterruptedError(f"stopped the training process group of {spec.nproc}")
            time.sleep(0.2)
        reader.join(timeout=5)
        if run_id is None and started_file.exists():  # a run too quick for the loop above
            run_id = str(json.loads(started_file.read_text())["run_id"])
            context.on_run_started(run_id)
        if process.returncode != 0:
            if run_id is not None:
                end_run_killed(settings, run_id)
            raise RuntimeError(_child_failure(process.returncode, output))
        outcome = json.loads(result_file.read_text())
    return JobOutcome(
        mlflow_run_id=outcome["run_id"],
        registered_name=outcome["registered_name"],
        registered_version=outcome["version"],
        promoted=outcome["promoted"],
        message=outcome["reason"],
    )


def _child_failure(returncode: int, output: deque[str]) -> str:
    """The job's error for a child that failed: its exit, and the line that says why (the
    CLI's `urnn train: error: ...`, else a traceback's last line, else the last line)."""
    if returncode < 0:
        how = f"was killed by {signal.Signals(-returncode).name}"
        if -returncode == signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = f"exited with code {returncode}"
    lines = [line for line in output if line.strip()]
    said = next((line for line in reversed(lines) if ": error: " in line), None)
    if said is None and lines:
        said = lines[-1]
    return f"urnn train {how}" + (f": {said.strip()}" if said else "")


def end_run_killed(settings: Settings, run_id: str) -> None:
    """Mark an MLflow run that is still RUNNING as KILLED, as MLflow does for a run whose
    process was killed (it would show RUNNING for ever). Best effort: a store that cannot be
    reached now leaves it as it is, and says so."""
    try:
        import mlflow

        from urnn_forecast.tracking import check_tracking_server

        check_tracking_server(settings)
        client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
            logger.info("MLflow run %s of a stopped attempt marked KILLED", run_id)
    except Exception as error:  # the queue must go on whatever the tracking store says
        logger.warning("MLflow run %s of a stopped attempt left as it is: %s", run_id, error)


def _pipe_to_log(process: Any, context: JobContext, output: deque[str]) -> None:
    for line in process.stdout:
        if line.strip():
            output.append(line.rstrip())
            context.log(line.rstrip())


def _terminate_group(process: Any, grace_seconds: float = 10.0) -> None:
    import subprocess

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a preexec_fn that has torchrun get SIGTERM if this worker dies (even by SIGKILL),
    so no orphaned ranks train on after their job went to another worker. The C function is
    looked up here, in the parent: the child between fork and exec must not import or lock."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return set_death_signal


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _TailHandler(logging.Handler):
    """Copies log records emitted by one thread (the job's) into the job's log tail."""

    def __init__(self, thread_id: int, lines: deque[str]) -> None:
        super().__init__(level=logging.INFO)
        self.thread_id = thread_id
        self.lines = lines
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # The job's own log() lines are already in the tail.
        if record.thread == self.thread_id and record.name != __name__:
            self.lines.append(self.format(record))


@dataclass
class _Attempt:
    """One running attempt: the worker's view of its lease."""

    job_id: str
    number: int
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() past which it is stopped (timeout)

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def tail(self) -> str:
        return "\n".join(self.lines)


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        executor: Executor | None = None,
        worker_id: str | None = None,
        scheduler: bool = True,
    ) -> None:
        self.db = db
        self.settings = settings
        self.executor = executor or train_executor(settings)
        self.worker_id = worker_id or default_worker_id()
        self.scheduler = scheduler  # tick the schedules between jobs
        self._stopping = threading.Event()

    # --- the loop ----------------------------------------------------------------------------

    def run_once(self) -> str | None:
        """Tick schedules, recover expired leases, claim and run one job; its id or None."""
        if self.scheduler:
            for job_id in schedules.enqueue_due(
                self.db, max_attempts=self.settings.job_max_attempts
            ):
                logger.info("scheduled run enqueued as job %s", job_id)
        for recovered in queue.recover_expired(self.db):
            logger.warning("job %s: %s -> %s", recovered.id, recovered.error, recovered.status)
            if recovered.mlflow_run_id is not None:
                self._end_lost_run(recovered.mlflow_run_id)
        if self._stopping.is_set():
            return None
        job = queue.claim(
            self.db, worker_id=self.worker_id, lease_seconds=self.settings.job_lease_seconds
        )
        if job is None:
            return None
        self._execute(job)
        return job.id

    def run(self, *, max_jobs: int | None = None, until_idle: bool = False) -> int:
        """Loop until stopped (or `max_jobs` ran, or the queue is empty with `until_idle`)."""
        done = 0
        logger.info(
            "worker %s started on %s", self.worker_id, self.db.engine.url.render_as_string()
        )
        while not self._stopping.is_set():
            if max_jobs is not None and done >= max_jobs:
                break
            job_id = self.run_once()
            if job_id is not None:
                done += 1
                continue
            if until_idle:
                break
            self._stopping.wait(self.settings.worker_poll_seconds)
        logger.info("worker %s stopped after %d job(s)", self.worker_id, done)
        return done

    def request_stop(self) -> None:
        """Finish up: a running job is interrupted and requeued, no new job is claimed."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.warning("worker %s: %s, stopping", self.worker_id, signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # --- one job -----------------------------------------------------------------------------

    def _execute(self, job: Job) -> None:
        timeout = self.settings.job_timeout_seconds
        attempt = _Attempt(
            job_id=job.id,
            number=job.attempts,
            deadline=None if timeout is None else time.monotonic() + timeout,
        )
        handler = _TailHandler(threading.get_ident(), attempt.lines)
        logging.getLogger().addHandler(handler)
        beat = threading.Thread(
            target=self._heartbeat, args=(attempt,), name=f"heartbeat-{job.id[:8]}", daemon=True
        )
        beat.start()

        def should_stop() -> bool:
            return (
                attempt.cancel.is_set()
                or attempt.lost.is_set()
                or self._stopping.is_set()
                or attempt.timed_out()
            )

        def log(message: str) -> None:
            attempt.lines.append(message)
            logger.info("job %s: %s", job.id, message)

        fence: dict[str, Any] = {
            "job_id": job.id,
            "worker_id": self.worker_id,
            "attempt": attempt.number,
        }
        try:
            log(f"attempt {attempt.number}/{job.max_attempts} on worker {self.worker_id}")
            try:
                spec = JobSpec.model_validate(job.spec)

                def record_run(run_id: str) -> None:
                    log(f"MLflow run {run_id}")
                    queue.record_run(self.db, **fence, run_id=run_id)

                context = JobContext(job.id, attempt.number, spec, should_stop, log, record_run)
                outcome = self.executor(context)
            except Exception as error:
                interrupted = isinstance(error, JobInterruptedError) or should_stop()
                if interrupted and attempt.lost.is_set():
                    logger.warning("job %s: lease lost; another worker owns it now", job.id)
                elif interrupted and attempt.cancel.is_set():
                    log("cancelled while running")
                    queue.finish(
                        self.db,
                        **fence,
                        status="cancelled",
                        error="cancelled while running",
                        log_tail=attempt.tail(),
                    )
                elif interrupted and attempt.timed_out():
                    reason = (
                        f"timed out: stopped after URNN_JOB_TIMEOUT_SECONDS={timeout:g} s of "
                        "this attempt"
                    )
                    log(reason)
                    queue.finish(
                        self.db, **fence, status="failed", error=reason, log_tail=attempt.tail()
                    )
                elif interrupted and self._stopping.is_set():
                    reason = f"requeued: worker {self.worker_id} shut down during attempt"
                    log(reason)
                    queue.release(self.db, **fence, reason=reason, log_tail=attempt.tail())
                else:
                    logger.exception("job %s failed", job.id)
                    for line in traceback.format_exc().splitlines()[-15:]:
                        attempt.lines.append(line)
                    queue.finish(
                        self.db,
                        **fence,
                        status="failed",
                        error=f"{type(error).__name__}: {error}",
                        log_tail=attempt.tail(),
                    )
                return
            if not queue.finish(
                self.db,
                **fence,
                status="succeeded",
                mlflow_run_id=outcome.mlflow_run_id,
                registered_name=outcome.registered_name,
                registered_version=outcome.registered_version,
                promoted=outcome.promoted,
                log_tail=attempt.tail(),
            ):
                logger.warning("job %s finished after its lease was lost; not recorded", job.id)
        finally:
            attempt.done.set()
            beat.join()
            logging.getLogger().removeHandler(handler)

    def _end_lost_run(self, run_id: str) -> None:
        """A lost attempt's MLflow run would show RUNNING for ever (its process is gone)."""
        end_run_killed(self.settings, run_id)

    def _heartbeat(self, attempt: _Attempt) -> None:
        interval = self.settings.job_heartbeat_seconds
        while True:
            try:
                beat = queue.heartbeat(
                    self.db,
                    job_id=attempt.job_id,
                    worker_id=self.worker_id,
                    attempt=attempt.number,
                    lease_seconds=self.settings.job_lease_seconds,
                    log_tail=attempt.tail(),
                )
            except Exception:  # a database hiccup: try again; the lease outlives a few misses
                logger.exception("job %s: heartbeat failed", attempt.job_id)
            else:
                if not beat.alive:
                    attempt.lost.set()
                    return
                if beat.cancel_requested:
                    attempt.cancel.set()
            if attempt.done.wait(interval):
                return
