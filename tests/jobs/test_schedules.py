"""Schedules: cron + IANA time zone checks, due-time arithmetic across daylight saving, each due
time enqueued exactly once with two schedulers racing, and the missed-run policy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jobs import queue, schedules
from jobs.db import Database
from jobs.models import Job, Schedule
from jobs.worker import JobContext, JobOutcome, Worker
from training.validation import zone_named
from urnn_forecast.settings import Settings

SPEC = {"data": "/nowhere.csv", "target": "y"}


@pytest.mark.parametrize("cron", ["0 3 * *", "61 * * * *", "every night", "0 0 3 * * *"])
def test_bad_cron_is_named(cron: str) -> None:
    with pytest.raises(schedules.ScheduleError, match="field 'cron'"):
        schedules.check_cron(cron)


@pytest.mark.parametrize(
    ("cron", "named"),
    [
        ("*/0 * * * *", "field 1 (minute) '*/0' is not valid: it takes 0-59"),
        ("0 25 * * *", "field 2 (hour) '25' is not valid: it takes 0-23"),
        ("0 3 * 13 *", "field 4 (month) '13' is not valid: it takes 1-12 or JAN-DEC"),
    ],
)
def test_a_five_field_cron_with_a_bad_field_names_that_field(cron: str, named: str) -> None:
    """`*/0 * * * *` was "not a 5-field cron expression", though it has five."""
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.check_cron(cron)
    assert (
        str(caught.value) == f"field 'cron': {cron!r}: {named}, ranges (1-5), lists (1,3) "
        "and steps (*/15, with a step of at least 1)"
    )


FIVE = "(minute hour day-of-month month day-of-week, e.g. '0 3 * * *')"


@pytest.mark.parametrize(
    ("cron", "said"),
    [
        # Quartz and Spring write seconds first: the 5 fields meant are given back
        (
            "0 0 3 * * *",
            f"has 6 fields, not the 5 of a cron expression {FIVE}; a first field "
            "of seconds is not taken: give '0 3 * * *'",
        ),
        (
            "0 30 2 * * 1-5",
            f"has 6 fields, not the 5 of a cron expression {FIVE}; a first field "
            "of seconds is not taken: give '30 2 * * 1-5'",
        ),
        (
            "0 0 3 * * ? 2030",
            f"has 7 fields, not the 5 of a cron expression {FIVE}; fields of "
            "seconds (first) and years (last) are not taken: give '0 3 * * ?'",
        ),
        ("0 3 * *", f"has 4 fields, not the 5 of a cron expression {FIVE}"),
        ("", f"has no fields, not the 5 of a cron expression {FIVE}"),
        ("   ", f"has no fields, not the 5 of a cron expression {FIVE}"),
        ("@daily", f"has 1 field, not the 5 of a cron expression {FIVE}"),
    ],
)
def test_a_cron_of_another_field_count_says_how_many_and_what_to_give(cron: str, said: str) -> None:
    """'0 0 3 * * *' (6 fields, seconds first, as Quartz and Spring write it) was "not a
    5-field cron expression", which did not say which field was too many."""
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.check_cron(cron)
    assert str(caught.value) == f"field 'cron': {cron!r} {said}"


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *"])
def test_a_cron_that_matches_no_date_is_named(cron: str) -> None:
    with pytest.raises(schedules.ScheduleError, match=r"field 'cron': .* matches no date"):
        schedules.check_cron(cron)
    assert schedules.check_cron("0 0 29 2 *")  # leap days come


@pytest.mark.parametrize(
    "zone", ["CEST", "Mars/Olympus", "", "../etc/passwd", "localtime", "posixrules"]
)
def test_bad_time_zone_is_named(zone: str) -> None:
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.check_timezone(zone)
    # the words of POST /forecast's `timezone` (training.validation.zone_named)
    assert str(caught.value) == (
        f"field 'timezone': {zone!r} is not a time zone; it must be an IANA time zone name "
        "such as 'Europe/London'"
    )


@pytest.mark.parametrize(
    ("zone", "hint"),
    [
        ("europe/paris", "it is written 'Europe/Paris' (names are case-sensitive)"),
        ("EUROPE/PARIS", "it is written 'Europe/Paris' (names are case-sensitive)"),
        ("utc", "it is written 'UTC' (names are case-sensitive)"),
        (" UTC ", "it is written 'UTC' (without the spaces around it)"),
        (
            " america/new_york\n",
            "it is written 'America/New_York' (names are case-sensitive, "
            "without the spaces around it)",
        ),
    ],
)
def test_a_zone_in_the_wrong_case_or_with_spaces_says_how_it_is_written(
    zone: str, hint: str
) -> None:
    """'europe/paris' was answered "is not a time zone; it must be an IANA time zone name
    such as 'Europe/London'", leaving the user to find that only the case was wrong."""
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.check_timezone(zone)
    assert str(caught.value) == (
        f"field 'timezone': {zone!r} is not a time zone; it must be an IANA time zone name "
        f"such as 'Europe/London': {hint}"
    )


