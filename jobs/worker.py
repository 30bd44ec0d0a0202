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
  `recover_expired` requeues it (or fails it after `max_attempts` claims); the next worker on
  the same var_dir attaches the lost attempt's log to its run (`collect_lost_attempts`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)

from jobs import queue, schedules
from jobs.db import POSTGRES_READ_ONLY, Database
from jobs.models import WORKER_ID_WIDTH, Job
from jobs.spec import JobSpec, JobSpecError, inside_data_folders
from urnn_forecast.checkpoints import remove_checkpoints, run_checkpoints
from urnn_forecast.field_types import shown
from urnn_forecast.settings import Settings
from urnn_forecast.url_text import secret_masker

logger = logging.getLogger(__name__)

# What the database refuses for the values themselves, not for its state: the same write fails
# again however long the worker waits.
UNSTORABLE = (DataError, IntegrityError)
T = TypeVar("T")

LOG_TAIL_LINES = queue.LOG_TAIL_LINES
QUIET_ARTIFACTS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class JobInterruptedError(RuntimeError):
    """The executor stopped early because `should_stop` answered True."""


class LeftForCollectionError(JobInterruptedError):
    """Stopped by the worker's shutdown, the attempt's MLflow bookkeeping not done: its folder
    is kept for `collect_lost_attempts`, which the worker runs once the job is requeued."""


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
    # whether the stop asked is the worker's shutdown alone (no cancel, timeout or lost lease)
    shutting_down: Callable[[], bool] = lambda: False
    # the worker holding the attempt: its files are that worker's (attempt_folder)
    worker_id: str = ""


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
    process tree is terminated (SIGTERM, then SIGKILL after 10 s: `_terminate_tree`) and its
    MLflow run marked KILLED, unless the run is already registering its model (`_supervise`).
    A crash of the training (out of memory, a fault in compiled code) fails the job instead of
    taking the worker down with it."""
    import sys

    from training.distributed import launch_command
    from training.run_notes import job_run_name

    spec = context.spec
    data = spec.data  # stored as given: a link (current.csv) is read where it points now
    folders = settings.job_data_folders()
    if folders is not None:  # a schedule made before URNN_JOB_DATA_DIRS, a link re-pointed
        # the child reads the file checked, not the link: re-pointed outside between this
        # check and the child's read (seconds: it imports torch first), the link was read
        data = str(inside_data_folders(Path(spec.data), spec.data, folders))
    if not Path(data).exists():  # checked at submission, gone since (moved, cleaned up)
        # said here in the job's terms: the child's own error named `--data`, an option the
        # API's user never typed, after starting a training process (torch's import) for it
        raise JobSpecError(
            "data",
            f"{data}: no such file (it was readable when the job was submitted): put the file "
            "back, or submit the job again (PATCH a schedule's job) with `data` naming where "
            "the file is now",
        )
    config = spec.train_config()  # checked again: the file may have changed since submission
    context.log(
        f"training {config.model.kind} (lookback {config.model.lookback}, horizon "
        f"{config.model.horizon}) on {config.data}, target {config.load.target!r}"
    )
    with attempt_folder(settings, context.job_id, context.attempt, context.worker_id) as tmp:
        sections = {name: dict(values) for name, values in spec.config.items()}
        sections.setdefault("train", {}).update(
            promote=spec.promote,
            run_name=job_run_name(context.job_id, config.model, config.load.target),
        )
        if spec.covariates:  # in the file, not --covariates, which splits names at commas
            sections.setdefault("load", {})["covariates"] = list(spec.covariates)
        config_file, result_file = Path(tmp) / "config.json", Path(tmp) / "result.json"
        started_file = Path(tmp) / "started.json"
        config_file.write_text(json.dumps(sections))
        # `--target=VALUE`, one argument: a column named '-HUFL' (a value from the request)
        # given as its own argument read as an option of the child's argparse, which failed
        # the job. `data` is absolute (validate_spec), so it cannot start with '-'.
        argv = ["train", "--data", data, f"--target={spec.target}"]
        # the job's own fit.device, else the worker's URNN_DEVICE (a worker pinned to the CPU
        # trained its jobs on "auto", a GPU where there was one)
        device = spec.config.get("fit", {}).get("device", settings.device)
        argv += ["--config", str(config_file), "--device", str(device)]
        argv += ["--result-json", str(result_file), "--started-json", str(started_file)]
        if spec.nproc > 1:
            command = launch_command(spec.nproc, argv)
            context.log(f"launching {spec.nproc} processes: {' '.join(command)}")
        else:
            command = [sys.executable, "-m", "urnn_forecast.cli", *argv]
            context.log(f"launching: {' '.join(command)}")
        process = _launch(command, settings)
        output: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        full_log = Path(tmp) / f"attempt-{context.attempt}.log"
        reader = threading.Thread(
            target=_pipe_to_log,
            args=(process, context, output, full_log, secret_masker(settings)),
            daemon=True,
        )
        reader.start()
        markers = _ChildMarkers(started_file)
        try:
            _supervise(process, context, markers, result_file)
        except BaseException:
            _terminate_tree(process)  # never leave a training running unsupervised
            reader.join(timeout=5)
            markers.update(context)  # a run that started in the last poll interval
            if markers.run_id is not None:
                if context.shutting_down():
                    # The requeue first: the bookkeeping below took 15 s on a busy machine
                    # (importing MLflow alone 4-11 s), and a stop grace shorter than that
                    # SIGKILLed the worker before it had given the job back, which then
                    # waited out its lease and spent an attempt.
                    raise LeftForCollectionError(
                        f"stopped the training of job {context.job_id} (worker shutdown)"
                    ) from None
                _say_removed(context, end_run_killed(settings, markers.run_id))
                attach_log(settings, markers.run_id, full_log)
            raise
        reader.join(timeout=5)
        markers.update(context)
        if markers.run_id is not None:
            attach_log(settings, markers.run_id, full_log)
        if process.returncode != 0:
            if markers.run_id is not None:
                _say_removed(context, end_run_killed(settings, markers.run_id))
            raise ChildFailedError(_child_failure(process.returncode, output))
        if context.should_stop():
            context.log("the run finished before it could be stopped: recorded as it ended")
        outcome = json.loads(result_file.read_text())
    return JobOutcome(
        mlflow_run_id=outcome["run_id"],
        registered_name=outcome["registered_name"],
        registered_version=outcome["version"],
        promoted=outcome["promoted"],
        message=outcome["reason"],
    )


def _say_removed(context: JobContext, removed: list[Path]) -> None:
    """A stopped `urnn train` names its best-so-far checkpoint as kept (as it is for a user at
    a terminal); the job's log must then say the worker removed it. It promises no retry: a
    cancelled, timed-out or failed job gets none (it said "a retry starts afresh")."""
    for path in removed:
        context.log(
            f"removed {path}, this attempt's checkpoint (jobs do not resume from a checkpoint)"
        )


ATTEMPTS_FOLDER = "job-attempts"


def worker_token(worker_id: str) -> str:
    """The worker's part of an attempt folder's name: a digest, since a worker id holds a
    host name."""
    return hashlib.sha256(worker_id.encode()).hexdigest()[:12]


@contextlib.contextmanager
def attempt_folder(
    settings: Settings, job_id: str, attempt: int, worker_id: str = ""
) -> Iterator[Path]:
    """The attempt's files (its config, the child's markers and result, its whole log) in
    `<var_dir>/job-attempts/<job id>/attempt-<n>-<worker token>/`, removed when it ends.

    Why not a temporary folder: a worker killed outright (SIGKILL, out of memory) leaves it
    behind, and with it the only whole copy of the lost attempt's log. Under the worker's own
    var_dir, the next worker there (a restart, or a replica on the same volume) finds it,
    attaches the log to the lost attempt's run and removes it (`collect_lost_attempts`).

    Why the worker in the name: a shutdown hands the job back without spending its attempt,
    so the worker that claims it next runs the same attempt number. Named `attempt-<n>` alone,
    a replica on the same volume that claimed it before the first had done its bookkeeping
    (seconds: importing MLflow) took over the first's folder: its stale started.json recorded
    the stopped run as the new attempt's, its log was appended to, and the stopped run was
    never marked KILLED nor given its log, the job being "running attempt n" again."""
    name = f"attempt-{attempt}-{worker_token(worker_id)}" if worker_id else f"attempt-{attempt}"
    folder = settings.var_dir / ATTEMPTS_FOLDER / job_id / name
    folder.mkdir(parents=True, exist_ok=True)
    kept = False
    try:
        yield folder
    except LeftForCollectionError:
        kept = True  # its run is ended and its log attached after the requeue
        raise
    finally:
        if not kept:
            _remove_attempt(folder)


def collect_lost_attempts(db: Database, settings: Settings) -> list[Path]:
    """Folders of attempts that ended with their worker: the log attached to the attempt's
    MLflow run (named by the child's own marker file), then the folder removed. An attempt
    whose job is still running it is left alone, and so is one whose job this database does
    not hold (workers of another job database sharing the var_dir). Best effort: an error is
    logged, never raised (the worker's loop must go on). Returns the folders it removed."""
    root = settings.var_dir / ATTEMPTS_FOLDER
    removed: list[Path] = []
    try:
        folders = sorted(root.glob("*/attempt-*"))
    except OSError as error:
        logger.warning("cannot list %s: %s", root, error)
        return removed
    for folder in folders:
        try:
            if _collect(db, settings, folder):
                removed.append(folder)
        except Exception as error:  # a database hiccup: the next poll tries again
            logger.warning("lost attempt %s not collected yet: %s", folder, error)
    return removed


def _collect(db: Database, settings: Settings, folder: Path) -> bool:
    job_id = folder.parent.name
    number, _, token = folder.name.removeprefix("attempt-").partition("-")
    if not number.isdigit():
        return False
    attempt = int(number)
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            return False  # another job database's, on a shared var_dir: not ours to judge
        live = job.status == "running" and job.attempts == attempt
        if live and (not token or token == worker_token(job.worker_id or "")):
            return False  # a live attempt (this worker's, or another's on the same volume)
    markers = _ChildMarkers(folder / "started.json")
    with contextlib.suppress(OSError, ValueError):  # unreadable: the log has no run to go to
        markers.read()
    log = folder / f"attempt-{attempt}.log"
    if markers.run_id is not None:
        # a run still RUNNING is marked KILLED and its half-registered versions removed (a
        # shutdown leaves that for after the requeue; a lost worker's lease recovery has done
        # it already: then nothing changes)
        end_run_killed(settings, markers.run_id)
        if log.is_file():  # info: a routine shutdown comes here (a lost lease has warned)
            logger.info(
                "job %s: attempt %d was stopped or lost with its worker; attaching its log to "
                "MLflow run %s",
                job_id, attempt, markers.run_id,
            )  # fmt: skip
            attach_log(settings, markers.run_id, log)
    _remove_attempt(folder)
    return True


def _remove_attempt(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # the job's folder, once its last attempt is gone
        folder.parent.rmdir()


class ChildFailedError(RuntimeError):
    """`urnn train` exited non-zero or was killed; the message says how and why."""


# A stop that comes while the model is being logged and registered waits this long for the
# run to finish (registering takes seconds) before it stops the run anyway.
REGISTERING_GRACE_SECONDS = 120.0


@dataclass
class _ChildMarkers:
    """What `urnn train --started-json` has told the worker so far (cli._JobMarkers)."""

    path: Path
    run_id: str | None = None
    registering: bool = False
    recorded: bool = False
    _seen: tuple[int, int] | None = None  # (inode, mtime) of the version read last

    def read(self) -> None:
        """Read the file when it changed (the child replaces it whole, at most twice)."""
        try:  # each write is a new file renamed over the old: a new inode, whatever the clock
            stat = self.path.stat()
            changed: tuple[int, int] | None = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            changed = None
        if changed is not None and changed != self._seen:
            markers = json.loads(self.path.read_text())
            self.run_id = markers.get("run_id") or self.run_id
            self.registering = bool(markers.get("registering"))
            self._seen = changed

    def update(self, context: JobContext) -> None:
        """`read`, and record a new run id on the job (a database hiccup is logged and retried
        at the next poll, never allowed to orphan the training)."""
        self.read()
        if self.run_id is not None and not self.recorded:
            try:
                context.on_run_started(self.run_id)
                self.recorded = True
            except Exception as error:
                logger.warning(
                    "job %s: could not record MLflow run %s yet (%s); trying again",
                    context.job_id,
                    self.run_id,
                    error,
                )


def _supervise(
    process: Any, context: JobContext, markers: _ChildMarkers, result_file: Path
) -> None:
    """Poll the child until it exits; raise JobInterruptedError (after stopping it) when a stop
    is asked, unless the run is already registering its model or done, which it may finish."""
    deferred_at: float | None = None
    while process.poll() is None:
        markers.update(context)
        if context.should_stop():
            finishing = markers.registering or result_file.exists()
            if not finishing:
                raise JobInterruptedError(f"stopped the training of job {context.job_id}")
            if deferred_at is None:
                deferred_at = time.monotonic()
                context.log("stop asked while the model is being registered: letting it finish")
            elif time.monotonic() - deferred_at > REGISTERING_GRACE_SECONDS:
                raise JobInterruptedError(
                    f"stopped the training of job {context.job_id} after waiting "
                    f"{REGISTERING_GRACE_SECONDS:g} s for its registration"
                )
        time.sleep(0.2)


_TORCHRUN_SIGNAL = re.compile(r"Signal \d+ \((SIG[A-Z]+)\) received by PID")


def _child_failure(returncode: int, output: deque[str]) -> str:
    """The job's error for a child that failed: how it ended and, for an exit, the line that
    says why (the CLI's `urnn train: error: ...`, else the last line that is not a rule)."""
    lines = [line.strip() for line in output if line.strip(" =-_*\t")]
    if returncode < 0:
        return f"urnn train was killed by {_signal_name(signal.Signals(-returncode).name)}"
    # torchrun's report lists the other failures first and its "Root Cause (first observed
    # failure)" last: a rank that aborted is the cause, the rank it then SIGTERMed is not
    found = (m for line in reversed(lines) if (m := _TORCHRUN_SIGNAL.search(line)))
    rank_signal = next(found, None)
    if rank_signal is not None:  # torchrun's report on a rank that a signal ended
        return f"a training process was killed by {_signal_name(rank_signal.group(1))}"
    said = next((line for line in reversed(lines) if ": error: " in line), None)
    if said is None and lines:
        said = lines[-1]
    return f"urnn train exited with code {returncode}" + (f": {said}" if said else "")


def _signal_name(name: str) -> str:
    return f"{name} (out of memory?)" if name == "SIGKILL" else name


def end_run_killed(settings: Settings, run_id: str) -> list[Path]:
    """Mark an MLflow run that is still RUNNING as KILLED, as MLflow does for a run whose
    process was killed (it would show RUNNING for ever), and delete the versions it left
    half-registered (`remove_half_registered`). Best effort: a store that cannot be
    reached now leaves it as it is, and says so; bounded in time like `attach_log`. The
    attempt's best-so-far checkpoint goes too (a retry starts afresh; kept, a worker that
    stops jobs would fill the disk with them); the paths removed are returned."""
    _within(TRACKING_CALL_SECONDS, f"ending run {run_id}", _end_run_killed, settings, run_id)
    return _remove_attempt_checkpoints(settings, run_id)


def _remove_attempt_checkpoints(settings: Settings, run_id: str) -> list[Path]:
    removed = remove_checkpoints(run_checkpoints(settings.var_dir, run_id))
    for path in removed:
        logger.info("removed %s, the checkpoint of a stopped attempt", path)
    return removed


def _end_run_killed(settings: Settings, run_id: str) -> None:
    try:
        import mlflow

        from urnn_forecast.tracking import check_tracking_server

        check_tracking_server(settings)
        client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
            logger.info("MLflow run %s of a stopped attempt marked KILLED", run_id)
        # whatever the run's status: the promotion is decided after the run has ended, so an
        # attempt that died while comparing with the champion left a FINISHED run
        remove_half_registered(client, run_id)
    except Exception as error:  # the queue must go on whatever the tracking store says
        logger.warning("MLflow run %s of a stopped attempt left as it is: %s", run_id, error)


def finished_attempt(settings: Settings, run_id: str) -> JobOutcome | None:
    """What a lost attempt's `urnn train` did, when it had done everything before its worker
    was lost (killed while attaching the log or recording the outcome, after the training
    ended; a database that refused the outcome longer than the worker retried): its run
    FINISHED and every version it registered carries its promotion decision. Retried, such a
    job trained again and registered a second version of the same data (a twin of the
    champion it had just become, or of the one it lost to). None when the run did not get
    that far, or the tracking store cannot say in time (the attempt is retried, as before)."""
    found: list[JobOutcome] = []
    _within(TRACKING_CALL_SECONDS, f"reading run {run_id}", _finished_attempt, settings,
            run_id, found)  # fmt: skip
    return found[0] if found else None


def _finished_attempt(settings: Settings, run_id: str, found: list[JobOutcome]) -> None:
    from training.registry import DECISION_TAG, REASON_TAG

    try:
        import mlflow

        from urnn_forecast.tracking import check_tracking_server

        check_tracking_server(settings)
        client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
        if client.get_run(run_id).info.status != "FINISHED":
            return
        versions = [
            client.get_model_version(v.name, v.version)
            for v in client.search_model_versions(f"run_id = '{run_id}'")
        ]
        if len(versions) != 1 or DECISION_TAG not in (versions[0].tags or {}):
            return  # not registered, or left half-registered (remove_half_registered)
        (version,) = versions
        tags = version.tags or {}
        found.append(
            JobOutcome(
                mlflow_run_id=run_id,
                registered_name=str(version.name),
                registered_version=str(version.version),
                promoted=tags[DECISION_TAG] == "promoted",
                message=tags.get(REASON_TAG),
            )
        )
    except Exception as error:  # the store's answer decides nothing: retried as before
        logger.warning("MLflow run %s of a lost attempt not read: %s", run_id, error)


def remove_half_registered(client: Any, run_id: str) -> list[tuple[str, str]]:
    """Delete the model versions a dead attempt's run registered without finishing: every
    finished registration carries its promotion decision (`promotion.decision`, also when
    promotion was off), and a worker killed between creating the version and deciding left
    one behind, READY and 'challenger', with no backtest scores (its retry registered
    another). A version holding any other alias (champion) is kept and named in the log:
    serving may read it. The (name, version) pairs deleted."""
    from training.registry import CHALLENGER, DECISION_TAG

    removed = []
    for found in client.search_model_versions(f"run_id = '{run_id}'"):
        # a search answers no aliases: the version itself does
        version = client.get_model_version(found.name, found.version)
        if DECISION_TAG in (version.tags or {}):
            continue
        held = [a for a in (version.aliases or []) if a != CHALLENGER]
        if held:
            logger.warning(
                "model %s version %s of the stopped run %s has no promotion decision but holds "
                "alias(es) %s: kept; `urnn models list` shows it",
                version.name, version.version, run_id, ", ".join(held),
            )  # fmt: skip
            continue
        client.delete_model_version(version.name, version.version)
        removed.append((str(version.name), str(version.version)))
        logger.warning(
            "deleted model %s version %s: the stopped run %s registered it but never decided "
            "on its promotion (the attempt died while registering)",
            version.name, version.version, run_id,
        )  # fmt: skip
    return removed


# Settings the training child is not given, by name in any case (pydantic-settings reads
# URNN_* names case-insensitively): the API key (URNN_API_KEY*, its companion flag too) and
# the job database's URL, with its password. `urnn train` uses neither; inherited, any code a
# run executes (a data reader, a model's) could read them. docs/jobs.md lists them.
WITHHELD_FROM_TRAINING = ("URNN_API_KEY", "URNN_DATABASE_URL")


def child_environment(settings: Settings) -> dict[str, str]:
    """The training child's environment: the worker's, its settings as URNN_* variables (for
    torchrun's ranks), MLflow's artifact progress bars off (they would fill the job's 60-line
    log tail), less WITHHELD_FROM_TRAINING."""
    environment = {**os.environ, **settings.environment(), QUIET_ARTIFACTS: "false"}
    return {
        name: value
        for name, value in environment.items()
        if not name.upper().startswith(WITHHELD_FROM_TRAINING)
    }


def _launch(command: list[str], settings: Settings) -> Any:
    """The training child: its own process group, output read as text line by line."""
    import subprocess

    return subprocess.Popen(
        command,
        env=child_environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",  # a stray byte in the output must not stop the log's reader
        start_new_session=True,  # its own group: a terminal's Ctrl-C reaches the worker only
        preexec_fn=_die_with_parent(),
    )


def _pipe_to_log(
    process: Any,
    context: JobContext,
    output: deque[str],
    full_log: Path,
    mask: Callable[[str], str] = lambda line: line,
) -> None:
    """The child's output, line by line, each through `mask` (`secret_masker`): into the
    job's log tail, and whole into `full_log` (attached to the attempt's MLflow run at the end:
    the tail keeps only 60 lines)."""
    with full_log.open("a") as log_file:
        for line in process.stdout:
            line = mask(line)
            log_file.write(line)
            log_file.flush()
            if line.strip():
                output.append(line.rstrip())
                context.log(line.rstrip())


def attach_log(settings: Settings, run_id: str, full_log: Path) -> None:
    """The attempt's whole output as the run's artifact `job/<file>`; best effort (a store
    that cannot be reached leaves the run without it, and says so), and bounded in time."""
    _within(TRACKING_CALL_SECONDS, f"attaching the log to run {run_id}", _attach_log,
            settings, run_id, full_log)  # fmt: skip


# MLflow's client retries a degraded server for minutes; the job's outcome must not wait on it.
TRACKING_CALL_SECONDS = 20.0


def _within(seconds: float, what: str, call: Callable[..., None], *args: Any) -> None:
    """Run `call` in a daemon thread and wait at most `seconds` for it (it may go on in the
    background: only best-effort bookkeeping goes through here)."""
    thread = threading.Thread(target=call, args=args, name="urnn-tracking", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        logger.warning("%s: no answer from the tracking server in %g s; moving on", what, seconds)


def _attach_log(settings: Settings, run_id: str, full_log: Path) -> None:
    try:
        import mlflow

        from urnn_forecast.tracking import check_tracking_server

        check_tracking_server(settings)  # fails fast where MLflow's client would retry for minutes
        client = mlflow.MlflowClient(tracking_uri=settings.resolved_tracking_uri())
        client.log_artifact(run_id, str(full_log), artifact_path="job")
    except Exception as error:  # the job's outcome must not depend on its log's upload
        logger.warning("job log not attached to MLflow run %s: %s", run_id, error)


def _terminate_tree(process: Any, grace_seconds: float = 10.0) -> None:
    """SIGTERM the child's process group and every process below it (torchrun starts each rank
    in a session of its own, outside the group), then SIGKILL what is left after the grace.
    The tree is read before signalling: a rank whose torchrun died is re-parented away."""
    import subprocess

    tree = _descendants(process.pid)
    deadline = time.monotonic() + grace_seconds
    _signal_all(process.pid, tree, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_all(process.pid, tree, signal.SIGKILL)
    process.wait()


def _signal_all(group: int, pids: list[int], sig: signal.Signals) -> None:
    for kill, target in ((os.killpg, group), *((os.kill, pid) for pid in pids)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _descendants(root: int) -> list[int]:
    """Every process below `root` (Linux /proc; elsewhere none: the group signal remains)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


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


def _unstored_success(outcome: JobOutcome, error: DBAPIError) -> str:
    """The failure a job records when its success could not be: what exists in MLflow, so the
    operator finds it, and why the job does not run again."""
    made = f"MLflow run {outcome.mlflow_run_id}"
    if outcome.registered_name is not None:
        made += f", registered as {shown(outcome.registered_name)} v{outcome.registered_version}"
    reason = str(error.orig or error).strip().splitlines()[0]
    return (
        f"trained ({made}), but the job database refused the outcome ({reason}); the job is "
        "not run again, so that the model is not registered twice"
    )


def default_worker_id() -> str:
    """host:pid:random, the host name cut so that the whole fits the job table's column (a
    host name may have 253 characters)."""
    tail = f":{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return socket.gethostname()[: WORKER_ID_WIDTH - len(tail)] + tail


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


# SQLite says these as OperationalError (PostgreSQL as ProgrammingError): a schema moved
# under the worker, or a file it may not write; no wait mends them.
_LASTING = ("no such table", "no such column", "readonly database")


def _lasting(error: DBAPIError) -> bool:
    text = str(error.orig or error).lower()
    return any(words in text for words in _LASTING)


def _passing(error: DBAPIError) -> bool:
    """An error a wait may mend: the database out of reach, or a PostgreSQL refusing writes
    for a while (a standby during a failover: InternalError, which stopped every idle worker
    with exit code 2 where a refused connection is waited out)."""
    if _lasting(error):
        return False
    read_only = getattr(error.orig, "sqlstate", None) == POSTGRES_READ_ONLY
    return read_only or isinstance(error, (OperationalError, InterfaceError))


def _said(error: DBAPIError) -> str:
    """A database error in one log line: the driver's first line. SQLAlchemy's text goes on
    with the SQL and its parameters (the job's log tail among them) on further lines."""
    lines = str(error.orig or error).strip().splitlines()
    return lines[0] if lines else type(error.orig or error).__name__


# The longest wait between tries while the job database does not answer.
OUTAGE_MAX_WAIT_S = 30.0


@dataclass
class _Outage:
    """The job database failing between jobs (a PostgreSQL restart or failover, a renamed
    database, a locked SQLite file): an idle worker logs it and tries again, waiting longer
    each time up to OUTAGE_MAX_WAIT_S, where it used to exit with a traceback (every idle
    worker of a fleet at once; a busy worker already rode it out). Said once when it starts,
    then every tenth try, so a long outage does not fill the log."""

    started: float = field(default_factory=time.monotonic)
    tries: int = 0
    about: str = ""  # what tries, before the words ("job <id>: heartbeat: ")

    def failed(self, error: DBAPIError) -> _Outage:
        self.tries += 1
        if self.tries == 1 or self.tries % 10 == 0:
            logger.error(
                "%sthe job database does not answer (try %d, %.0f s): %s; trying again",
                self.about,
                self.tries,
                self.seconds(),
                _said(error),
            )
        return self

    def wait(self, poll_seconds: float) -> float:
        doubled = max(poll_seconds, 0.05) * float(2 ** min(self.tries - 1, 5))
        return min(OUTAGE_MAX_WAIT_S, doubled)

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def cleared(self, about: str | None = None) -> None:
        """Said once when the database answers again (`about`: this outage's own by default)."""
        logger.warning(
            "%sthe job database answers again after %.0f s",
            self.about if about is None else about,
            self.seconds(),
        )


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
        self._handed_back = 0  # jobs a shutdown put back in the queue: counted apart at exit

    # --- the loop ----------------------------------------------------------------------------

    def run_once(self) -> str | None:
        """Recover expired leases, tick schedules, claim and run one job; its id or None."""
        # a lost attempt whose run had finished is settled while the job is still the lost
        # worker's: requeued first, it was claimed and trained again while its run was read
        for lost in queue.expired_runs(self.db):
            self._settle_finished(lost)
        for recovered in queue.recover_expired(self.db):
            logger.warning("job %s: %s -> %s", recovered.id, recovered.error, recovered.status)
            if recovered.mlflow_run_id is not None:
                self._end_lost_run(recovered.mlflow_run_id)
        collect_lost_attempts(self.db, self.settings)
        # after the recovery: a lost scheduled run is back in the queue, where the tick sees
        # it waiting and enqueues no catch-up beside it (ticked first, it saw it `running`,
        # and a restarted scheduler's worker trained the same file twice)
        if self.scheduler:
            for job_id in schedules.enqueue_due(
                self.db, max_attempts=self.settings.job_max_attempts
            ):
                logger.info("scheduled run enqueued as job %s", job_id)
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
        outage: _Outage | None = None
        while not self._stopping.is_set():
            if max_jobs is not None and done >= max_jobs:
                break
            try:
                job_id = self.run_once()
            except DBAPIError as error:
                # the database out of reach or read-only for now; a deterministic error (a
                # schema not upgraded, a constraint) would fail the same way at every try:
                # raised, as before
                if until_idle or not _passing(error):  # a one-off drain (CI, cron) stops
                    raise
                outage = (outage or _Outage()).failed(error)
                self._stopping.wait(outage.wait(self.settings.worker_poll_seconds))
                continue
            if outage is not None:
                outage.cleared(f"worker {self.worker_id}: ")
                outage = None
            if job_id is not None:
                done += 1
                continue
            if until_idle:
                break
            self._stopping.wait(self.settings.worker_poll_seconds)
        # a job handed back is not one done: said apart, or "after 1 job(s)" read as trained
        back = ""
        if self._handed_back:
            back = f", {self._handed_back} of them handed back to the queue"
        logger.info("worker %s stopped after %d job(s)%s", self.worker_id, done, back)
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

                def shutting_down() -> bool:
                    return self._stopping.is_set() and not (
                        attempt.cancel.is_set() or attempt.lost.is_set() or attempt.timed_out()
                    )

                context = JobContext(
                    job.id,
                    attempt.number,
                    spec,
                    should_stop,
                    log,
                    record_run,
                    shutting_down,
                    worker_id=self.worker_id,
                )
                outcome = self.executor(context)
            except Exception as error:
                interrupted = isinstance(error, JobInterruptedError) or should_stop()
                if interrupted and attempt.lost.is_set():
                    logger.warning("job %s: lease lost; another worker owns it now", job.id)
                elif interrupted and attempt.cancel.is_set():
                    log("cancelled while running")
                    self._record(job.id, "the cancel", lambda: queue.finish(
                        self.db, **fence, status="cancelled", error="cancelled while running",
                        log_tail=attempt.tail(),
                    ))  # fmt: skip
                elif interrupted and attempt.timed_out():
                    reason = (
                        f"timed out: stopped after URNN_JOB_TIMEOUT_SECONDS={timeout:g} s of "
                        "this attempt"
                    )
                    log(reason)
                    self._record(job.id, "the timeout", lambda: queue.finish(
                        self.db, **fence, status="failed", error=reason, log_tail=attempt.tail()
                    ))  # fmt: skip
                elif interrupted and self._stopping.is_set():
                    reason = f"worker {self.worker_id} shut down during attempt {attempt.number}"
                    # the log's last line is written by the release, in the statement that
                    # decides it: requeued, or cancelled where a cancel was pending unseen
                    kept = list(attempt.lines)[-(LOG_TAIL_LINES - 1) :]
                    released = self._record(job.id, "the requeue", lambda: queue.release(
                        self.db, **fence, reason=reason, log_tail="\n".join(kept)
                    ))  # fmt: skip
                    if released == "cancelled":
                        logger.info("job %s: cancelled while running (seen as %s)", job.id, reason)
                    elif released == "queued":
                        self._handed_back += 1
                        logger.info("job %s: requeued: %s", job.id, reason)
                    if isinstance(error, LeftForCollectionError):  # its run's bookkeeping
                        collect_lost_attempts(self.db, self.settings)
                elif isinstance(error, JobSpecError):
                    # the spec this run cannot start (data re-pointed outside URNN_JOB_DATA_DIRS,
                    # a spec stored before a check): the user's to fix, said in one line, as a
                    # 422 says it; a traceback in the job's log tail said nothing more
                    failure = f"not started: {error}"
                    attempt.lines.append(failure)
                    logger.error("job %s failed: %s", job.id, failure)
                    self._record(job.id, "the failure", lambda: queue.finish(
                        self.db, **fence, status="failed", error=failure, log_tail=attempt.tail()
                    ))  # fmt: skip
                elif isinstance(error, ChildFailedError):  # its output is in the tail already
                    failure = str(error)
                    logger.error("job %s failed: %s", job.id, failure)
                    self._record(job.id, "the failure", lambda: queue.finish(
                        self.db, **fence, status="failed", error=failure, log_tail=attempt.tail()
                    ))  # fmt: skip
                else:
                    logger.exception("job %s failed", job.id)
                    for line in traceback.format_exc().splitlines()[-15:]:
                        attempt.lines.append(line)
                    failure = f"{type(error).__name__}: {error}"
                    self._record(job.id, "the failure", lambda: queue.finish(
                        self.db, **fence, status="failed", error=failure, log_tail=attempt.tail()
                    ))  # fmt: skip
                return
            recorded = self._record(job.id, "the success", lambda: queue.finish(
                self.db, **fence, status="succeeded", mlflow_run_id=outcome.mlflow_run_id,
                registered_name=outcome.registered_name,
                registered_version=outcome.registered_version, promoted=outcome.promoted,
                log_tail=attempt.tail(),
            ), unstored=lambda error: queue.finish(
                self.db, **fence, status="failed", mlflow_run_id=outcome.mlflow_run_id,
                error=_unstored_success(outcome, error), log_tail=attempt.tail(),
            ))  # fmt: skip
            if recorded is False:
                logger.warning("job %s finished after its lease was lost; not recorded", job.id)
        finally:
            attempt.done.set()
            beat.join()
            logging.getLogger().removeHandler(handler)

    def _record(
        self,
        job_id: str,
        what: str,
        write: Callable[[], T],
        *,
        unstored: Callable[[DBAPIError], T] | None = None,
    ) -> T | None:
        """A write of the attempt's outcome, retried through database hiccups (a locked SQLite
        file, a PostgreSQL failover) for about 15 s rather than crashing the worker. None if
        it never went through: the lease then expires, and the next worker records a success
        from its MLflow run (`finished_attempt`) or retries the job.

        A write the database refuses for what it holds (a value too long for its column) fails
        the same way every time: it is not retried, and `unstored` (given for a success: its
        model is registered, and a retry would register another) records what can be instead."""
        delay = 0.5
        for _ in range(5):
            try:
                return write()
            except UNSTORABLE as error:
                logger.error("job %s: the database refuses %s (%s)", job_id, what, _said(error))
                if unstored is None:
                    return None
                as_failure = functools.partial(unstored, error)
                return self._record(job_id, f"{what}, as a failure", as_failure)
            except DBAPIError as error:
                logger.warning(
                    "job %s: recording %s failed (%s); again in %.1f s",
                    job_id,
                    what,
                    _said(error),
                    delay,
                )
                time.sleep(delay)
                delay *= 2
        try:
            return write()
        except DBAPIError as error:
            logger.error(
                "job %s: could not record %s (%s); its lease will expire and another attempt "
                "will run",
                job_id,
                what,
                _said(error),
            )
            return None

    def _settle_finished(self, recovered: Job) -> bool:
        """A lost attempt whose run had finished, its version registered and decided
        (`finished_attempt`): the job, still `running` on its expired lease, recorded as
        succeeded with it, unless its worker renewed the lease meanwhile; whether it was."""
        assert recovered.mlflow_run_id is not None
        outcome = finished_attempt(self.settings, recovered.mlflow_run_id)
        if outcome is None:
            return False
        note = (
            f"attempt {recovered.attempts}'s worker {recovered.worker_id} was lost after its "
            f"run had finished: recorded as the run ended (version {outcome.registered_version}"
            f", {'promoted' if outcome.promoted else 'not promoted'}), not trained again"
        )
        settled = queue.settle_lost(
            self.db,
            job_id=recovered.id,
            attempt=recovered.attempts,
            mlflow_run_id=outcome.mlflow_run_id,
            registered_name=outcome.registered_name,
            registered_version=outcome.registered_version,
            promoted=outcome.promoted,
            error=note,
            log_tail=queue.ending_with(recovered.log_tail, note),
        )
        if settled:
            logger.warning("job %s: %s", recovered.id, note)
        return settled

    def _end_lost_run(self, run_id: str) -> None:
        """A lost attempt's MLflow run would show RUNNING for ever (its process is gone)."""
        end_run_killed(self.settings, run_id)

    def _heartbeat(self, attempt: _Attempt) -> None:
        interval = self.settings.job_heartbeat_seconds
        lease = self.settings.job_lease_seconds
        outage: _Outage | None = None
        renewed = time.monotonic()  # the claim set the lease just before
        while True:
            trying = time.monotonic()
            try:
                beat = queue.heartbeat(
                    self.db,
                    job_id=attempt.job_id,
                    worker_id=self.worker_id,
                    attempt=attempt.number,
                    lease_seconds=self.settings.job_lease_seconds,
                    log_tail=attempt.tail(),
                )
            except DBAPIError as error:
                # a database hiccup: try again; the lease outlives a few misses. Said as an
                # idle worker says it (a traceback per beat filled the log during an outage)
                about = f"job {attempt.job_id}: heartbeat: "
                outage = (outage or _Outage(about=about)).failed(error)
            except Exception:  # not the database's: a bug, with its traceback
                logger.exception("job %s: heartbeat failed", attempt.job_id)
            else:
                renewed = trying
                if outage is not None:
                    outage.cleared()  # "job <id>: heartbeat: ..."
                    outage = None
                if not beat.alive:
                    attempt.lost.set()
                    return
                if beat.cancel_requested:
                    attempt.cancel.set()
            if not attempt.lost.is_set() and time.monotonic() - renewed >= lease:
                # The lease has expired as the database counts it: another worker may claim
                # the job and train it too (the fencing stops only this worker's writes), so
                # the training stops as when the lease is seen lost; the expired lease
                # requeues the job (an attempt spent) once the database answers. The beats
                # go on: a run already registering its model finishes (up to 120 s), and a
                # renewal before anyone claims the job lets its outcome be recorded.
                logger.error(
                    "job %s: heartbeat: no lease renewal for %g s (URNN_JOB_LEASE_SECONDS): "
                    "another worker may claim the job now; stopping its training",
                    attempt.job_id,
                    lease,
                )
                attempt.lost.set()
            if attempt.done.wait(interval):
                return
