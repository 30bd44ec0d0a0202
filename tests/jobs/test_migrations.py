"""The schema is Alembic's: upgrade -> downgrade -> upgrade on SQLite and PostgreSQL, and the
ORM classes match what the migrations build."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from jobs.db import (
    Database,
    SchemaError,
    check_schema,
    current_revision,
    downgrade,
    make_engine,
    upgrade,
)
from jobs.models import Base, Job, Schedule
from urnn_forecast.cli import main
from urnn_forecast.settings import Settings, get_settings

TABLES = {"jobs", "schedules", "series_snapshots"}
HEAD = "0007"  # the newest migration: each new one changes it here, and only here


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    upgrade(database_url)
    assert current_revision(database_url) == HEAD
    assert tables(database_url) == TABLES
    downgrade(database_url, "base")
    assert current_revision(database_url) is None
    assert tables(database_url) == set()
    upgrade(database_url)
    assert tables(database_url) == TABLES
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"jobs/models.py and migrations/ disagree: {diff}"


KEPT_ROWS = {
    # revision: (the row stored before it, read after it, read back after its downgrade)
    "0003": (  # the job idempotency key
        "INSERT INTO jobs (id, status, spec, created_at, attempts, max_attempts, "
        "cancel_requested) VALUES ('job-1', 'succeeded', '{}', :at, 1, 3, false)",
        ("SELECT id, status, idempotency_key FROM jobs", ("job-1", "succeeded", None)),
        ("SELECT id, status FROM jobs", ("job-1", "succeeded")),
    ),
    "0004": (  # schedules.paused: stored schedules keep running
        "INSERT INTO schedules (id, cron, timezone, spec, created_at, next_due_at) "
        "VALUES ('nightly', '0 3 * * *', 'UTC', '{}', :at, :at)",
        ("SELECT id, cron, paused FROM schedules", ("nightly", "0 3 * * *", False)),
        ("SELECT id, cron FROM schedules", ("nightly", "0 3 * * *")),
    ),
    "0005": (  # series_snapshots.model_key: a stored state is rebuilt once, not lost
        "INSERT INTO series_snapshots (series_id, model_version, freq, first_ns, last_ns, "
        "points_seen, state, tail, revision, created_at, updated_at) VALUES ('m1', '1', 'h', "
        "0, 0, 1, '', '', 1, :at, :at)",
        ("SELECT series_id, model_version, model_key FROM series_snapshots", ("m1", "1", None)),
        ("SELECT series_id, points_seen FROM series_snapshots", ("m1", 1)),
    ),
    "0007": (  # schedules.idempotency_key: a stored schedule has none, and keeps running
        "INSERT INTO schedules (id, cron, timezone, spec, created_at, next_due_at, paused) "
        "VALUES ('nightly', '0 3 * * *', 'UTC', '{}', :at, :at, false)",
        ("SELECT id, idempotency_key, request_hash FROM schedules", ("nightly", None, None)),
        ("SELECT id, cron, paused FROM schedules", ("nightly", "0 3 * * *", False)),
    ),
}


@pytest.mark.parametrize("revision", list(KEPT_ROWS))
def test_a_migration_keeps_the_rows_stored_before_it_both_ways(
    database_url: str, revision: str
) -> None:
    insert, (after, expected_after), (before, expected_before) = KEPT_ROWS[revision]
    previous = f"{int(revision) - 1:04d}"
    if current_revision(database_url) is not None:  # a server database another test migrated
        downgrade(database_url, "base")
    upgrade(database_url, previous)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(insert), {"at": datetime(2026, 1, 1)})
        upgrade(database_url, revision)
        with engine.connect() as connection:
            assert [tuple(r) for r in connection.execute(text(after))] == [expected_after]
        downgrade(database_url, previous)
        with engine.connect() as connection:
            assert [tuple(r) for r in connection.execute(text(before))] == [expected_before]
    finally:
        engine.dispose()
    downgrade(database_url, "base")


def test_downgrading_the_paused_column_keeps_each_jobs_schedule(database_url: str) -> None:
    """On SQLite a batch copy of `schedules` set every job's schedule_id to null (an audit's):
    the (schedule_id, due_at) uniqueness that makes each due time run once went with it."""
    if current_revision(database_url) is not None:
        downgrade(database_url, "base")
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO schedules (id, cron, timezone, spec, created_at, next_due_at, "
                    "paused) VALUES ('nightly', '0 3 * * *', 'UTC', '{}', :at, :at, false)"
                ),
                {"at": datetime(2026, 1, 1)},
            )
            connection.execute(
                text(
                    "INSERT INTO jobs (id, status, spec, created_at, attempts, max_attempts, "
                    "cancel_requested, schedule_id, due_at) VALUES ('job-1', 'queued', '{}', "
                    ":at, 0, 3, false, 'nightly', :at)"
                ),
                {"at": datetime(2026, 1, 1)},
            )
        downgrade(database_url, "0003")
        upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, schedule_id FROM jobs")).all()
        assert [tuple(r) for r in rows] == [("job-1", "nightly")]
    finally:
        engine.dispose()
    downgrade(database_url, "base")


def test_the_warnings_columns_arrive_null_hold_a_list_and_go_keeping_every_link(
    database_url: str,
) -> None:
    """0006: a job and a schedule stored before it read NULL (not recorded); a list stored
    after it comes back as the list on both backends; its downgrade drops the two columns and
    nothing else: the rows stay, and so does the job's schedule (no batch copy on SQLite)."""
    if current_revision(database_url) is not None:
        downgrade(database_url, "base")
    upgrade(database_url, "0005")
    at = {"at": datetime(2026, 1, 1)}
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO schedules (id, cron, timezone, spec, created_at, next_due_at) "
                    "VALUES ('nightly', '0 3 * * *', 'UTC', '{}', :at, :at)"
                ),
                at,
            )
            connection.execute(
                text(
                    "INSERT INTO jobs (id, status, spec, created_at, attempts, max_attempts, "
                    "cancel_requested, schedule_id, due_at) VALUES ('job-1', 'queued', '{}', "
                    ":at, 0, 3, false, 'nightly', :at)"
                ),
                at,
            )
        upgrade(database_url, "0006")
        with engine.connect() as connection:
            for table in ("jobs", "schedules"):
                found = connection.execute(
                    text(f"SELECT warnings FROM {table} WHERE warnings IS NULL")
                )
                assert len(found.all()) == 1, table
        upgrade(database_url)  # the models are the head's
        database = Database.from_url(database_url)
        try:
            with database.session() as session:
                job = session.get(Job, "job-1")
                schedule = session.get(Schedule, "nightly")
                assert job is not None and schedule is not None
                assert (job.warnings, schedule.warnings) == (None, None)
                job.warnings = ["data: only the header was checked"]
                schedule.warnings = []
            with database.session() as session:
                job, schedule = session.get(Job, "job-1"), session.get(Schedule, "nightly")
                assert job is not None and schedule is not None
                assert job.warnings == ["data: only the header was checked"]
                assert schedule.warnings == []
        finally:
            database.dispose()
        downgrade(database_url, "0005")
        columns = inspect(engine)
        assert "warnings" not in {c["name"] for c in columns.get_columns("jobs")}
        assert "warnings" not in {c["name"] for c in columns.get_columns("schedules")}
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, schedule_id FROM jobs")).all()
            assert [tuple(r) for r in rows] == [("job-1", "nightly")]
            rows = connection.execute(text("SELECT id, cron FROM schedules")).all()
            assert [tuple(r) for r in rows] == [("nightly", "0 3 * * *")]
    finally:
        engine.dispose()
    upgrade(database_url)  # and back up again
    assert current_revision(database_url) == HEAD
    downgrade(database_url, "base")