def test_a_bad_time_zone_reads_as_on_the_forecast_api() -> None:
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.check_timezone("London")
    assert caught.value.field == "timezone"
    assert str(caught.value) == (
        "field 'timezone': 'London' is not a time zone; it must be an IANA time zone name such "
        "as 'Europe/London'"
    )
    with pytest.raises(ValueError) as forecast:
        zone_named("London")
    assert str(caught.value) == f"field 'timezone': {forecast.value}"


def test_due_times_follow_the_local_clock_across_daylight_saving() -> None:
    # Paris leaves CET (UTC+1) for CEST (UTC+2) on 2026-03-29: 03:00 local moves from 02:00Z
    # to 01:00Z.
    before = schedules.next_due(
        "0 3 * * *", "Europe/Paris", after=datetime(2026, 3, 28, tzinfo=UTC)
    )
    after = schedules.next_due("0 3 * * *", "Europe/Paris", after=before)
    assert before == datetime(2026, 3, 28, 2, 0, tzinfo=UTC)
    assert after == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    at = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert schedules.latest_due("0 3 * * *", "Europe/Paris", at=at) == at  # a due time itself
    assert schedules.latest_due("0 3 * * *", "Europe/Paris", at=at - timedelta(seconds=1)) == before


def test_a_repeated_local_time_runs_once_when_clocks_go_back() -> None:
    # Paris leaves CEST for CET on 2027-10-31: 02:00-02:59 local happens twice
    def local_dues(cron: str) -> list[str]:
        moment, out = datetime(2027, 10, 30, 22, tzinfo=UTC), []
        while moment < datetime(2027, 10, 31, 4, tzinfo=UTC):
            moment = schedules.next_due(cron, "Europe/Paris", after=moment)
            out.append(moment.isoformat())
        return out

    fixed = local_dues("30 2 * * *")
    assert fixed[0] == "2027-10-31T00:30:00+00:00"  # 02:30 CEST, once
    assert fixed[1] == "2027-11-01T01:30:00+00:00"  # the next day's, not 02:30 CET
    hourly = local_dues("0 * * * *")  # elapsed time: every hour, the repeated one too
    assert hourly[:4] == [
        "2027-10-30T23:00:00+00:00",  # 01:00 CEST
        "2027-10-31T00:00:00+00:00",  # 02:00 CEST
        "2027-10-31T01:00:00+00:00",  # 02:00 CET
        "2027-10-31T02:00:00+00:00",  # 03:00 CET
    ]


def test_a_local_time_the_clocks_skip_runs_once_at_the_first_instant_after_the_gap() -> None:
    # Berlin goes from 02:00 CET to 03:00 CEST on 2025-03-30: 02:00-02:59 does not exist there
    def local_dues(cron: str) -> list[str]:
        moment, out = datetime(2025, 3, 29, 12, tzinfo=UTC), []
        while moment < datetime(2025, 3, 31, 2, tzinfo=UTC):
            moment = schedules.next_due(cron, "Europe/Berlin", after=moment)
            out.append(moment.isoformat())
        return out

    assert local_dues("30 2 * * *")[:2] == [
        "2025-03-30T01:00:00+00:00",  # 03:00 CEST, once
        "2025-03-31T00:30:00+00:00",  # 02:30 CEST the next night
    ]
    assert local_dues("*/20 2 * * *")[:2] == [
        "2025-03-30T01:00:00+00:00",  # 02:00, 02:20 and 02:40 are one run at 03:00
        "2025-03-31T00:00:00+00:00",
    ]
    at = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)  # a worker checking late finds that run
    assert schedules.latest_due("30 2 * * *", "Europe/Berlin", at=at) == datetime(
        2025, 3, 30, 1, 0, tzinfo=UTC
    )


