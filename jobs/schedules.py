"""Cron schedules in an explicit IANA time zone, and the scheduler tick that enqueues their runs.

    schedule = create(session, cron="0 3 * * *", timezone="Europe/Paris", spec={...})
    enqueue_due(db, max_attempts=3)    # every worker calls this between jobs

Exactly once: a scheduler claims a due time by locking the schedule's row, and enqueues the run
and moves `next_due_at` (and `last_due_at`) on in that same transaction; another scheduler that
saw the same due time waits for the lock, then finds the schedule no longer due and does
nothing. A due run is also a job row with `(schedule_id, due_at)`, unique in the database, a
backstop for clocks that disagree. Cron fields are read in the schedule's time zone (03:00
Paris stays 03:00 across daylight saving); due times are stored in UTC.

Missed runs (every scheduler was down over one or more due times): the schedule runs once, for
the latest due time that has passed, and the older missed ones are skipped. A retraining job
trains on the data as it is now, so several back-to-back runs would only repeat each other.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs.db import Database
from jobs.models import Job, Schedule, can_be_stored, utcnow
from training.validation import zone_named
from urnn_forecast.field_types import shown

logger = logging.getLogger(__name__)


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used (422); `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field {field!r}: {message}")
        self.field = field


class ScheduleNotFoundError(LookupError):
    """No schedule has this id (404)."""


def check_timezone(name: str) -> ZoneInfo:
    """The schedule's zone, by the forecast API's rule for zone names and in its words
    (training.validation.zone_named: "localtime" would fire at different instants on different
    workers, and the posix/ and right/ copies are not names of the zone database)."""
    try:
        return zone_named(name)
    except ValueError as error:  # zone_named's own words, as POST /forecast says them
        raise ScheduleError("timezone", str(error)) from None


def check_cron(expression: str) -> str:
    """Five fields (minute hour day-of-month month day-of-week); no seconds field; and a
    date it matches (`0 0 30 2 *`, the 30th of February, is valid syntax that never fires)."""
    fields = expression.split()
    if len(fields) != 5:
        count = f"{len(fields)} field{'' if len(fields) == 1 else 's'}" if fields else "no fields"
        raise ScheduleError(
            "cron",
            f"{shown(expression)} has {count}, not the 5 of a cron expression "
            f"(minute hour day-of-month month day-of-week, e.g. '0 3 * * *'){_meant(fields)}",
        )
    if not croniter.is_valid(expression):
        raise ScheduleError("cron", f"{shown(expression)}: {_bad_field(fields)}")
    if (problem := _random_field(fields)) is not None:
        raise ScheduleError("cron", f"{shown(expression)}: {problem}")
    if (problem := _step_too_long(fields)) is not None:
        raise ScheduleError("cron", f"{shown(expression)}: {problem}")
    try:
        croniter(expression, datetime.now(UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(
            "cron",
            f"{shown(expression)} matches no date (such as the 30th of February), so it would "
            "never run",
        ) from None
    return expression


def _meant(fields: list[str]) -> str:
    """For a cron of 6 or 7 fields as Quartz and Spring write them (seconds first; a year
    last), the 5 fields it means when they are a cron this API takes: "; ...: give '...'";
    "" otherwise (the count alone is said)."""
    if len(fields) == 6:
        kept, dropped = fields[1:], "a first field of seconds is not taken"
    elif len(fields) == 7:
        kept, dropped = fields[1:6], "fields of seconds (first) and years (last) are not taken"
    else:
        return ""
    if not croniter.is_valid(f"{fields[0]} * * * *"):  # not a field of seconds (0-59, */15)
        return ""
    try:
        meant = check_cron(" ".join(kept))
    except ScheduleError:
        return ""
    return f"; {dropped}: give {meant!r}"


_CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 (0 and 7 are Sunday) or SUN-SAT"),
)


# croniter's random value: `R` or `R(lo-hi)`, in any case ("FRI" and "MAR" are names, not it)
_RANDOM = re.compile(r"^r(\(\d+-\d+\))?$", re.IGNORECASE)


_REFUSED_STORED: set[str] = set()  # schedule ids already said, once per process


def _refuse_stored_random(schedule_id: str, cron: str, problem: str) -> None:
    """A schedule stored with croniter's `R` before it was refused: not run (each reading drew
    another due time, and two workers could enqueue one run twice), said once per worker."""
    if schedule_id in _REFUSED_STORED:
        return
    _REFUSED_STORED.add(schedule_id)
    logger.error(
        "schedule %s is not run: its cron %r: %s (PATCH /schedules/%s with a cron of fixed "
        "values runs it again)",
        schedule_id,
        cron,
        problem,
        schedule_id,
    )


def _refuse_unreadable(schedule: Schedule, error: Exception) -> None:
    """A stored schedule whose due times cannot be computed now (a time zone the zone database
    no longer has after a tzdata update, a cron a newer croniter refuses): not run, said once
    per worker. It raised out of the tick, so every worker's loop stopped with a traceback at
    each start, and no job of any schedule or client was claimed while it was stored."""
    if schedule.id in _REFUSED_STORED:
        return
    _REFUSED_STORED.add(schedule.id)
    logger.error(
        "schedule %s is not run: its due times cannot be computed from cron %r in time zone "
        "%r (%s: %s); PATCH /schedules/%s with a valid cron and timezone runs it again, and "
        "other schedules and jobs go on",
        schedule.id,
        schedule.cron,
        schedule.timezone,
        type(error).__name__,
        error,
        schedule.id,
    )


def _random_field(fields: list[str]) -> str | None:
    """croniter reads `R` as a random value drawn anew each time a due time is computed: the
    schedule's next run moved at every reading (48 runs a day for `R * * * *`), and two
    workers catching up on one missed run could each enqueue a different due time."""
    for i, (name, values) in enumerate(_CRON_FIELDS):
        for part in fields[i].split(","):
            if _RANDOM.match(part.partition("/")[0]):
                return (
                    f"the {name} field {part!r} asks for a random value, which this scheduler "
                    f"does not draw; give it yourself ({values})"
                )
    return None


# How many values each field has: a step that long or longer matches the first value only.
_FIELD_SIZES = (60, 24, 31, 12, 7)


def _step_too_long(fields: list[str]) -> str | None:
    """`*/90` in the minute field reads as "every 90 minutes" and runs at minute 0 of each hour
    only (croniter takes it; so does cron): refused, with what cron can say instead."""
    for i, ((name, values), size) in enumerate(zip(_CRON_FIELDS, _FIELD_SIZES, strict=True)):
        for part in fields[i].split(","):
            _, slash, step = part.partition("/")
            if slash and step.isdigit() and int(step) >= size:
                return (
                    f"field {i + 1} ({name}) steps by {int(step)}, and the field has only "
                    f"{size} values ({values}): it would match its first value alone. Cron "
                    f"steps within one field; give a step below {size}, or list the values"
                )
    return None


def _bad_field(fields: list[str]) -> str:
    """Which of five fields croniter refuses, and what that field takes (`*/0` in the minute
    field was answered "not a 5-field cron expression", though it has five)."""
    for i, (name, values) in enumerate(_CRON_FIELDS):
        alone = ["*"] * 5
        alone[i] = fields[i]
        if not croniter.is_valid(" ".join(alone)):
            return (
                f"field {i + 1} ({name}) {shown(fields[i])} is not valid: it takes {values}, "
                "ranges (1-5), lists (1,3) and steps (*/15, with a step of at least 1)"
            )
    return "the fields are each valid but not together (minute hour day-of-month month day-of-week)"


def next_due(cron: str, timezone: str, *, after: datetime) -> datetime:
    """The first due time strictly after `after`, in UTC. A fixed-hour schedule runs once on
    the day clocks go back, as cron does: the second occurrence of a repeated local time
    (02:30 at +02:00, then 02:30 again at +01:00) is skipped; schedules whose hour is `*` or
    a step run on through the repeated hour, as elapsed time says. A local time the change
    skips (02:30 on the night 02:00 becomes 03:00) is due once, at the first instant after
    the gap (03:00), whatever the cron's minutes there (for an hour of `*` or a step, unless
    the schedule is due anyway before elapsed time reaches it: `_instants`).

    The cron is matched against naive wall-clock times and each match is placed on the UTC
    line here (`_instants`): croniter's own daylight-saving steps assume a one-hour change,
    and on Lord Howe Island (30 minutes) `14,32 * * * *` went from 01:32 at +11:00 to 02:14,
    never running the repeated 01:32 at +10:30."""
    zone = ZoneInfo(timezone)
    fixed_hour = _fixed_hour(cron)
    after = after.astimezone(UTC)
    lowest, _ = _offsets_near(after, zone)
    # a wall time w falls at w - offset > after only if w > after + offset >= after + lowest
    walls = croniter(cron, _naive(after + lowest) - timedelta(seconds=1))
    best: datetime | None = None
    latest_wall = datetime.max
    while True:
        wall: datetime = walls.get_next(datetime)
        if wall > latest_wall:  # every later wall time falls after `best`
            assert best is not None
            return best
        for instant in _instants(cron, wall, zone, fixed_hour=fixed_hour):
            if instant > after and (best is None or instant < best):
                best = instant
                # a wall time w falls at w - offset >= w - highest: past best + highest, later
                latest_wall = _naive(best + _offsets_near(best, zone)[1])


def _fixed_hour(cron: str) -> bool:
    return not any(mark in cron.split()[1] for mark in "*/")


def _naive(moment: datetime) -> datetime:
    """A UTC moment as a naive datetime (wall-clock arithmetic against naive local times)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


