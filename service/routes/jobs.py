"""POST /jobs, GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel: the retraining job queue.

Routes are thin: jobs.spec.check_job checks the spec (a bad data path, target or config key
is a 422 naming the field, at submission) and its data (loaded and split as the worker will,
up to URNN_JOB_DATA_CHECK_MAX_BYTES: a test_series the file lacks or series too short are
422s too), the queue's verbs live in jobs.queue, and workers (`urnn worker`) do the training.
The job database is opened on first use from the app's
settings (URNN_DATABASE_URL); its schema comes from `urnn db upgrade`.

The submitting routes are plain functions, which FastAPI runs in its threadpool: the data
check reads the whole file (seconds for a large one) and must not hold the event loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)

from jobs import queue
from jobs.db import (
    POSTGRES_READ_ONLY,
    Database,
    DatabaseBusyError,
    SchemaError,
    check_schema,
    driver_line,
    reaching,
)
from jobs.models import Job, canonical_id
from jobs.schedules import ScheduleError, ScheduleNotFoundError
from jobs.spec import JobSpec, JobSpecError, answerable, check_job, check_storable
from service.arrow_io import media_type
from service.errors import UnsupportedMediaTypeError
from service.json_block import READERS_DIFFER, repeated_key_path
from service.schemas import ErrorResponse
from service.security import READ_GUARD, ApiKeyDep, ReadKeyDep
from service.state import StateDep
from urnn_forecast.field_types import shown

logger = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"])

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
# A job's or schedule's id in a path, in the case it is stored in (jobs.models.canonical_id).
StoredId = Annotated[str, AfterValidator(canonical_id)]
_open_lock = threading.Lock()


def get_jobs_db(request: Request, state: StateDep) -> Database:
    """The app's job database, opened on first use (creating the app does no I/O) once its
    schema is this installation's head: a missing SQLite file (connecting would create an
    empty one a worker mistakes), a schema behind, or one a newer release migrated (whose
    jobs no worker of this release runs: they were accepted and stayed queued) is a 503
    saying what to do, checked again on the next request until it is right."""
    db: Database | None = getattr(request.app.state, "jobs_db", None)
    if db is None:
        check_schema(state.settings.resolved_database_url())
        with _open_lock:
            db = getattr(request.app.state, "jobs_db", None)
            if db is None:
                with reaching(state.settings.resolved_database_url()):  # 503 saying why
                    db = Database.from_settings(state.settings)
                request.app.state.jobs_db = db
    return db


JobsDbDep = Annotated[Database, Depends(get_jobs_db)]


async def require_json_body(request: Request) -> None:
    """415 for a body sent as anything but JSON (text/plain, a form), as /forecast answers,
    rather than a schema error about a body that was never read as JSON; and a 422 naming a
    key the body gives twice in one object (`repeated_key_path`)."""
    kind = media_type(request.headers.get("content-type", "").encode("latin-1"))
    if kind != "application/json":
        said = shown(kind) if kind else "missing"
        raise UnsupportedMediaTypeError(
            f"header 'Content-Type': {said}; this endpoint reads a body sent as application/json"
        )
    # FastAPI read the body before the dependencies run: this is its cached copy
    if (path := repeated_key_path(await request.body())) is not None:
        raise JobSpecError(path, f"is given twice; {READERS_DIFFER}")


JsonBodyDep = Depends(require_json_body)
UNSUPPORTED: dict[str, Any] = {
    "model": ErrorResponse,
    "description": "A body not sent as application/json.",
}


DATA_WARNINGS = (
    "What the submission's checks could not do; [] when there is nothing to say. Today: the "
    "data file was not checked in full at submission (larger than "
    "URNN_JOB_DATA_CHECK_MAX_BYTES, the service busy with other checks, or the check failing "
    "on something other than the data), so the worker finds what its header does not show. "
    "Stored with the job: GET /jobs, GET /jobs/{id} and an Idempotency-Key replay answer the "
    "list the POST did. A job a schedule enqueued carries the schedule's, each starting "
    "'schedule <id> (checked when its job was set): '. Jobs stored before this field existed "
    "(migration 0006) answer []."
)


def stored_warnings(stored: list[str] | None) -> list[str]:
    """A row's warnings as the API answers them: NULL (a row from before migration 0006, when
    they were not stored) reads as none, [] and not null, so clients have one type to read."""
    return list(stored) if stored is not None else []


class JobAccepted(BaseModel):
    id: str
    status: JobStatus
    warnings: list[str] = Field(description=DATA_WARNINGS)


class JobPublic(BaseModel):
    id: str
    status: JobStatus
    parameters: JobSpec = Field(description="The job's spec as submitted (data made absolute).")
    created_at: datetime
    started_at: datetime | None = Field(description="Start of the latest attempt.")
    finished_at: datetime | None
    attempts: int = Field(description="Claims so far (a lost worker's attempt counts).")
    max_attempts: int
    worker_id: str | None = Field(description="The worker that holds or held the job.")
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    mlflow_run_id: str | None
    registered_name: str | None
    registered_version: str | None
    promoted: bool | None
    error: str | None
    log_tail: str | None
    schedule_id: str | None = Field(description="The schedule that enqueued it, if any.")
    due_at: datetime | None = Field(description="The schedule's due time this job runs for.")
    idempotency_key: str | None = Field(
        default=None, description="The Idempotency-Key it was submitted with, if any."
    )
    warnings: list[str] = Field(description=DATA_WARNINGS)

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        fields: dict[str, Any] = {
            name: getattr(job, name)
            for name in cls.model_fields
            if name not in ("parameters", "warnings")
        }
        fields["parameters"] = answerable(job.spec)  # a row stored before the check
        fields["warnings"] = stored_warnings(job.warnings)
        return cls.model_validate(fields)


class JobPage(BaseModel):
    items: list[JobPublic]
    total: int = Field(description="Jobs matching the filter, over all pages.")
    limit: int
    offset: int


NO_DATABASE: dict[str, Any] = {
    "model": ErrorResponse,
    "description": "The job database is unreachable or not migrated (`urnn db upgrade`).",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key."},
    403: {"model": ErrorResponse, "description": "No URNN_API_KEY configured."},
    413: {"model": ErrorResponse, "description": "A body above URNN_MAX_BODY_BYTES."},
    503: NO_DATABASE,
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No job with this id."}
}


# POST /jobs's and POST /schedules's header: one rule, one wording. Visible ASCII: '!' to '~'.
_KEY_CHARACTERS = "[!-~]"
_KEY_MAX = 255
_KEY = re.compile(f"{_KEY_CHARACTERS}{{1,{_KEY_MAX}}}")
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="A key of the client's choosing (1-255 visible ASCII characters, e.g. a "
        "UUID): a retry with the same key and body answers what the first call made (header "
        "Idempotent-Replayed: true) instead of making another; the same key with another body "
        "is a 422.",
        # the rule `_KEY` checks, in the schema only (its 422 is the service's own sentence):
        # it showed any text, and an empty key, which the rule refuses, was a valid request
        json_schema_extra={
            "minLength": 1,
            "maxLength": _KEY_MAX,
            "pattern": f"^{_KEY_CHARACTERS}+$",
        },
    ),
]


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobAccepted,
    dependencies=[ApiKeyDep, JsonBodyDep],
    summary="Queue a retraining job (API key)",
    responses={
        415: UNSUPPORTED,
        **ERRORS,
        422: {"model": ErrorResponse, "description": "A bad spec; the detail names the field."},
    },
)
def submit_job(
    spec: JobSpec,
    request: Request,
    db: JobsDbDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted | JSONResponse:

    def create(key: str | None, digest: str | None) -> JobAccepted:
        # the whole file, as the worker will read it; before the insert: a 422 stores nothing
        checked, warnings = check_job(
            spec,
            data_folders=state.settings.job_data_folders(),
            max_bytes=state.settings.job_data_check_max_bytes,
        )
        with db.session() as session:
            job = queue.submit(
                session,
                spec=checked.model_dump(),
                max_attempts=state.settings.job_max_attempts,
                idempotency_key=key,
                request_hash=digest,
                warnings=warnings,  # [] too: checked in full, recorded as such
            )
            return JobAccepted(id=job.id, status="queued", warnings=warnings)

    return idempotent_create(
        request, idempotency_key, spec, spec, lambda k, d: _replay(db, k, d), create
    )


T = TypeVar("T")


def idempotent_create(
    request: Request,
    key: str | None,
    body: BaseModel,
    spec: JobSpec,
    replay: Callable[[str, str], JSONResponse | None],
    create: Callable[[str | None, str | None], T],
    *,
    spec_field: str | None = None,
) -> T | JSONResponse:
    """POST /jobs's and POST /schedules's Idempotency-Key: a key already used answers what it
    made (`replay`, or a 422 for another body), else `create` makes it under the key and the
    body's digest; of two calls with one key at once, the one whose insert lost answers the
    winner's. `spec_field`: the body's field that holds `spec` (a schedule's `job`), named in
    its errors as `create`'s checks name it."""
    digest = None
    if key is not None:
        check_idempotency_key(key, request.headers.getlist("idempotency-key"))
        # before the digest (check_job checks it again for every spec): a lone surrogate or
        # NaN is not a body to compare, and the JSON dump would write NaN as null
        try:
            check_storable(spec)
        except JobSpecError as error:
            raise (error.within(spec_field) if spec_field else error) from None
        digest = body_digest(body)
        if (replayed := replay(key, digest)) is not None:
            return replayed
    try:
        return create(key, digest)
    except IntegrityError:
        if key is None or digest is None:
            raise
        if (replayed := replay(key, digest)) is None:
            raise
        return replayed


def body_digest(body: BaseModel) -> str:
    """SHA-256 of the body as sent, before the checks: a retry replays whatever became of the
    data file (moved, re-pointed) since the first call."""
    sent = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(sent.encode()).hexdigest()


def check_idempotency_key(key: str, sent: list[str]) -> None:
    if len(sent) > 1:
        raise IdempotencyKeyReusedError(
            f"header 'Idempotency-Key': sent {len(sent)} times; send one key per request"
        )
    if not _KEY.fullmatch(key):
        raise IdempotencyKeyReusedError(
            "header 'Idempotency-Key': must be 1 to 255 visible ASCII characters (letters, "
            f"digits, punctuation; no spaces), got {shown(key)}"
        )


def _replay(db: Database, key: str, digest: str) -> JSONResponse | None:
    """The answer for a key already used: its job (replayed) with the warnings its first call
    answered (stored: the data is not checked again), or a 422 if the spec differs."""
    with db.session() as session:
        job = queue.by_idempotency_key(session, key)
        if job is None:
            return None
        if job.request_hash != digest:
            raise IdempotencyKeyReusedError(
                f"header 'Idempotency-Key': {shown(key)} was already used for job {job.id} with "
                "another body; use a new key for a new job"
            )
        accepted = JobAccepted(
            id=job.id,
            status=job.status,  # type: ignore[arg-type]
            warnings=stored_warnings(job.warnings),
        )
    return JSONResponse(
        accepted.model_dump(),
        status_code=202,
        headers={"Idempotent-Replayed": "true"},
    )


class IdempotencyKeyReusedError(ValueError):
    """A malformed Idempotency-Key, or one sent again with a different body (422)."""


# Beyond any table a page walks; a 64-bit overflow in the database driver was a 500.
MAX_OFFSET = 1_000_000_000
# The paging parameters of GET /jobs and GET /schedules.
PageLimit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
PageOffset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip, in the listing's order.")
]


READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "URNN_API_KEY_FOR_READS on: no or wrong key."},
    403: {"model": ErrorResponse, "description": "URNN_API_KEY_FOR_READS on, no key set."},
    503: NO_DATABASE,
}


@router.get(
    "/jobs",
    response_model=JobPage,
    dependencies=[ReadKeyDep],
    openapi_extra=READ_GUARD,
    responses=READ_ERRORS,
    summary="Jobs, newest first",
)
def list_jobs(
    db: JobsDbDep,
    status: Annotated[
        list[JobStatus] | None,
        Query(
            description="Only jobs in this status; repeat it for several "
            "(?status=queued&status=running): jobs in any of them."
        ),
    ] = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> JobPage:
    with db.session() as session:
        rows, total = queue.list_jobs(session, status=status, limit=limit, offset=offset)
        return JobPage(
            items=[JobPublic.of(j) for j in rows], total=total, limit=limit, offset=offset
        )


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    dependencies=[ReadKeyDep],
    openapi_extra=READ_GUARD,
    responses={**READ_ERRORS, **NOT_FOUND},
    summary="One job",
)
def get_job(job_id: StoredId, db: JobsDbDep) -> JobPublic:
    with db.session() as session:
        return JobPublic.of(queue.get(session, job_id=job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobPublic,
    dependencies=[ApiKeyDep],
    summary="Cancel a queued job now, or a running one within seconds (API key)",
    responses={
        **ERRORS,
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The job already ended."},
    },
)
def cancel_job(job_id: StoredId, db: JobsDbDep) -> JobPublic:
    with db.session() as session:
        return JobPublic.of(queue.cancel(session, job_id=job_id))


def install_job_handlers(app: FastAPI) -> None:
    """The job and schedule domain errors as HTTP answers (see service/errors.py for the rest)."""

    def answer(status_code: int) -> Any:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(status_code=status_code, content={"detail": str(exc)})

        return handler

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        logger.error(
            "job database error on %s %s: %s", request.method, request.url.path, driver_line(exc)
        )
        return JSONResponse(status_code=503, content={"detail": database_failure(exc)})

    async def on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
        # requests stuck on a slow or locked database hold the pool's connections: the next
        # ones wait the pool timeout (30 s) and get this, the database's state, not a bug
        logger.error(
            "job database error on %s %s: no free connection: %s",
            request.method,
            request.url.path,
            exc,
        )
        return JSONResponse(
            status_code=503,
            content={
                "detail": "the job database has no free connection: the requests before this "
                "one hold them all (a slow or locked database); try again"
            },
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(JobSpecError, answer(422))
    app.add_exception_handler(IdempotencyKeyReusedError, answer(422))
    app.add_exception_handler(ScheduleError, answer(422))
    app.add_exception_handler(queue.JobNotFoundError, answer(404))
    app.add_exception_handler(ScheduleNotFoundError, answer(404))
    app.add_exception_handler(queue.JobFinishedError, answer(409))
    app.add_exception_handler(SchemaError, answer(503))  # an unusable URL or driver
    app.add_exception_handler(OperationalError, on_database)
    app.add_exception_handler(ProgrammingError, on_database)
    # PostgreSQL's read-only transaction (a standby, default_transaction_read_only) and a
    # connection the driver found closed: the database's state, not a bug (they were 500s)
    app.add_exception_handler(InternalError, on_database)
    app.add_exception_handler(InterfaceError, on_database)
    app.add_exception_handler(DatabaseBusyError, on_pool_timeout)


# SQLite's words for a read-only file (PostgreSQL's: jobs.db.POSTGRES_READ_ONLY).
_READ_ONLY_SQLITE = "readonly database"
# A table or column the code reads and the database lacks: PostgreSQL's undefined_table and
# undefined_column, SQLite's words (both an OperationalError there).
_NO_SUCH_SQLSTATES = frozenset({"42P01", "42703"})
_NO_SUCH_SQLITE = ("no such table", "no such column")


def database_failure(exc: Exception) -> str:
    """The 503's detail for a job database error: the kind of failure and what to check. The
    driver's text can name hosts, users and SQL: the server log keeps it. Every error was
    "unavailable or not migrated (run `urnn db upgrade`)", which sent the operator of a
    database that was down, or read-only (a PostgreSQL standby, a read-only SQLite file), to
    migrate one that needed nothing: the tables missing is said apart from the rest."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    if getattr(orig, "sqlstate", None) == POSTGRES_READ_ONLY or _READ_ONLY_SQLITE in str(orig):
        return (
            "the job database is read-only (a PostgreSQL standby or default_transaction_"
            "read_only, a read-only SQLite file): it refuses writes until it takes them again; "
            f"reads still answer ({type(exc).__name__}; the server log has the details)"
        )
    if getattr(orig, "sqlstate", None) in _NO_SUCH_SQLSTATES or any(
        words in str(orig) for words in _NO_SUCH_SQLITE
    ):
        return (
            "the job database's tables are missing or not this release's (a database made "
            "again empty, a downgrade): run `urnn db upgrade` (same URNN_DATABASE_URL) "
            f"({type(exc).__name__}; the server log has the details)"
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        return (
            "the job database does not answer or failed the request (down, restarting, "
            "refusing this user, or dropped; URNN_DATABASE_URL): nothing to migrate, the "
            f"next request tries again ({type(exc).__name__}; the server log has the details)"
        )
    return (
        f"the job database failed the request ({type(exc).__name__}; the server log has the "
        "details)"
    )