def test_a_half_hour_change_back_repeats_every_due_time_when_the_hour_is_a_star() -> None:
    """Lord Howe Island goes from 02:00 at UTC+11 back to 01:30 at UTC+10:30 on 2027-04-04:
    01:30-01:59 happens twice. `14,32 * * * *` runs through both, as elapsed time says: the
    second 01:32 (15:02Z) was never run (croniter stepped from 01:32 at +11 to 02:14), nor
    were the second 01:35 to 01:56 of `*/7 * * * *`; a fixed hour still runs once."""

    def local_dues(cron: str) -> list[str]:
        moment, out = datetime(2027, 4, 3, 14, tzinfo=UTC), []
        while (moment := schedules.next_due(cron, "Australia/Lord_Howe", after=moment)) < (
            datetime(2027, 4, 3, 16, tzinfo=UTC)
        ):
            out.append(moment.strftime("%H:%MZ"))
        return out

    assert local_dues("14,32 * * * *") == [
        "14:14Z",  # 01:14 at +11
        "14:32Z",  # 01:32 at +11
        "15:02Z",  # 01:32 at +10:30, the repeated one
        "15:44Z",  # 02:14 at +10:30
    ]
    assert local_dues("*/7 * * * *")[7:14] == [
        "14:56Z",  # 01:56 at +11
        "15:05Z",  # 01:35 at +10:30
        "15:12Z",
        "15:19Z",
        "15:26Z",  # 01:56 at +10:30
        "15:30Z",  # 02:00 at +10:30
        "15:37Z",
    ]
    assert local_dues("32 1 * * *") == ["14:32Z"]  # a fixed hour: the first 01:32 alone
    assert local_dues("32 * * * *") == ["14:32Z", "15:02Z"]  # 01:32 twice; 02:32 is 16:02Z


def test_a_half_hour_change_forward_runs_a_skipped_time_once_after_the_gap() -> None:
    """Lord Howe Island goes from 02:00 at UTC+10:30 to 02:30 at UTC+11 on 2026-10-04: the
    hourly 02:00 was skipped (01:00, then 03:00: 90 minutes without a run); it runs at 02:30,
    as a fixed hour's does. `*/20 * * * *` runs there once for 02:00 and 02:20."""

    def local_dues(cron: str) -> list[str]:
        moment, out = datetime(2026, 10, 3, 14, tzinfo=UTC), []
        while (moment := schedules.next_due(cron, "Australia/Lord_Howe", after=moment)) < (
            datetime(2026, 10, 3, 16, 30, tzinfo=UTC)
        ):
            out.append(moment.strftime("%H:%MZ"))
        return out

    assert local_dues("0 * * * *") == ["14:30Z", "15:30Z", "16:00Z"]  # 01:00, 02:30, 03:00
    assert local_dues("0 2 * * *") == ["15:30Z"]
    assert local_dues("*/20 * * * *") == [
        "14:10Z",  # 00:40 at +10:30
        "14:30Z",
        "14:50Z",
        "15:10Z",  # 01:40 at +10:30
        "15:30Z",  # 02:30 at +11, for 02:00 and 02:20
        "15:40Z",  # 02:40 at +11
        "16:00Z",
        "16:20Z",
    ]


@pytest.mark.parametrize(
    ("zone", "night"),
    [
        ("America/New_York", datetime(2027, 11, 7, 3, tzinfo=UTC)),  # clocks go back
        ("Europe/London", datetime(2027, 10, 30, 22, tzinfo=UTC)),
        ("America/New_York", datetime(2027, 3, 14, 3, tzinfo=UTC)),  # clocks go forward
        ("Australia/Lord_Howe", datetime(2027, 4, 3, 12, tzinfo=UTC)),  # a half-hour change
    ],
)
def test_the_latest_due_time_is_the_last_next_due_gives_at_or_before_it(
    zone: str, night: datetime
) -> None:
    """A worker busy training checks schedules late. croniter's step back answered a time
    after `at` on the night clocks go back (05:45Z -> 06:30Z for '30 1 * * *' in New York):
    the job got a future due time and the real run was never enqueued. Every 7 minutes over
    the night, against the due times `next_due` walks through."""
    for cron in ("30 1 * * *", "0 1 * * *", "30 * * * *", "*/15 * * * *", "30 2 * * *",
                 "0 */2 * * *", "0 0 * * 0", "14,32 * * * *", "*/7 * * * *"):  # fmt: skip
        dues, moment = [], night - timedelta(days=8)
        while moment < night + timedelta(hours=12):
            moment = schedules.next_due(cron, zone, after=moment)
            dues.append(moment)
        for minutes in range(0, 12 * 60, 7):
            at = night + timedelta(minutes=minutes)
            expected = max(due for due in dues if due <= at)
            assert schedules.latest_due(cron, zone, at=at) == expected, (cron, at)
    at = datetime(2027, 11, 7, 5, 45, tzinfo=UTC)  # the walk-through's case
    assert schedules.latest_due("30 1 * * *", "America/New_York", at=at) == datetime(
        2027, 11, 7, 5, 30, tzinfo=UTC
    )