def test_a_database_newer_than_the_code_is_named_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:  # as a later release's migration would leave it
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaError, match=r"is at revision 0099, newer than this installation"):
        check_schema(url)


def test_unique_schedule_due_time_is_in_the_schema(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        uniques = inspect(engine).get_unique_constraints("jobs")
    finally:
        engine.dispose()
    assert any(sorted(u["column_names"]) == ["due_at", "schedule_id"] for u in uniques)


def test_cli_db_upgrade_on_the_default_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    assert main(["db", "upgrade"], settings=settings) == 0
    assert (tmp_path / "var" / "jobs.db").is_file()
    assert f"upgraded to {HEAD}" in capsys.readouterr().out
    assert main(["db", "downgrade", "base"], settings=settings) == 0
    assert main(["db", "current"], settings=settings) == 0
    assert "empty" in capsys.readouterr().out


def test_cli_db_upgrade_where_the_file_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URNN_VAR_DIR below a file ended `urnn db upgrade` in a NotADirectoryError traceback
    (a contract walk-through)."""
    taken = tmp_path / "taken"
    taken.write_text("")
    settings = Settings(var_dir=taken / "var")
    assert main(["db", "upgrade"], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn db: error: the job database sqlite:///{taken}/var/jobs.db: its ")
    assert f"folder {taken}/var cannot be made (Not a directory); set URNN_DATABASE_URL" in err


def test_cli_db_says_which_way_a_revision_lies_instead_of_claiming_a_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alembic does nothing for `upgrade base` at head or `downgrade head` below it; the CLI
    said "upgraded to 0006" / "downgraded to 0003" as if it had migrated."""
    settings = Settings(var_dir=tmp_path / "var")
    assert main(["db", "upgrade"], settings=settings) == 0
    capsys.readouterr()
    assert main(["db", "upgrade"], settings=settings) == 0
    assert f"already at {HEAD}; nothing to do" in capsys.readouterr().out
    assert main(["db", "upgrade", "base"], settings=settings) == 2
    err = capsys.readouterr().err
    assert f"the database is at {HEAD}, past 'base'" in err
    assert "`urnn db downgrade base` goes there" in err
    assert main(["db", "downgrade", "0003"], settings=settings) == 0
    capsys.readouterr()
    assert main(["db", "downgrade", "head"], settings=settings) == 2
    err = capsys.readouterr().err
    assert "the database is at 0003, below 'head'" in err
    assert "`urnn db upgrade head` goes there" in err
    assert main(["db", "current"], settings=settings) == 0
    assert "0003" in capsys.readouterr().out  # nothing was migrated by the refusals
    assert main(["db", "downgrade", "base"], settings=settings) == 0
    assert main(["db", "downgrade", "base"], settings=settings) == 0
    assert "already at base (no schema); nothing to do" in capsys.readouterr().out


def test_a_worker_refuses_a_database_without_the_schema_in_one_line(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(var_dir=tmp_path / "var", database_url=database_url)
    engine = make_engine(database_url)
    with engine.connect():  # the database exists (SQLite: the file is made here)
        pass
    engine.dispose()
    if current_revision(database_url) is not None:  # a server database another test migrated
        downgrade(database_url, "base")
    with pytest.raises(SchemaError, match=r"has no schema: run `urnn db upgrade`"):
        check_schema(database_url)
    assert main(["worker", "--until-idle"], settings=settings) == 2
    assert "urnn worker: error: the job database at" in capsys.readouterr().err
    upgrade(database_url, "0001")
    with pytest.raises(SchemaError, match=f"is at revision 0001, not {HEAD}"):
        check_schema(database_url)
    upgrade(database_url)
    check_schema(database_url)  # at head: the worker may start
    assert main(["worker", "--until-idle"], settings=settings) == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://x", "is not a database URL SQLAlchemy can use"),
        ("mysql://x@y/z", "'mysql://x@y/z' needs a database driver that is not installed"),
        ("::::", "URNN_DATABASE_URL '(unparsable)' is not a database URL"),
        (
            "postgresql://postgres:secret@127.0.0.1:1/test",
            "cannot reach the job database at postgresql://postgres:***@127.0.0.1:1/test",
        ),
    ],
)
def test_unusable_database_urls_are_named_without_the_password(url: str, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)):
        check_schema(url)