# How far around a moment the zone's offsets are read: a change whose repeated or skipped
# wall times reach the moment is well within it, and changes are months apart, so the
# offsets at its ends and middle are all the offsets within it.
_NEAR = timedelta(days=2)


def _offsets_near(moment: datetime, zone: ZoneInfo) -> tuple[timedelta, timedelta]:
    """The lowest and highest UTC offsets of `zone` within `_NEAR` of `moment`."""
    offsets = [
        (moment + side * _NEAR).astimezone(zone).utcoffset() or timedelta(0) for side in (-1, 0, 1)
    ]
    return min(offsets), max(offsets)


def _instants(cron: str, wall: datetime, zone: ZoneInfo, *, fixed_hour: bool) -> list[datetime]:
    """The UTC instants at which the naive local `wall` is due: one; two when a change back
    repeats it (the first alone for a fixed hour). A wall time a change forward skips is due
    once, at the first instant after the gap; for a schedule whose hour is `*` or a step, not
    when the schedule is due anyway by the instant that elapsed time gives the skipped wall
    time (fold=0, the clock of before the change): `30 * * * *` in Berlin, on the night 02:00
    CET becomes 03:00 CEST, runs at 03:30 CEST (02:30 CET) and not at 03:00 too, while `30
    */2 * * *` runs at 03:00."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if _local(first, zone) != wall:  # skipped by a change forward
        gap_end = _change_at(second, first, zone)
        if not fixed_hour:
            own = croniter(cron, _local(gap_end, zone) - timedelta(seconds=1)).get_next(datetime)
            if own <= _local(first, zone):
                return []
        return [gap_end]
    if first == second or fixed_hour:
        return [first]
    return [first, second]


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    """`moment`'s wall-clock time in `zone`, naive."""
    return moment.astimezone(zone).replace(tzinfo=None)