def make_schedule(db: Database, *, cron: str = "*/5 * * * *", now: datetime) -> str:
    with db.session() as session:
        return schedules.create(session, cron=cron, timezone="UTC", spec=SPEC, now=now).id


def scheduled_jobs(db: Database, schedule_id: str) -> list[Job]:
    with db.session() as session:
        return list(
            session.scalars(select(Job).where(Job.schedule_id == schedule_id).order_by(Job.due_at))
        )


def race_enqueue(databases: list[Database], now: datetime) -> list[list[str]]:
    """`enqueue_due` from several threads released at once; what each created."""
    created: list[list[str]] = []
    barrier = threading.Barrier(len(databases))

    def tick(database: Database) -> None:
        barrier.wait()
        created.append(schedules.enqueue_due(database, max_attempts=3, now=now))

    threads = [threading.Thread(target=tick, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return created


def test_each_due_time_is_enqueued_once_with_two_schedulers(
    db: Database, settings: Settings
) -> None:
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)  # due 12:05, 12:10, ...
    others = [Database.from_settings(settings) for _ in range(2)]
    try:
        for tick in (
            datetime(2026, 6, 1, 12, 5, 30, tzinfo=UTC),
            datetime(2026, 6, 1, 12, 11, tzinfo=UTC),
        ):
            created = race_enqueue(others, tick)
            assert sorted(len(ids) for ids in created) == [0, 1]  # one winner per due time
            # Ticking again at the same moment changes nothing.
            assert schedules.enqueue_due(others[0], max_attempts=3, now=tick) == []
            with db.session() as session:  # a worker takes it before the next due time
                session.execute(update(Job).values(status="succeeded"))
    finally:
        for database in others:
            database.dispose()
    due = [job.due_at for job in scheduled_jobs(db, schedule_id)]
    assert due == [
        datetime(2026, 6, 1, 12, 5, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 10, tzinfo=UTC),
    ]
    with db.session() as session:
        schedule = session.get_one(Schedule, schedule_id)
        assert schedule.next_due_at == datetime(2026, 6, 1, 12, 15, tzinfo=UTC)
        assert schedule.last_due_at == datetime(2026, 6, 1, 12, 10, tzinfo=UTC)


class _SeesDueThenWaits:
    """A scheduler's database whose tick has read which schedules are due, then waits while
    `meanwhile` (another scheduler's whole tick) runs: the interleaving the race above hits
    now and then, made every time."""

    def __init__(self, db: Database, meanwhile: Callable[[], object]) -> None:
        self.db, self.meanwhile, self.sessions = db, meanwhile, 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.sessions += 1
        if self.sessions == 2:  # after the query of due schedules
            self.meanwhile()
        with self.db.session() as session:
            yield session


def test_a_scheduler_that_saw_a_due_time_another_enqueued_leaves_the_schedule_alone(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The winner's run was taken by the loser for a run still waiting from before ("not
    enqueuing another"), and the loser moved next_due_at on in a transaction of its own; when
    that came before the winner's, last_due_at kept the previous due time (1 run in 6 of the
    test above on PostgreSQL, before 2026-12-07)."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)  # due 12:05, 12:10, ...
    tick = datetime(2026, 6, 1, 12, 5, 30, tzinfo=UTC)
    other = Database.from_settings(settings)
    won: list[str] = []
    try:
        late = _SeesDueThenWaits(
            other, lambda: won.extend(schedules.enqueue_due(db, max_attempts=3, now=tick))
        )
        with caplog.at_level("DEBUG", logger="jobs.schedules"):
            lost = schedules.enqueue_due(cast(Database, late), max_attempts=3, now=tick)
    finally:
        other.dispose()
    assert len(won) == 1 and lost == []
    assert not [r for r in caplog.records if "not enqueuing another" in r.getMessage()]
    assert [job.id for job in scheduled_jobs(db, schedule_id)] == won
    with db.session() as session:
        schedule = session.get_one(Schedule, schedule_id)
        assert schedule.next_due_at == datetime(2026, 6, 1, 12, 10, tzinfo=UTC)
        assert schedule.last_due_at == datetime(2026, 6, 1, 12, 5, tzinfo=UTC)


def test_missed_runs_collapse_into_the_latest(db: Database) -> None:
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)
    back = datetime(2026, 6, 1, 14, 3, tzinfo=UTC)  # two hours down: 24 due times missed
    (job_id,) = schedules.enqueue_due(db, max_attempts=3, now=back)
    (job,) = scheduled_jobs(db, schedule_id)
    assert job.id == job_id and job.due_at == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)


