"""The job queue's operations: short verbs, keyword-only arguments, session or database first.

API side (one session, the caller's transaction): `submit`, `get`, `list_jobs`, `cancel`.
Worker side (each its own transaction): `claim`, `heartbeat`, `finish`, `release`,
`recover_expired`, `expired_runs`, `settle_lost`.

Correctness rests on conditional updates. A claim moves one job queued -> running only `WHERE
status = 'queued'` and checks the row count; on PostgreSQL the candidate is read `FOR UPDATE SKIP
LOCKED`, so racing workers take different jobs without waiting; on SQLite every transaction is
`BEGIN IMMEDIATE` (jobs/db.py), so claims are serialised. A claim bumps `attempts`; every later
write by that worker is fenced on `(worker_id, attempts, status = 'running')`, so a worker that
lost its lease (and whose job another worker re-claimed) can never overwrite the new attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session

from jobs.db import Database
from jobs.models import JOB_STATUSES, TERMINAL_STATUSES, Job, can_be_stored, utcnow
from urnn_forecast.field_types import not_one_of, shown

# Lines of an attempt's output a job keeps (`log_tail`), its last line included.
LOG_TAIL_LINES = 60


def ending_with(log_tail: str | None, line: str) -> str:
    """`log_tail` with `line` last, kept to LOG_TAIL_LINES lines: what became of an attempt
    (lost, requeued, settled) said where its log stops, as `error` says it."""
    kept = (log_tail or "").splitlines()[-(LOG_TAIL_LINES - 1) :]
    return "\n".join([*kept, line])


class JobNotFoundError(LookupError):
    """No job has this id (404)."""


class JobFinishedError(RuntimeError):
    """The job already ended (409): there is nothing left to cancel."""


def submit(
    session: Session,
    *,
    spec: dict[str, Any],
    max_attempts: int,
    schedule_id: str | None = None,
    due_at: datetime | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    warnings: list[str] | None = None,
) -> Job:
    """Queue a job. `warnings` are what the submission's checks could not do (jobs.spec.
    check_job), stored so that GET and an Idempotency-Key replay say what the POST said;
    None records nothing (read as none)."""
    job = Job(
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        warnings=warnings,
        spec=spec,
        status="queued",
        created_at=utcnow(),
        attempts=0,
        max_attempts=max_attempts,
        cancel_requested=False,
        schedule_id=schedule_id,
        due_at=due_at,
    )
    session.add(job)
    session.flush()
    return job


def by_idempotency_key(session: Session, key: str) -> Job | None:
    """The job a client submitted with this Idempotency-Key, if any."""
    return session.scalars(select(Job).where(Job.idempotency_key == key)).one_or_none()


def get(session: Session, *, job_id: str) -> Job:
    job = session.get(Job, job_id) if can_be_stored(job_id) else None
    if job is None:
        raise JobNotFoundError(f"no job with id {shown(job_id)}")
    return job


def list_jobs(
    session: Session,
    *,
    status: str | Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """Newest first, and the total count under the same filter (jobs in any of `status`)."""
    where: list[ColumnElement[bool]] = []
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        for one in wanted:
            if one not in JOB_STATUSES:
                raise ValueError(not_one_of("status", one, JOB_STATUSES))
        where.append(Job.status.in_(wanted))
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    rows = session.scalars(
        select(Job)
        .where(*where)
        .order_by(Job.created_at.desc(), Job.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def cancel(session: Session, *, job_id: str) -> Job:
    """Queued: cancelled at once. Running: flagged; its worker stops within a heartbeat."""
    job = session.get(Job, job_id, with_for_update=True) if can_be_stored(job_id) else None
    if job is None:
        raise JobNotFoundError(f"no job with id {shown(job_id)}")
    if job.status in TERMINAL_STATUSES:
        raise JobFinishedError(f"job {job_id} already ended ({job.status}); nothing to cancel")
    job.cancel_requested = True
    if job.status == "queued":
        job.status = "cancelled"
        job.finished_at = utcnow()
        job.error = "cancelled before it started"
    session.flush()
    return job


# --- the worker's side ---------------------------------------------------------------------------


def claim(db: Database, *, worker_id: str, lease_seconds: float) -> Job | None:
    """Move the oldest queued job to running for `worker_id`, or None when there is none."""
    with db.session() as session:
        candidate = session.scalar(
            select(Job.id)
            .where(Job.status == "queued")
            .order_by(Job.created_at, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has BEGIN IMMEDIATE instead
        )
        if candidate is None:
            return None
        now = utcnow()
        result = session.execute(
            update(Job)
            .where(Job.id == candidate, Job.status == "queued")
            .values(
                status="running",
                attempts=Job.attempts + 1,
                worker_id=worker_id,
                started_at=now,
                heartbeat_at=now,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                # `error` is kept: while this attempt runs (and after it succeeds) it says why
                # the one before was retried; a failure replaces it with its own reason
                mlflow_run_id=None,  # this attempt's, once its run starts (record_run)
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return None
        return session.get(Job, candidate, populate_existing=True)


def _fenced(job_id: str, worker_id: str, attempt: int) -> tuple[ColumnElement[bool], ...]:
    return (
        Job.id == job_id,
        Job.worker_id == worker_id,
        Job.attempts == attempt,
        Job.status == "running",
    )


@dataclass(frozen=True)
class Beat:
    alive: bool  # False: the lease is no longer this worker's (expired and recovered)
    cancel_requested: bool


def heartbeat(
    db: Database,
    *,
    job_id: str,
    worker_id: str,
    attempt: int,
    lease_seconds: float,
    log_tail: str | None = None,
) -> Beat:
    """Renew the lease (and store the log tail); say whether a cancel was requested."""
    now = utcnow()
    values: dict[str, Any] = {
        "heartbeat_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    if log_tail is not None:
        values["log_tail"] = log_tail
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(*_fenced(job_id, worker_id, attempt))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return Beat(alive=False, cancel_requested=False)
        flag = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        return Beat(alive=True, cancel_requested=bool(flag))


def record_run(db: Database, *, job_id: str, worker_id: str, attempt: int, run_id: str) -> bool:
    """The attempt's MLflow run id, stored when the run starts (not only when it ends well)."""
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(*_fenced(job_id, worker_id, attempt))
            .values(mlflow_run_id=run_id)
            .execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1