@pytest.mark.parametrize(
    ("url", "written"),
    [
        ("postgres://u:secret@db:5432/urnn", "postgresql+psycopg://u:***@db:5432/urnn"),
        ("foo://x", None),
    ],
)
def test_a_url_of_no_known_database_names_the_ones_supported(url: str, written: str | None) -> None:
    """`postgres://` (the scheme Heroku, Render and others hand out) was answered "Can't load
    plugin: sqlalchemy.dialects:postgres" and nothing more: the URL's scheme is now said,
    with the databases the job database supports and, for that one, how to write it."""
    with pytest.raises(SchemaError) as raised:
        check_schema(url)
    said = str(raised.value)
    assert "supports SQLite (sqlite:////abs/path/jobs.db) and PostgreSQL" in said, said
    assert "secret" not in said
    if written is not None:
        assert f"write {written}" in said, said


@pytest.mark.parametrize("flag", ["uri=true", "uri=1", "mode=rwc&uri=yes"])
def test_a_sqlite_uri_filename_is_refused_by_name_and_makes_no_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: str,
) -> None:
    """SQLite's URI filenames (`sqlite:///file:/abs/jobs.db?uri=true`, which SQLAlchemy
    passes on): `urnn db upgrade` made a folder tree named `file:` in the working directory
    (the database read as a relative path), and the service answered 503 "no job database
    ... run `urnn db upgrade`" whatever was run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("URNN_DATABASE_URL", f"sqlite:///file:{tmp_path}/db/jobs.db?{flag}")
    get_settings.cache_clear()  # read from the variables just set, not an earlier test's
    try:
        code = main(["db", "upgrade"])
    finally:
        get_settings.cache_clear()
    assert code == 2
    err = capsys.readouterr().err
    assert "URNN_DATABASE_URL=" in err
    assert "is a SQLite URI filename (uri=true), which the job database does not read" in err
    assert list(tmp_path.iterdir()) == []  # no `file:` folder, no database


def test_a_migration_the_database_refuses_is_one_line_saying_where_it_stands(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database that already holds a `jobs` table of another application: `urnn db upgrade`
    ended in a traceback ending in the CREATE TABLE. One line: the driver's reason and the
    revision the database is left at (the migration's transaction rolled back)."""
    if current_revision(database_url) is not None:  # a server database another test migrated
        downgrade(database_url, "base")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE jobs (x INTEGER)"))
    finally:
        engine.dispose()
    settings = Settings(var_dir=tmp_path / "var", database_url=database_url)
    assert main(["db", "upgrade"], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"urnn db upgrade: error: {database_url}: the database refused the ")
    assert "already exists" in err and err.endswith("; it is at base (no schema)\n"), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert tables(database_url) == {"jobs"}  # theirs, left as it was