def test_a_due_run_is_not_enqueued_beside_a_run_of_the_schedule_still_queued(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker's SIGTERM requeued the 08:30 run; its restart at 08:34 found it queued and
    enqueued the 08:34 catch-up too: two back-to-back fits of the same file, twin versions
    registered (life simulation, 2026-12-06). A queued run reads the file when it starts, so
    a due time that finds one waiting is passed over; a run with an older spec (a PATCH
    since), or one already running or finished, does not hold the next back."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)  # due 12:05, 12:10, ...
    (first,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=5))
    with caplog.at_level("INFO", logger="jobs.schedules"):
        assert schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=13)) == []
    said = [r.getMessage() for r in caplog.records if "not enqueuing another" in r.getMessage()]
    assert len(said) == 1 and f"its run {first} (due 2026-06-01T12:05:00+00:00)" in said[0]
    with db.session() as session:
        schedule = session.get_one(Schedule, schedule_id)  # the due time passed all the same
        assert schedule.next_due_at == datetime(2026, 6, 1, 12, 15, tzinfo=UTC)
        session.execute(update(Job).where(Job.id == first).values(status="running"))
    (second,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=15))
    with db.session() as session:  # queued again, as a worker's shutdown leaves it
        session.execute(update(Job).where(Job.id == first).values(status="queued"))
        schedules.change(session, schedule_id=schedule_id, spec={**SPEC, "target": "z"})
        session.execute(update(Job).where(Job.id == second).values(status="succeeded"))
    (third,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=20))
    with db.session() as session:
        assert session.get_one(Job, third).spec["target"] == "z"
    assert schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=25)) == []
    assert [job.id for job in scheduled_jobs(db, schedule_id)] == [first, second, third]


def test_last_due_at_names_the_due_time_of_a_run_that_was_enqueued(db: Database) -> None:
    """GET /schedules' `last_due_at` is "the due time of the last enqueued run": a due time
    passed over because a run was still queued set it too, so it named a due time no job
    carries (a user restarting the worker looked for the 12:10 run and found none)."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)  # due 12:05, 12:10, ...
    (first,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=5))
    assert schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=10)) == []
    with db.session() as session:
        schedule = session.get_one(Schedule, schedule_id)
        assert schedule.next_due_at == datetime(2026, 6, 1, 12, 15, tzinfo=UTC)  # passed
        assert schedule.last_due_at == datetime(2026, 6, 1, 12, 5, tzinfo=UTC)
        assert session.get_one(Job, first).due_at == schedule.last_due_at


def test_a_schedule_stored_with_a_random_field_is_not_run_and_said_once(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """croniter's `R` was accepted before it was refused: each reading drew another due time
    (48 runs a day for `R * * * *`). Such a stored schedule is passed over, with one error
    line per worker naming it and the way out; a fixed cron runs again."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)
    with db.session() as session:  # as a release before the check stored it
        session.execute(update(Schedule).values(cron="R * * * *"))
    later = t0 + timedelta(hours=1)
    with caplog.at_level("ERROR", logger="jobs.schedules"):
        assert schedules.enqueue_due(db, max_attempts=3, now=later) == []
        assert schedules.enqueue_due(db, max_attempts=3, now=later) == []
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and f"schedule {schedule_id} is not run: its cron 'R * * * *'" in said[0]
    assert f"PATCH /schedules/{schedule_id} with a cron of fixed values" in said[0]
    with db.session() as session:
        session.execute(update(Schedule).values(cron="*/5 * * * *"))
    assert len(schedules.enqueue_due(db, max_attempts=3, now=later)) == 1