def _change_at(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant the zone's offset changes, between `before` (old offset) and `after` (new
    offset), to the second: the first instant after a gap in the local clock."""
    new = after.astimezone(zone).utcoffset()
    low, high = 0, int((after - before).total_seconds())  # before + high has the new offset
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(zone).utcoffset() == new:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)


def _repeated(moment: datetime, zone: ZoneInfo) -> bool:
    """True for the second occurrence of a local time that a change back from summer time
    repeats (fold=1 with another UTC offset than the first occurrence)."""
    local = moment.astimezone(UTC).astimezone(zone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def latest_due(cron: str, timezone: str, *, at: datetime) -> datetime:
    """The last due time at or before `at`, in UTC: the last that `next_due` gives there.

    croniter's step back is wrong on the night clocks go back (from 05:45Z it answered 06:30Z
    for '30 1 * * *' in New York, a time after `at`), so it only finds a due time safely
    before `at`, and `next_due`'s own steps go forward from it: one rule for both."""
    zone = ZoneInfo(timezone)
    fixed_hour = _fixed_hour(cron)
    times = croniter(cron, at.astimezone(zone))
    for _ in range(_MAX_STEPS_BACK):
        due: datetime = times.get_prev(datetime)
        if due <= at and not (fixed_hour and _repeated(due, zone)):
            break
    else:  # croniter steps back past a repeated hour within a few steps
        raise RuntimeError(f"cron {cron!r}: no due time found before {at.isoformat()}")
    while (following := next_due(cron, timezone, after=due)) <= at:
        due = following
    return due.astimezone(UTC)


# Steps back a due time may need past croniter's answers after `at` on a repeated hour.
_MAX_STEPS_BACK = 100