def finish(
    db: Database, *, job_id: str, worker_id: str, attempt: int, status: str, **values: Any
) -> bool:
    """Record the end of an attempt; False when the job is no longer this worker's."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"finish needs a final status, got {status!r}")
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(*_fenced(job_id, worker_id, attempt))
            .values(status=status, finished_at=utcnow(), lease_expires_at=None, **values)
            .execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1


def release(
    db: Database,
    *,
    job_id: str,
    worker_id: str,
    attempt: int,
    reason: str,
    log_tail: str | None = None,
    **values: Any,
) -> str | None:
    """Put a running job back in the queue without spending an attempt (graceful shutdown),
    or, when a cancel is pending (asked after the worker's last heartbeat), record it
    cancelled with its attempt spent, as `recover_expired` does: requeued, the next worker
    claimed it and trained it again, and one shorter than a heartbeat ran to its end. One
    statement, so a cancel committed meanwhile is either seen here or finds it queued.

    `reason` says why the worker stopped ("worker w shut down during attempt 1"); the job's
    `error` and the last line of its log (after `log_tail`, the attempt's lines) say what the
    statement did with it, "requeued: ..." or "cancelled while running ...": a worker that
    wrote its "requeued" line first left it ending the log of a job that was cancelled.
    Returns the status it recorded, "queued" or "cancelled"; None if the fence held it off."""
    pending = Job.cancel_requested.is_(True)
    requeued = f"requeued: {reason}"
    cancelled = f"cancelled while running (seen as its worker stopped: {reason})"
    said = case((pending, cancelled), else_=requeued)
    if log_tail is not None:
        values["log_tail"] = case(
            (pending, f"{log_tail}\n{cancelled}"), else_=f"{log_tail}\n{requeued}"
        )
    with db.session() as session:
        recorded = session.execute(
            update(Job)
            .where(*_fenced(job_id, worker_id, attempt))
            .values(
                status=case((pending, "cancelled"), else_="queued"),
                attempts=case((pending, Job.attempts), else_=Job.attempts - 1),
                finished_at=case((pending, utcnow()), else_=Job.finished_at),
                lease_expires_at=None,
                error=said,
                **values,
            )
            .returning(Job.status)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        return None if recorded is None else str(recorded)


def expired_runs(db: Database, *, now: datetime | None = None) -> list[Job]:
    """Running jobs whose lease expired after their attempt had started an MLflow run: the
    worker reads each run (`settle_lost`) before `recover_expired` puts the job back in the
    queue, where any worker could claim it and train it again while the run was being read."""
    now = now or utcnow()
    with db.session() as session:
        return list(
            session.scalars(
                select(Job).where(
                    Job.status == "running",
                    Job.lease_expires_at < now,
                    Job.mlflow_run_id.is_not(None),
                )
            )
        )


def settle_lost(db: Database, *, job_id: str, attempt: int, **values: Any) -> bool:
    """A job of a lost worker (`expired_runs`), recorded as succeeded with what its lost
    attempt's run had done (`values`), unless its worker renewed the lease since (it was
    stalled, not lost) or `recover_expired` took it first; whether it was."""
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.attempts == attempt,
                Job.status == "running",
                Job.lease_expires_at < utcnow(),
            )
            .values(status="succeeded", finished_at=utcnow(), lease_expires_at=None, **values)
            .execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1


def recover_expired(db: Database, *, now: datetime | None = None) -> list[Job]:
    """Jobs whose worker stopped heartbeating: back to the queue while attempts remain, else
    failed with the reason (cancelled if a cancel was pending). Returns the jobs it changed."""
    now = now or utcnow()
    changed: list[Job] = []
    with db.session() as session:
        expired = session.scalars(
            select(Job)
            .where(Job.status == "running", Job.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        ).all()
        for job in expired:
            lost = (
                f"attempt {job.attempts} lost: worker {job.worker_id} stopped heartbeating "
                f"(lease expired {job.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
            job.lease_expires_at = None
            if job.cancel_requested:
                job.status, job.finished_at = "cancelled", now
                job.error = f"cancelled; {lost}"
            elif job.attempts < job.max_attempts:
                job.status = "queued"
                job.error = f"{lost}; retrying ({job.max_attempts - job.attempts} left)"
            else:
                job.status, job.finished_at = "failed", now
                job.error = f"{lost}; gave up after {job.attempts} attempt(s)"
            # the dead worker's last heartbeat left its log mid-epoch: a job failed for good
            # read as if it were still training, in its log
            job.log_tail = ending_with(job.log_tail, job.error)
            changed.append(job)
    return changed


@dataclass(frozen=True)
class JobSummary:
    """What monitoring reads of the queue: jobs by status, when the newest failure and the
    newest success finished, and since when the oldest queued job has waited (None: none)."""

    counts: dict[str, int]
    last_failure: datetime | None
    last_success: datetime | None
    oldest_queued: datetime | None


def summary(session: Session) -> JobSummary:
    """Three aggregate reads (the status index serves them), no job row loaded: a scrape of
    /metrics reads this from every replica."""
    counts = dict.fromkeys(JOB_STATUSES, 0)
    for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        counts[status] = int(count)

    def newest_finish(status: str) -> datetime | None:
        return session.scalar(select(func.max(Job.finished_at)).where(Job.status == status))

    oldest = session.scalar(select(func.min(Job.created_at)).where(Job.status == "queued"))
    return JobSummary(counts, newest_finish("failed"), newest_finish("succeeded"), oldest)