def test_a_stored_zone_the_zone_database_lost_stops_that_schedule_alone(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A schedule stored in a zone a tzdata update removed (`US/Pacific-New`, gone in 2020b):
    computing its due time raised ZoneInfoNotFoundError out of the tick, so `Worker.run_once`
    raised before claiming anything, every worker stopped with a traceback at every start,
    and no job ran. It is passed over with one error line per worker; the rest goes on, and a
    PATCH of its cron alone names the stored zone instead of a 500."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    bad, good = make_schedule(db, now=t0), make_schedule(db, now=t0)
    with db.session() as session:  # as a machine with an older zone database stored it
        session.execute(
            update(Schedule).where(Schedule.id == bad).values(timezone="US/Pacific-New")
        )
    ran: list[str] = []

    def executor(context: JobContext) -> JobOutcome:
        ran.append(context.job_id)
        return JobOutcome()

    worker = Worker(db, settings, executor=executor, worker_id="w")
    with caplog.at_level("ERROR", logger="jobs.schedules"):
        job_id = worker.run_once()  # the good schedule's run, enqueued and run
        assert job_id is not None and ran == [job_id]
        assert [j.id for j in scheduled_jobs(db, good)] == [job_id]
        assert worker.run_once() is None  # said once per worker, not at every tick
    assert scheduled_jobs(db, bad) == []
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert said[0].startswith(
        f"schedule {bad} is not run: its due times cannot be computed from cron '*/5 * * * *' "
        "in time zone 'US/Pacific-New' (ZoneInfoNotFoundError: "
    )
    assert f"PATCH /schedules/{bad} with a valid cron and timezone runs it again" in said[0]
    with db.session() as session, pytest.raises(schedules.ScheduleError) as refused:
        schedules.change(session, schedule_id=bad, cron="0 * * * *")
    assert str(refused.value).startswith(
        "field 'timezone': the stored 'US/Pacific-New' cannot be read any more ("
    )
    with db.session() as session:
        schedules.change(session, schedule_id=bad, cron="0 * * * *", timezone="America/Los_Angeles")
    assert (
        len(schedules.enqueue_due(db, max_attempts=3, now=datetime.now(UTC) + timedelta(hours=2)))
        == 2
    )


def test_two_live_workers_run_a_due_schedule_once(db: Database, settings: Settings) -> None:
    """The schedule tick inside `Worker.run_once`: both workers tick, one job results.

    The workers read the real clock, so the schedule is daily at a minute just passed: an
    every-minute cron made a second, rightful job whenever the ticks straddled a minute
    boundary (CI saw two jobs once)."""
    due = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    cron = f"{due.minute} {due.hour} * * *"
    schedule_id = make_schedule(db, cron=cron, now=due - timedelta(hours=1))
    with db.session() as session:  # due two minutes ago, next due tomorrow
        session.execute(update(Schedule).values(next_due_at=due))
    ran: list[str] = []
    lock = threading.Lock()

    def executor(context: JobContext) -> JobOutcome:
        with lock:
            ran.append(context.job_id)
        return JobOutcome()

    databases = [Database.from_settings(settings) for _ in range(2)]
    workers = [
        Worker(d, settings, executor=executor, worker_id=f"w{i}") for i, d in enumerate(databases)
    ]
    barrier = threading.Barrier(2)

    def work(worker: Worker) -> None:
        barrier.wait()
        for _ in range(3):
            worker.run_once()

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for database in databases:
        database.dispose()
    jobs = scheduled_jobs(db, schedule_id)
    assert len(jobs) == 1 and ran == [jobs[0].id]
    assert jobs[0].status == "succeeded" and jobs[0].due_at == due


def test_a_restarted_scheduler_recovers_its_lost_run_before_the_catch_up_due_time(
    db: Database, settings: Settings
) -> None:
    """The scheduler's worker killed (SIGKILL, OOM) while it trained yesterday's run, and
    restarted after today's due time: its first tick ran before the lease recovery, saw the
    lost run `running` (not waiting), enqueued today's catch-up, and the recovery then put
    the lost run back beside it: two back-to-back fits of the same file, the twins the
    "still queued" rule exists to prevent (docs/jobs.md: a run put back by a lost lease
    counts). The recovery comes first now: the lost run is retried, no catch-up enqueued."""
    due = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    cron = f"{due.minute} {due.hour} * * *"
    schedule_id = make_schedule(db, cron=cron, now=due - timedelta(days=1, hours=1))
    (lost,) = schedules.enqueue_due(db, max_attempts=3, now=due - timedelta(days=1))
    claimed = queue.claim(db, worker_id="killed", lease_seconds=0.05)
    assert claimed is not None and claimed.id == lost
    time.sleep(0.1)  # its lease expires: the worker is gone
    ran: list[str] = []

    def executor(context: JobContext) -> JobOutcome:
        ran.append(context.job_id)
        return JobOutcome()

    assert Worker(db, settings, executor=executor, worker_id="restarted").run_once() == lost
    assert [job.id for job in scheduled_jobs(db, schedule_id)] == [lost]
    assert ran == [lost]
    with db.session() as session:  # today's due time passed over for the retried run
        assert session.get_one(Schedule, schedule_id).next_due_at == due + timedelta(days=1)


def test_deleting_a_schedule_keeps_its_jobs(db: Database) -> None:
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)
    (job_id,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=5))
    with db.session() as session:
        schedules.remove(session, schedule_id=schedule_id)
    with db.session() as session, pytest.raises(schedules.ScheduleNotFoundError):
        schedules.remove(session, schedule_id=schedule_id)
    with db.session() as session:
        job = session.get_one(Job, job_id)
        assert job.schedule_id is None and job.status == "queued"


