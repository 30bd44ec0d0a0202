"""The job database: an engine and sessions built from Settings, and Alembic's upgrade/downgrade.

    db = Database.from_settings(settings)     # no I/O yet
    upgrade(settings)                         # `urnn db upgrade`: migrations/ to head
    with db.session() as session: ...         # one transaction, committed on success

SQLite (the embedded default) runs in WAL mode with a busy timeout, foreign keys on, and every
transaction opened with `BEGIN IMMEDIATE`: a transaction takes the write lock when it starts, so
two workers never read the same queued job and then both update it (the claim in queue.py is
also conditional, checked by rowcount). PostgreSQL claims with `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from urnn_forecast.settings import Settings
from urnn_forecast.url_text import password_hidden

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0


# Seconds a new connection to a PostgreSQL server may take (libpq's connect_timeout) unless
# the URL sets its own: without one, libpq waits for ever on a server that accepts and says
# nothing (hung, overloaded, behind a proxy whose backend is gone), and every job API request
# held a threadpool thread for as long; a worker's start-up check hung the same way.
SERVER_CONNECT_TIMEOUT_S = 10


def server_connect_args(url: str, connect_timeout: int | None) -> dict[str, Any]:
    """The driver arguments of a server `url`: `connect_timeout` if given (a best-effort read
    that must give up sooner), else the URL's own connect_timeout, else
    SERVER_CONNECT_TIMEOUT_S for PostgreSQL through libpq (other drivers: none, as before)."""
    if connect_timeout is not None:
        return {"connect_timeout": connect_timeout}
    parsed = make_url(url)
    libpq = parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in _LIBPQ
    if not libpq or "connect_timeout" in parsed.query:
        return {}
    return {"connect_timeout": SERVER_CONNECT_TIMEOUT_S}


# PostgreSQL drivers that take libpq's connect_timeout (pg8000 refuses it with a TypeError).
_LIBPQ = frozenset({"psycopg", "psycopg2", "psycopg2cffi"})


def make_engine(url: str, *, connect_timeout: int | None = None) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, foreign keys and BEGIN IMMEDIATE;
    a PostgreSQL server a connect timeout (`server_connect_args`). `connect_timeout`: seconds
    a server connection may take (libpq's), for a best-effort read that must not wait out a
    server that is down."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        timeout = server_connect_args(url, connect_timeout)
        return create_engine(url, pool_pre_ping=True, connect_args=timeout)
    if parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a NotADirectoryError traceback from `urnn db upgrade`
            raise SchemaError(
                f"the job database {shown_url(url)}: its folder {folder} cannot be made "
                f"({error.strerror or error}); set URNN_DATABASE_URL, or URNN_VAR_DIR for the "
                "default SQLite file, to a place this user can write to"
            ) from None
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        assert isinstance(dbapi_connection, sqlite3.Connection)
        # Let SQLAlchemy's "begin" hook below emit BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class DatabaseBusyError(PoolTimeout):
    """No pooled connection came free within the pool's timeout (30 s): the requests before
    hold them all, stuck on a slow or locked database (a migration's lock, VACUUM FULL). The
    job API answers 503; a subclass of SQLAlchemy's, so callers catching it still do."""


@dataclass
class Database:
    """The engine and a session factory; `session()` is one committed-or-rolled-back unit."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str, *, connect_timeout: int | None = None) -> Database:
        engine = make_engine(url, connect_timeout=connect_timeout)
        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls.from_url(settings.resolved_database_url())

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self.sessions.begin() as session:
                yield session
        except PoolTimeout as error:  # checked out lazily, by the first statement
            raise DatabaseBusyError(str(error).split(" (Background", 1)[0]) from error

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Any:
    """Alembic's Config pointing at migrations/ and `url` (env.py reads it from here)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` on the database at `url`."""
    from alembic import command

    if make_url(url).get_backend_name() == "sqlite":
        make_engine(url).dispose()  # creates the SQLite file's folder
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """`alembic downgrade <revision>` (e.g. "base": drop every table the migrations made)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


# PostgreSQL's SQLSTATE for a write in a read-only transaction: a standby (a failover not
# done yet, the old primary back as a replica) or default_transaction_read_only. A state of
# the server that passes, unlike a read-only SQLite file.
POSTGRES_READ_ONLY = "25006"

PAUSE_REVISION = "0004"  # the migration that added schedules.paused


@dataclass(frozen=True)
class PausedSchedule:
    id: str
    cron: str
    timezone: str
    next_due_at: Any  # the stored due time (naive UTC), kept while paused


def paused_schedules(url: str) -> list[PausedSchedule]:
    """The schedules paused in a database at PAUSE_REVISION or later (raw SQL: it reads no
    model, so it runs whatever the code's own schema is). A downgrade below PAUSE_REVISION
    drops the flag and these run again; a release older than it never reads the flag."""
    from sqlalchemy import text

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, cron, timezone, next_due_at FROM schedules WHERE paused "
                    "ORDER BY created_at, id"
                )
            ).all()
    finally:
        engine.dispose()
    return [PausedSchedule(str(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]


class SchemaError(RuntimeError):
    """The job database cannot be used as it is: an unusable URL, a server out of reach, or a
    schema not at the migrations' head. The message says which and what to run."""


def shown_url(url: str) -> str:
    """`url` for messages: the password as *** (`password_hidden`, the text otherwise as
    written); "(unparsable)" when SQLAlchemy cannot read it."""
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError):
        return "(unparsable)"
    return password_hidden(url)


_SUPPORTED = (
    "the job database supports SQLite (sqlite:////abs/path/jobs.db) and PostgreSQL "
    "(postgresql+psycopg://user:password@host:5432/urnn)"
)


def _written_for_sqlalchemy(url: str) -> str:
    """For a `postgres://` URL (the scheme Heroku, Render and others hand out, which
    SQLAlchemy does not read): the same URL as SQLAlchemy reads it, password hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "postgres":
        return ""
    return f": write {shown_url('postgresql+psycopg://' + rest)}"


def driver_line(exc: Exception) -> str:
    """The driver's error as one log line: its kind and its first line, which says what failed
    (`UndefinedTable: relation "jobs" does not exist`, `connection failed: ...`). SQLAlchemy's
    own text adds the SQL statement and its parameters on further lines: a job's spec and its
    Idempotency-Key in the log, a streaming series' saved state, a record of a dozen lines per
    request during an outage."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0]}" if lines else type(orig).__name__


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Around a first connection: an unusable URL or an unreachable server becomes one
    SchemaError line instead of a driver traceback."""
    from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

    try:
        yield
    except (ArgumentError, NoSuchModuleError) as error:
        raise SchemaError(
            f"URNN_DATABASE_URL {shown_url(url)!r} is not a database URL SQLAlchemy can use: "
            f"{error}; {_SUPPORTED}{_written_for_sqlalchemy(url)}"
        ) from None
    except ImportError as error:  # a known dialect whose driver is not installed (mysql://)
        raise SchemaError(
            f"URNN_DATABASE_URL {shown_url(url)!r} needs a database driver that is not "
            f"installed ({error}); {_SUPPORTED}"
        ) from None
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise SchemaError(f"cannot reach the job database at {shown_url(url)}: {reason}") from None
    except DatabaseError as error:  # SQLite's "file is not a database": a CSV, say
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise SchemaError(
            f"URNN_DATABASE_URL {shown_url(url)!r} names something that is not a database the "
            f"service can use: {reason}"
        ) from None


def _scripts() -> Any:
    """The migrations of migrations/ (Alembic's ScriptDirectory); no database is read."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str | None:
    head: str | None = _scripts().get_current_head()
    return head


def _known_revision(revision: str) -> bool:
    from alembic.util.exc import CommandError

    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def revision_step(current: str | None, target: str) -> str | None:
    """Which way `target` lies from the database's `current` revision: "up", "down" or
    "same"; None where the migrations cannot place it without Alembic's own resolution (a
    relative step such as "-1", or an unknown name: Alembic's error says which). Alembic
    treats `upgrade base` at head, or `downgrade head`, as nothing to do and says nothing;
    the CLI must say which way to go instead."""
    from alembic.util.exc import CommandError

    if target.startswith(("+", "-")):
        return None
    script = _scripts()
    # oldest first (Alembic walks from the head); the history is linear, so a revision's
    # depth orders it
    order = [r.revision for r in reversed(list(script.walk_revisions()))]
    try:
        wanted = script.get_revision(target)
    except CommandError:
        return None
    depth: dict[str | None, int] = {None: 0}
    depth.update({rev: i + 1 for i, rev in enumerate(order)})
    here = depth.get(current)
    there = depth.get(wanted.revision if wanted is not None else None)
    if here is None or there is None:
        return None
    return "same" if here == there else ("up" if there > here else "down")


def missing_sqlite_file(url: str) -> bool:
    """A SQLite URL whose file does not exist yet: connecting would create it (and its
    folder), which reading commands must not do."""
    with reaching(url):
        parsed = make_url(url)
    database = parsed.database
    local = parsed.get_backend_name() == "sqlite" and database and database != ":memory:"
    return bool(local) and not Path(str(database)).is_file()


def check_schema(url: str) -> None:
    """Before a long-running process (a worker) starts polling: a database it cannot reach or a
    schema `urnn db upgrade` has not brought to head fails here with one clear line, not with
    a driver traceback on its first query. Creates nothing (no SQLite folder or file)."""
    if missing_sqlite_file(url):
        raise SchemaError(
            f"no job database at {shown_url(url)}: run `urnn db upgrade` (same URNN_DATABASE_URL)"
        )
    with reaching(url):
        current = current_revision(url)
    head = head_revision()
    if current is not None and current != head and not _known_revision(current):
        raise SchemaError(
            f"the job database at {shown_url(url)} is at revision {current}, newer than this "
            f"installation's {head}: upgrade urnn-forecast here to the version that migrated it "
            "(or, if that upgrade was rolled back, `urnn db downgrade` with the newer version)"
        )
    if current != head:
        state = "has no schema" if current is None else f"is at revision {current}, not {head}"
        raise SchemaError(
            f"the job database at {shown_url(url)} {state}: run `urnn db upgrade` (same "
            "URNN_DATABASE_URL)"
        )
