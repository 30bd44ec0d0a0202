"""POST /schedules, GET /schedules, GET /schedules/{id}, PATCH /schedules/{id} (pause, resume,
change), DELETE /schedules/{id}.

A schedule is a 5-field cron expression read in an explicit IANA time zone, plus the job spec
each run gets (checked like POST /jobs, its data file included: loaded and split as it is at
creation, or at a PATCH that changes the job; every run is checked again by its worker, on the
file as it is then). Workers enqueue due runs (jobs.schedules.enqueue_due): each due time at
most once, and after downtime only the latest missed one (docs/jobs.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from jobs import schedules
from jobs.db import Database
from jobs.models import CRON_WIDTH, Schedule
from jobs.schedules import ScheduleError
from jobs.spec import JOB_EXAMPLE, JobSpec, JobSpecError, answerable, check_job
from service.routes.jobs import (
    ERRORS,
    READ_ERRORS,
    UNSUPPORTED,
    IdempotencyKey,
    IdempotencyKeyReusedError,
    JobsDbDep,
    JsonBodyDep,
    PageLimit,
    PageOffset,
    StoredId,
    idempotent_create,
    stored_warnings,
)
from service.schemas import ErrorResponse
from service.security import READ_GUARD, ApiKeyDep, ReadKeyDep
from service.state import ServiceState, StateDep
from urnn_forecast.field_types import shown

router = APIRouter(tags=["schedules"])


class ScheduleCreate(BaseModel):
    # strict, as JobSpec: "paused": "yes" or 1 is refused, not read as true
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"cron": "0 3 * * *", "timezone": "Europe/Paris", "job": JOB_EXAMPLE}]
        },
    )

    cron: str = Field(
        max_length=CRON_WIDTH,
        description="5 fields: minute hour day-of-month month day-of-week",
        examples=["0 3 * * *"],
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone the cron fields are read in; default UTC",
        examples=["Europe/Paris"],
    )
    job: JobSpec = Field(
        description="The job each due time enqueues, as POST /jobs takes it (checked the same "
        "way, its data file included)."
    )
    paused: bool = Field(default=False, description="Create it paused (PATCH resumes it).")


def _not_null(schema: dict[str, Any]) -> None:
    """The schema of an optional field whose null is refused (ScheduleChange): its type
    without the `{"type": "null"}` branch, and no `"default": null` (validation is pydantic's
    `X | None`, whose errors name the field alone)."""
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    schema.pop("default", None)


class ScheduleChange(BaseModel):
    """The fields to change; those left out stay as they are."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        # minProperties: `{}` is a 422 'nothing to change' (change_schedule); the schema says so
        json_schema_extra={
            "minProperties": 1,
            "examples": [{"paused": True}, {"cron": "30 2 * * 1-5"}],
        },
    )

    # None stands for a field left out; a null sent is refused (change_schedule), so the
    # schema shows each field without null and without a default: a client generated from it
    # sends null for none of them (it showed `"anyOf": [..., {"type": "null"}]`, and a PATCH
    # of `{"paused": null}` that the schema allowed answered 422)
    paused: bool | None = Field(
        default=None,
        description="true: enqueue nothing until resumed; false: resume from now "
        "(runs that fell due while paused are skipped).",
        json_schema_extra=_not_null,
    )
    cron: str | None = Field(
        default=None,
        max_length=CRON_WIDTH,
        description="A new 5-field cron expression.",
        json_schema_extra=_not_null,
    )
    timezone: str | None = Field(
        default=None, description="A new IANA time zone.", json_schema_extra=_not_null
    )
    job: JobSpec | None = Field(
        default=None,
        description="A new job spec for later runs (checked as POST /jobs).",
        json_schema_extra=_not_null,
    )


SCHEDULE_WARNINGS = (
    "What checking the schedule's job could not do, when that job was set (POST /schedules, "
    "or a PATCH that changed `job`; a PATCH of cron, timezone or paused keeps them); [] when "
    "there is nothing to say. Today: its data file was not checked in full (larger than "
    "URNN_JOB_DATA_CHECK_MAX_BYTES, the service busy with other checks, or the check failing "
    "on something other than the data). Stored: GET answers what the POST or PATCH did, and "
    "each job the schedule enqueues carries them, each starting 'schedule <id> (checked when "
    "its job was set): '. Schedules stored before this field existed (migration 0006) answer "
    "[]."
)


class SchedulePublic(BaseModel):
    id: str
    cron: str
    timezone: str
    job: JobSpec
    created_at: datetime
    paused: bool = Field(description="A paused schedule enqueues nothing.")
    next_due_at: datetime | None = Field(
        description="Next due time not yet enqueued (UTC); null while paused."
    )
    last_due_at: datetime | None = Field(description="Due time of the last enqueued run.")
    warnings: list[str] = Field(description=SCHEDULE_WARNINGS)

    @classmethod
    def of(cls, schedule: Schedule) -> SchedulePublic:
        return cls(
            id=schedule.id,
            cron=schedule.cron,
            timezone=schedule.timezone,
            job=JobSpec.model_validate(answerable(schedule.spec)),  # a row from before the check
            created_at=schedule.created_at,
            paused=schedule.paused,
            next_due_at=None if schedule.paused else schedule.next_due_at,
            last_due_at=schedule.last_due_at,
            warnings=stored_warnings(schedule.warnings),
        )


class SchedulePage(BaseModel):
    items: list[SchedulePublic]
    total: int = Field(description="Schedules over all pages.")
    limit: int
    offset: int


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No schedule with this id."}
}