def test_a_paused_schedule_enqueues_nothing_and_resumes_from_now(db: Database) -> None:
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)  # every 5 minutes: due 12:05, 12:10, ...
    schedule_id = make_schedule(db, now=t0)
    with db.session() as session:
        assert schedules.change(session, schedule_id=schedule_id, paused=True).paused
    assert schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(hours=1)) == []
    resumed_at = datetime(2026, 6, 1, 13, 7, tzinfo=UTC)
    with db.session() as session:
        schedule = schedules.change(session, schedule_id=schedule_id, paused=False, now=resumed_at)
        # the runs due while paused are skipped: the next is the first after the resume
        assert schedule.next_due_at == datetime(2026, 6, 1, 13, 10, tzinfo=UTC)
    assert schedules.enqueue_due(db, max_attempts=3, now=resumed_at) == []
    (job_id,) = schedules.enqueue_due(db, max_attempts=3, now=resumed_at + timedelta(minutes=4))
    (job,) = scheduled_jobs(db, schedule_id)
    assert job.id == job_id and job.due_at == datetime(2026, 6, 1, 13, 10, tzinfo=UTC)


def test_a_pause_between_the_due_query_and_the_insert_enqueues_nothing(db: Database) -> None:
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)

    def pause() -> None:
        with db.session() as session:  # another client's PATCH, after the tick read the row
            schedules.change(session, schedule_id=schedule_id, paused=True)

    # (the PATCH came in latest_due before 2026-12-07; the tick holds the row's lock there now)
    late = cast(Database, _SeesDueThenWaits(db, pause))
    assert schedules.enqueue_due(late, max_attempts=3, now=t0 + timedelta(minutes=5)) == []
    assert scheduled_jobs(db, schedule_id) == []


def test_a_pause_committed_while_the_tick_enqueues_its_run_enqueues_nothing(
    db: Database,
) -> None:
    """On PostgreSQL the tick read the schedule unlocked: a PATCH pausing it, its transaction
    open while the tick looked (the row locked FOR UPDATE), answered 200 "paused", and the
    tick's insert, let through by that commit, enqueued a run of the paused schedule anyway.
    The tick reads the row FOR UPDATE now (SQLite's BEGIN IMMEDIATE serialised them already):
    it waits for the PATCH and sees the pause."""
    import time

    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)
    locked = threading.Event()

    def pause() -> None:  # another client's PATCH, slow to commit
        with db.session() as session:
            schedules.change(session, schedule_id=schedule_id, paused=True)
            locked.set()
            time.sleep(1.0)

    patch = threading.Thread(target=pause)
    patch.start()
    locked.wait(timeout=10)
    try:
        made = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=5))
    finally:
        patch.join()
    assert made == [] and scheduled_jobs(db, schedule_id) == []


@pytest.mark.parametrize("patched", ["before the tick's claim", "after the tick's enqueue"])
def test_a_new_cron_between_the_due_query_and_the_tick_end_keeps_its_next_due_time(
    db: Database, patched: str
) -> None:
    """A daily schedule made every 5 minutes by a PATCH while a tick enqueued its 03:00 run:
    the tick then moved next_due_at to the old cron's next day (its update kept only a later
    time), and the new cron's runs waited a day. The tick leaves a changed cron's time alone.
    The tick holds the schedule's row from its claim to its end (2026-12-07), so the PATCH
    comes before the claim (the new cron counts from the PATCH: 03:00 is not run) or after
    the 03:00 run is enqueued; either way the next run is 03:05."""
    t0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    schedule_id = make_schedule(db, cron="0 3 * * *", now=t0)
    tick = datetime(2026, 6, 1, 3, 0, 30, tzinfo=UTC)

    def patch() -> None:
        with db.session() as session:  # another client's PATCH
            schedules.change(session, schedule_id=schedule_id, cron="*/5 * * * *", now=tick)

    if patched == "before the tick's claim":  # after the tick read which schedules are due
        late = cast(Database, _SeesDueThenWaits(db, patch))
        assert schedules.enqueue_due(late, max_attempts=3, now=tick) == []
    else:
        (job_id,) = schedules.enqueue_due(db, max_attempts=3, now=tick)  # 03:00 was due
        patch()
    with db.session() as session:
        schedule = session.get_one(Schedule, schedule_id)
        assert schedule.cron == "*/5 * * * *"
        assert schedule.next_due_at == datetime(2026, 6, 1, 3, 5, tzinfo=UTC)  # not June 2nd
        if patched == "after the tick's enqueue":
            assert session.get_one(Job, job_id).due_at == datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
            session.get_one(Job, job_id).status = "succeeded"  # not waiting: the next is due
    (later,) = schedules.enqueue_due(db, max_attempts=3, now=tick + timedelta(minutes=5))
    with db.session() as session:
        assert session.get_one(Job, later).due_at == datetime(2026, 6, 1, 3, 5, tzinfo=UTC)


