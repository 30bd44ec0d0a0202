"""The job database's tables, as SQLAlchemy 2 typed ORM classes.

Times are stored as naive UTC (`UtcDateTime`) so SQLite and PostgreSQL compare them the same way,
and handed back timezone-aware. Ids are UUID strings: workers on several machines, no sequence
to share. The schema itself is owned by Alembic (migrations/); tests check that the two agree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

# Named constraints, so that Alembic migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def canonical_id(text: str) -> str:
    """A job or schedule id as stored: ids are UUIDs, written lower case, and RFC 9562 reads
    them in any case (a client that upper-cases them got a 404); other text is left as it is."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def can_be_stored(text: str) -> bool:
    """False for a text no row can hold (a NUL: PostgreSQL refuses it in a query, a 500 where
    an id that names nothing is a 404)."""
    return "\x00" not in text


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, naive UTC in the database, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class ReportText(TypeDecorator[str]):
    """A job's error and log tail: what a run printed, NUL characters written as `\\x00`.
    PostgreSQL's text cannot hold NUL: a training log that printed one (a column name with it)
    failed every write of the job's outcome, and the job stayed `running` with no error."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.replace("\x00", "\\x00") if value is not None else None


# A JSON list of strings. none_as_null: a Python None is SQL NULL, as in the rows migration
# 0006 found, not the JSON text 'null' (which `IS NULL` would not match).
WARNINGS = JSON(none_as_null=True)


# Widths of the text columns a client or an operator fills, checked where the value is given
# (a 422, a usage error): PostgreSQL refuses a longer value where SQLite stores it, so the
# same request was a 500 on one database and accepted on the other.
CRON_WIDTH = 120
WORKER_ID_WIDTH = 200
REGISTERED_NAME_WIDTH = 200


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UtcDateTime}


class Schedule(Base):
    """A cron expression in an explicit IANA time zone that enqueues a job at each due time."""

    __tablename__ = "schedules"
    # A client's Idempotency-Key names at most one schedule (migration 0007).
    __table_args__ = (Index("uq_schedules_idempotency_key", "idempotency_key", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    cron: Mapped[str] = mapped_column(String(CRON_WIDTH))
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name, e.g. "Europe/Paris"
    spec: Mapped[dict[str, Any]]  # the JobSpec each run gets
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The next due time not yet enqueued (UTC). The scheduler enqueues the latest due time
    # <= now and moves this past now: older missed runs are skipped (docs/jobs.md).
    next_due_at: Mapped[datetime]
    last_due_at: Mapped[datetime | None]  # the due time of the last run enqueued
    # A paused schedule enqueues nothing; resuming it moves next_due_at past the resume time,
    # so the runs it missed while paused are skipped, not run at once.
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # What checking `spec` at POST, or at the PATCH that set it, could not do (jobs.spec.
    # check_job); jobs it enqueues carry them (jobs.schedules.carried_warnings). NULL: set
    # before migration 0006, not recorded.
    warnings: Mapped[list[str] | None] = mapped_column(WARNINGS)
    # POST /schedules's Idempotency-Key and the SHA-256 of the body it was first sent with
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))


class Job(Base):
    """One training run: its parameters, where it is in its life, and what it produced."""

    __tablename__ = "jobs"
    __table_args__ = (
        # A schedule's due time becomes at most one job, however many schedulers race.
        UniqueConstraint("schedule_id", "due_at", name="uq_jobs_schedule_id_due_at"),
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="status",
        ),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        # A client's Idempotency-Key names at most one job (NULLs, jobs without one, repeat).
        Index("uq_jobs_idempotency_key", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    spec: Mapped[dict[str, Any]]  # JobSpec as JSON: data, target, covariates, config, promote
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]  # of the latest attempt
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(WORKER_ID_WIDTH))  # latest claim's holder
    lease_expires_at: Mapped[datetime | None]  # running jobs only; renewed by the heartbeat
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    registered_name: Mapped[str | None] = mapped_column(String(REGISTERED_NAME_WIDTH))
    registered_version: Mapped[str | None] = mapped_column(String(32))
    promoted: Mapped[bool | None]
    error: Mapped[str | None] = mapped_column(ReportText)
    log_tail: Mapped[str | None] = mapped_column(ReportText)
    schedule_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("schedules.id", ondelete="SET NULL")
    )
    due_at: Mapped[datetime | None]  # the schedule's due time this job runs for
    # POST /jobs's Idempotency-Key, and the SHA-256 of the checked spec it was first sent with
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # What the submission's checks could not do (jobs.spec.check_job), kept so that a replay
    # and GET say what the POST said; [] when nothing; NULL: before migration 0006.
    warnings: Mapped[list[str] | None] = mapped_column(WARNINGS)


class SeriesSnapshot(Base):
    """The persisted recurrent state of one streamed series (service/stream_snapshots.py).

    The state lives hot in the serving process; this row is its durable copy, so a restart or
    another replica resumes the series instead of replaying its history. `state` and `tail` are
    opaque to the database (the stream engine (de)serialises them). `revision` is optimistic
    concurrency: 1 on insert and +1 per save, each save conditional on the revision the writer
    read, so two writers never silently overwrite one another.
    """

    __tablename__ = "series_snapshots"
    __table_args__ = (
        CheckConstraint("points_seen >= 0 AND revision >= 1", name="counts"),
        # Eviction and housekeeping scan by age.
        Index("ix_series_snapshots_updated_at", "updated_at"),
    )

    series_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(32))  # the model the state belongs to
    # name/version@run_id of that model (service.streaming.model_key); NULL before 0005
    model_key: Mapped[str | None] = mapped_column(String(400))
    freq: Mapped[str] = mapped_column(String(32))  # pandas offset alias, e.g. "h"
    tz: Mapped[str | None] = mapped_column(String(64))  # IANA name of the series' timestamps
    # Epoch nanoseconds (UTC) of the first and the last point consumed: BigInteger, ~1.7e18.
    first_ns: Mapped[int] = mapped_column(BigInteger)
    last_ns: Mapped[int] = mapped_column(BigInteger)
    points_seen: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    tail: Mapped[bytes] = mapped_column(LargeBinary)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