@router.post(
    "/schedules",
    status_code=201,
    response_model=SchedulePublic,
    dependencies=[ApiKeyDep, JsonBodyDep],
    summary="Retrain on a cron schedule (API key)",
    responses={
        **ERRORS,
        415: UNSUPPORTED,
        422: {"model": ErrorResponse, "description": "Bad cron, time zone or job spec."},
    },
)
def create_schedule(
    body: ScheduleCreate,
    request: Request,
    db: JobsDbDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> SchedulePublic | JSONResponse:

    def create(key: str | None, digest: str | None) -> SchedulePublic:
        schedules.check_cron(body.cron)
        schedules.check_timezone(body.timezone)
        spec, warnings = _checked_job(body.job, state)
        with db.session() as session:
            schedule = schedules.create(
                session,
                cron=body.cron,
                timezone=body.timezone,
                spec=spec.model_dump(),
                paused=body.paused,
                warnings=warnings,  # [] too: checked in full, recorded as such
                idempotency_key=key,
                request_hash=digest,
            )
            return SchedulePublic.of(schedule)

    return idempotent_create(
        request,
        idempotency_key,
        body,
        body.job,
        lambda k, d: _replay(db, k, d),
        create,
        spec_field="job",
    )


def _replay(db: Database, key: str, digest: str) -> JSONResponse | None:
    """The answer for a key already used: its schedule as it is now (replayed), or a 422 if
    the body differs."""
    with db.session() as session:
        schedule = schedules.by_idempotency_key(session, key)
        if schedule is None:
            return None
        if schedule.request_hash != digest:
            raise IdempotencyKeyReusedError(
                f"header 'Idempotency-Key': {shown(key)} was already used for schedule "
                f"{schedule.id} with another body; use a new key for a new schedule"
            )
        public = SchedulePublic.of(schedule)
    return JSONResponse(
        public.model_dump(mode="json"), status_code=201, headers={"Idempotent-Replayed": "true"}
    )


def _checked_job(job: JobSpec, state: ServiceState) -> tuple[JobSpec, list[str]]:
    """A schedule's job checked as POST /jobs checks one, data file included: the file as it
    is now. It may grow before a run (an appended log), but a spec this file cannot train
    (a test_series it lacks, a timestamp that does not parse) is wrong today; every run is
    checked again by its worker. Errors name the field under `job`."""
    try:
        return check_job(
            job,
            data_folders=state.settings.job_data_folders(),
            max_bytes=state.settings.job_data_check_max_bytes,
        )
    except JobSpecError as error:
        raise error.within("job") from None


@router.get(
    "/schedules",
    response_model=SchedulePage,
    dependencies=[ReadKeyDep],
    openapi_extra=READ_GUARD,
    responses=READ_ERRORS,
    summary="Schedules, oldest first",
)
def list_schedules(
    db: JobsDbDep,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> SchedulePage:
    with db.session() as session:
        rows, total = schedules.list_schedules(session, limit=limit, offset=offset)
        return SchedulePage(
            items=[SchedulePublic.of(s) for s in rows], total=total, limit=limit, offset=offset
        )


@router.get(
    "/schedules/{schedule_id}",
    response_model=SchedulePublic,
    dependencies=[ReadKeyDep],
    openapi_extra=READ_GUARD,
    responses={**READ_ERRORS, **NOT_FOUND},
    summary="One schedule",
)
def get_schedule(schedule_id: StoredId, db: JobsDbDep) -> SchedulePublic:
    with db.session() as session:
        return SchedulePublic.of(schedules.get(session, schedule_id=schedule_id))


@router.patch(
    "/schedules/{schedule_id}",
    response_model=SchedulePublic,
    dependencies=[ApiKeyDep, JsonBodyDep],
    responses={
        **ERRORS,
        **NOT_FOUND,
        415: UNSUPPORTED,
        422: {"model": ErrorResponse, "description": "Nothing to change, or a bad field."},
    },
    summary="Pause, resume or change a schedule (API key)",
)
def change_schedule(
    schedule_id: StoredId, body: ScheduleChange, db: JobsDbDep, state: StateDep
) -> SchedulePublic:
    given = body.model_fields_set
    if not given:
        raise ScheduleError(
            "body", "nothing to change: give one or more of paused, cron, timezone, job"
        )
    for field in given & {"paused", "cron", "timezone", "job"}:
        if getattr(body, field) is None:
            raise ScheduleError(field, "cannot be null; leave the field out to keep it")
    if body.cron is not None:
        schedules.check_cron(body.cron)
    if body.timezone is not None:
        schedules.check_timezone(body.timezone)
    spec: dict[str, Any] | None = None
    warnings: list[str] | None = None  # kept unless the job changes: they describe its check
    if body.job is not None:
        checked, warnings = _checked_job(body.job, state)
        spec = checked.model_dump()
    with db.session() as session:
        schedule = schedules.change(
            session,
            schedule_id=schedule_id,
            cron=body.cron,
            timezone=body.timezone,
            spec=spec,
            warnings=warnings,
            paused=body.paused,
        )
        return SchedulePublic.of(schedule)


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    dependencies=[ApiKeyDep],
    responses={**ERRORS, **NOT_FOUND},
    summary="Stop a schedule; jobs it already enqueued stay (API key)",
)
def delete_schedule(schedule_id: StoredId, db: JobsDbDep) -> Response:
    with db.session() as session:
        schedules.remove(session, schedule_id=schedule_id)
    return Response(status_code=204)