def test_a_new_cron_or_spec_applies_to_later_runs_only(db: Database) -> None:
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)
    (first,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=5))
    later = {**SPEC, "target": "z"}
    changed_at = t0 + timedelta(minutes=6)
    with db.session() as session:
        schedule = schedules.change(
            session, schedule_id=schedule_id, cron="0 * * * *", spec=later, now=changed_at
        )
        assert schedule.next_due_at == datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
    with db.session() as session, pytest.raises(schedules.ScheduleError, match="field 'cron'"):
        schedules.change(session, schedule_id=schedule_id, cron="0 3 * *")
    with db.session() as session, pytest.raises(schedules.ScheduleNotFoundError):
        schedules.change(session, schedule_id="nope", paused=True)
    (second,) = schedules.enqueue_due(db, max_attempts=3, now=changed_at + timedelta(hours=1))
    with db.session() as session:
        assert session.get_one(Job, first).spec == SPEC  # enqueued before: its spec kept
        assert session.get_one(Job, second).spec == later
        assert session.get_one(Schedule, schedule_id).cron == "0 * * * *"


def test_a_schedule_stored_under_an_older_zone_rule_can_still_be_paused(db: Database) -> None:
    """posix/ copies of zones were accepted before the forecast API's zone rule; such a stored
    schedule must still take a pause or a new spec (only a new zone is checked)."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)
    with db.session() as session:
        session.execute(
            update(Schedule).where(Schedule.id == schedule_id).values(timezone="posix/Europe/Paris")
        )
    with db.session() as session:
        schedule = schedules.change(session, schedule_id=schedule_id, paused=True)
        assert schedule.paused and schedule.timezone == "posix/Europe/Paris"
    with db.session() as session, pytest.raises(schedules.ScheduleError, match="'timezone'"):
        schedules.change(session, schedule_id=schedule_id, timezone="posix/Europe/Paris")


HEADER_ONLY = "data: only the header was checked at submission: the file is larger than ..."


def test_enqueued_jobs_carry_the_warnings_of_the_spec_they_were_made_with(db: Database) -> None:
    """A run is not checked when it is enqueued: its job carries the schedule's check, saying
    which schedule's (the id stays in the text when a deleted schedule clears schedule_id); a
    pause keeps the warnings, a new spec replaces them, enqueued jobs keep theirs."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    with db.session() as session:
        schedule_id = schedules.create(
            session, cron="*/5 * * * *", timezone="UTC", spec=SPEC, warnings=[HEADER_ONLY], now=t0
        ).id
    (first,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=5))
    carried = [f"schedule {schedule_id} (checked when its job was set): {HEADER_ONLY}"]
    with db.session() as session:
        assert session.get_one(Job, first).warnings == carried
        paused = schedules.change(session, schedule_id=schedule_id, paused=True)
        assert paused.warnings == [HEADER_ONLY]  # no new spec: the check still stands
        with pytest.raises(ValueError, match="pass them with the new spec"):
            schedules.change(session, schedule_id=schedule_id, warnings=[])
    changed_at = t0 + timedelta(minutes=6)
    with db.session() as session:
        later = {**SPEC, "target": "z"}
        schedule = schedules.change(
            session, schedule_id=schedule_id, spec=later, warnings=[], paused=False, now=changed_at
        )
        assert schedule.warnings == []  # the new spec's file was checked in full
    (second,) = schedules.enqueue_due(db, max_attempts=3, now=changed_at + timedelta(minutes=5))
    with db.session() as session:
        schedules.remove(session, schedule_id=schedule_id)
    with db.session() as session:
        kept = session.get_one(Job, first)
        assert kept.schedule_id is None and kept.warnings == carried  # still names it
        assert session.get_one(Job, second).warnings == []


def test_a_schedule_from_before_the_warnings_column_enqueues_jobs_with_none_recorded(
    db: Database,
) -> None:
    """NULL on the schedule (stored before migration 0006): unknown, so NULL on its jobs, not
    a claim that the data was checked in full."""
    t0 = datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    schedule_id = make_schedule(db, now=t0)
    with db.session() as session:
        assert session.get_one(Schedule, schedule_id).warnings is None
    (job_id,) = schedules.enqueue_due(db, max_attempts=3, now=t0 + timedelta(minutes=5))
    with db.session() as session:
        assert session.get_one(Job, job_id).warnings is None