def test_checking_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "not" / "here" / "jobs.db"
    with pytest.raises(SchemaError, match="no job database at sqlite:///"):
        check_schema(f"sqlite:///{path}")
    assert not (tmp_path / "not").exists()


def test_urnn_db_names_an_unreachable_server_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://postgres:secret@127.0.0.1:1/test"
    settings = Settings(var_dir=tmp_path / "var", database_url=url)
    for action in ("upgrade", "current"):
        assert main(["db", action], settings=settings) == 2
        err = capsys.readouterr().err
        assert err.startswith("urnn db: error: cannot reach the job database at postgresql://")
        assert "secret" not in err and "Traceback" not in err


def test_a_file_that_is_not_a_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """URNN_DATABASE_URL naming a CSV: sqlalchemy's DatabaseError traceback, exit 1."""
    path = tmp_path / "notadb.csv"
    path.write_text("date,OT\n2020-01-01,1\n" * 50)
    settings = Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{path}")
    assert main(["db", "current"], settings=settings) == 2
    err = capsys.readouterr().err
    assert "names something that is not a database" in err and "file is not a database" in err
    assert path.read_text().startswith("date,OT")  # left as it was


def test_urnn_db_reads_without_creating_and_names_an_unknown_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "not" / "here" / "jobs.db"
    settings = Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{path}")
    assert main(["db", "current"], settings=settings) == 0
    assert "no database file yet (run `urnn db upgrade` to create it)" in capsys.readouterr().out
    assert main(["db", "downgrade", "base"], settings=settings) == 2  # an error: on stderr
    assert capsys.readouterr().err.startswith("urnn db downgrade: error: sqlite:///")
    assert not (tmp_path / "not").exists()
    assert main(["db", "upgrade"], settings=settings) == 0
    capsys.readouterr()
    for action in ("upgrade", "downgrade"):
        assert main(["db", action, "bogus"], settings=settings) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"urnn db {action}: error: Can't locate revision identified by 'bogus' ('head'"
        )
        assert "Traceback" not in err


def test_a_downgrade_below_the_pause_names_each_paused_schedule_that_runs_again(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade walk (2026-12-06): a schedule paused under 0007, rolled back to the
    2026-12-03 release, was enqueued by its worker at its next due time: below 0004 the flag
    is gone (and that release never read it), and `urnn db downgrade` said nothing about it."""
    if current_revision(database_url) is not None:
        downgrade(database_url, "base")
    settings = Settings(var_dir=tmp_path / "var", database_url=database_url)
    assert main(["db", "upgrade"], settings=settings) == 0
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            for sid, due, paused in [
                ("nightly", datetime(2026, 1, 1, 3), True),  # paused, its due time passed
                ("yearly", datetime(2999, 1, 1, 2), True),
                ("hourly", datetime(2026, 1, 1, 4), False),
            ]:
                connection.execute(
                    text(
                        "INSERT INTO schedules (id, cron, timezone, spec, created_at, "
                        "next_due_at, paused) VALUES (:id, '0 3 * * *', 'Europe/Paris', '{}', "
                        ":at, :due, :paused)"
                    ),
                    {"id": sid, "at": datetime(2026, 1, 1), "due": due, "paused": paused},
                )
    finally:
        engine.dispose()
    capsys.readouterr()
    assert main(["db", "downgrade", "0005"], settings=settings) == 0  # the pause is kept
    assert "warning" not in capsys.readouterr().err
    assert main(["db", "downgrade", "-2"], settings=settings) == 0  # 0003: a relative step
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "urnn db downgrade: warning: schedule nightly ('0 3 * * *', Europe/Paris) was paused; "
        "revision 0003 has no pause, so it runs again at the next worker tick (its stored due "
        "time 2026-01-01T03:00Z has passed): DELETE /schedules/nightly if it must not run",
        "urnn db downgrade: warning: schedule yearly ('0 3 * * *', Europe/Paris) was paused; "
        "revision 0003 has no pause, so it runs again at 2999-01-01T02:00Z: "
        "DELETE /schedules/yearly if it must not run",
    ]
    assert main(["db", "downgrade", "0002"], settings=settings) == 0  # nothing paused to lose
    assert "warning" not in capsys.readouterr().err
    downgrade(database_url, "base")