def create(
    session: Session,
    *,
    cron: str,
    timezone: str,
    spec: dict[str, Any],
    paused: bool = False,
    warnings: list[str] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    now: datetime | None = None,
) -> Schedule:
    """`warnings`: what checking `spec` could not do (jobs.spec.check_job), kept with it and
    carried by every job the schedule enqueues (carried_warnings). `idempotency_key`: the
    client's, unique among schedules (an IntegrityError when another create holds it)."""
    check_cron(cron)
    check_timezone(timezone)
    now = now or utcnow()
    schedule = Schedule(
        cron=cron,
        timezone=timezone,
        spec=spec,
        created_at=now,
        next_due_at=next_due(cron, timezone, after=now),
        last_due_at=None,
        paused=paused,
        warnings=warnings,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(schedule)
    session.flush()
    return schedule


def by_idempotency_key(session: Session, key: str) -> Schedule | None:
    """The schedule a POST /schedules with this Idempotency-Key created, if any."""
    return session.scalars(select(Schedule).where(Schedule.idempotency_key == key)).one_or_none()


def get(session: Session, *, schedule_id: str) -> Schedule:
    schedule = session.get(Schedule, schedule_id) if can_be_stored(schedule_id) else None
    if schedule is None:
        raise ScheduleNotFoundError(f"no schedule with id {shown(schedule_id)}")
    return schedule


def list_schedules(
    session: Session, *, limit: int = 50, offset: int = 0
) -> tuple[list[Schedule], int]:
    """Oldest first (a stable order to page through), and the total count."""
    total = session.scalar(select(func.count()).select_from(Schedule)) or 0
    rows = session.scalars(
        select(Schedule).order_by(Schedule.created_at, Schedule.id).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


def change(
    session: Session,
    *,
    schedule_id: str,
    cron: str | None = None,
    timezone: str | None = None,
    spec: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    paused: bool | None = None,
    now: datetime | None = None,
) -> Schedule:
    """Change what is given (None: unchanged). A new cron or time zone, and a resume, start
    from `now`: the next due time is the first one after it, so runs that fell due while the
    schedule was paused are skipped, not enqueued at once. Jobs already enqueued keep the spec
    (and warnings) they were made with.

    `warnings` go with `spec`: they are what checking that spec could not do, and replace the
    old spec's (None with a new spec: not recorded). Alone they would describe a spec that was
    not checked, so they are refused without one."""
    if warnings is not None and spec is None:
        raise ValueError("warnings describe a checked spec: pass them with the new spec")
    schedule = (
        session.get(Schedule, schedule_id, with_for_update=True)
        if can_be_stored(schedule_id)
        else None
    )
    if schedule is None:
        raise ScheduleNotFoundError(f"no schedule with id {shown(schedule_id)}")
    new_cron = check_cron(cron) if cron is not None else schedule.cron
    # a new zone is checked; the stored one passed the rule of its day (posix/ and right/
    # copies once did) and still names a zone, so a pause or a new spec is not refused for it
    new_timezone = check_timezone(timezone).key if timezone is not None else schedule.timezone
    now = now or utcnow()
    resumed = paused is False and schedule.paused
    if resumed or new_cron != schedule.cron or new_timezone != schedule.timezone:
        try:
            schedule.next_due_at = next_due(new_cron, new_timezone, after=now)
        except (LookupError, ValueError) as error:  # only a stored value: new ones are checked
            field, value = (
                ("timezone", new_timezone) if isinstance(error, LookupError) else ("cron", new_cron)
            )
            raise ScheduleError(
                field,
                f"the stored {shown(value)} cannot be read any more ({error}); give a new "
                f"{field} in the same PATCH",
            ) from None
    schedule.cron, schedule.timezone = new_cron, new_timezone
    if spec is not None:
        schedule.spec, schedule.warnings = spec, warnings
    if paused is not None:
        schedule.paused = paused
    session.flush()
    return schedule


def remove(session: Session, *, schedule_id: str) -> None:
    """Delete the schedule; jobs it already enqueued stay (their schedule_id becomes null)."""
    if not can_be_stored(schedule_id):
        raise ScheduleNotFoundError(f"no schedule with id {shown(schedule_id)}")
    result = session.execute(delete(Schedule).where(Schedule.id == schedule_id))
    if getattr(result, "rowcount", 0) != 1:
        raise ScheduleNotFoundError(f"no schedule with id {shown(schedule_id)}")


def carried_warnings(schedule: Schedule) -> list[str] | None:
    """The warnings a job this schedule enqueues is stored with: the schedule's, each saying
    where it comes from. Nothing is checked when a run is enqueued (the worker checks every
    run), so a job's own `warnings` could say nothing; the schedule's check is the one its
    spec had, made when that spec was set (POST /schedules, or a PATCH that changed `job`),
    and "at submission" in its words means then. The schedule's id is in the text too because
    deleting the schedule clears the job's schedule_id. None (a schedule stored before
    migration 0006): nothing recorded, nothing carried."""
    if schedule.warnings is None:
        return None
    return [
        f"schedule {schedule.id} (checked when its job was set): {warning}"
        for warning in schedule.warnings
    ]


def _queued_run(session: Session, schedule: Schedule) -> Job | None:
    """A run of `schedule` still waiting in the queue (not claimed yet) with its current spec,
    or None. A run requeued by a worker's shutdown or by a lost lease counts: it starts afresh
    on the file as it is then. One with an older spec (a PATCH since) does not."""
    queued = session.scalars(
        select(Job)
        .where(Job.schedule_id == schedule.id, Job.status == "queued")
        .order_by(Job.created_at)
    )
    return next((job for job in queued if job.spec == schedule.spec), None)


def enqueue_due(db: Database, *, max_attempts: int, now: datetime | None = None) -> list[str]:
    """Enqueue one job per due schedule (its latest passed due time), unless a run of it with
    its current spec still waits in the queue (`_queued_run`: that run reads the file when it
    starts, so the two would repeat each other); the ids this call made."""
    now = now or utcnow()
    with db.session() as session:
        due = list(
            session.scalars(
                select(Schedule.id).where(Schedule.next_due_at <= now, Schedule.paused.is_(False))
            )
        )
    created: list[str] = []
    for schedule_id in due:
        with db.session() as session:
            job_id = _enqueue_one(session, schedule_id, max_attempts=max_attempts, now=now)
        if job_id is not None:
            created.append(job_id)
    return created


def _enqueue_one(
    session: Session, schedule_id: str, *, max_attempts: int, now: datetime
) -> str | None:
    """Claim the schedule's due time, enqueue its run and move the schedule on, in one
    transaction that holds the schedule's row: the id of the job made, or None.

    The row is locked first (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises
    already) and everything is read from it there: another scheduler's tick of the same due
    time waits, then finds `next_due_at` past `now` and does nothing; a PATCH still committing
    a pause or a new cron is waited for and seen. Before 2026-12-07 the job was inserted in one
    transaction and `next_due_at`/`last_due_at` moved in a later one by compare-and-set on
    `next_due_at`: the losing scheduler, locking the row once the winner's insert committed,
    took the winner's job for a run still waiting from before, moved `next_due_at` on alone,
    and the winner's update then matched no row, so `last_due_at` kept the previous due time."""
    schedule = session.get(Schedule, schedule_id, with_for_update=True)
    if schedule is None or schedule.paused or schedule.next_due_at > now:
        return None  # deleted, paused, or its due time taken by another scheduler since the query
    if (problem := _random_field(schedule.cron.split())) is not None:
        _refuse_stored_random(schedule.id, schedule.cron, problem)
        return None
    try:
        due_at = latest_due(schedule.cron, schedule.timezone, at=now)
        if due_at < schedule.next_due_at:  # cannot happen with one clock; be safe with skew
            due_at = schedule.next_due_at
        following = next_due(schedule.cron, schedule.timezone, after=due_at)
    except (LookupError, ValueError, RuntimeError) as error:  # ZoneInfoNotFoundError, ...
        _refuse_unreadable(schedule, error)
        return None
    if due_at > schedule.next_due_at:
        logger.warning(
            "schedule %s: runs due from %s to before %s were missed; running the latest only",
            schedule.id,
            schedule.next_due_at.isoformat(),
            due_at.isoformat(),
        )
    job_id: str | None = None
    waiting = _queued_run(session, schedule)
    if waiting is not None:
        # It trains on the data as it is when it runs, as this run would: two back-to-back
        # fits of one file (a run requeued by a worker's shutdown, then its catch-up; a queue
        # behind a long job) registered twin versions.
        logger.info(
            "schedule %s due %s: its run %s (due %s) has not started yet and will train on the "
            "data as it is then; not enqueuing another",
            schedule.id,
            due_at.isoformat(),
            waiting.id,
            waiting.due_at.isoformat() if waiting.due_at else "?",
        )
    else:
        job = Job(
            spec=schedule.spec,
            status="queued",
            created_at=now,
            attempts=0,
            max_attempts=max_attempts,
            cancel_requested=False,
            schedule_id=schedule.id,
            due_at=due_at,
            warnings=carried_warnings(schedule),  # read with the spec: they match
        )
        try:
            with session.begin_nested():
                session.add(job)
            job_id = job.id
        except IntegrityError:
            # (schedule_id, due_at) is unique: a run of this due time exists already, which
            # the lock above leaves to clocks that disagree (a resume by an API whose clock
            # is behind a worker's, moving next_due_at back to a due time already enqueued).
            logger.debug("schedule %s due %s: already enqueued", schedule.id, due_at)
    schedule.next_due_at = following
    # last_due_at is the due time of the last run enqueued (GET /schedules): one passed over
    # for a waiting run names no job, and would have been shown
    if waiting is None:
        schedule.last_due_at = due_at
    session.flush()
    return job_id
