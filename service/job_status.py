"""The job queue's state for /metrics, read off the event loop at most every `ttl` seconds.

    reader = JobStatusReader(settings.resolved_database_url())
    reading = reader.latest()   # the last reading; a stale one starts a refresh in a thread

Why: a retraining job that fails (bad new data, a full disk, a changed column) or a queue no
worker takes (the worker died) was seen by nobody until someone asked GET /jobs; the alerts
UrnnRetrainingFailed and UrnnJobsNotPickedUp need numbers in Prometheus. The queue lives in
the job database, which every replica can read, so each scrape answers from it.

A scrape must not wait on that database: /metrics runs on the event loop that serves
/forecast, and a server that is down would hold it for the connection timeout. So `latest`
never reads: it answers the last reading and, when that is older than `ttl`, starts one read
in a daemon thread (one at a time) whose result the next scrape shows. The reading says
whether the last attempt succeeded (`urnn_jobs_database_up`), and a read still in flight after
READ_DEADLINE_S says down. SQLite reads take no write lock
(the job database's own engine opens every transaction with BEGIN IMMEDIATE, which would queue
a scrape behind a worker's writes) and wait at most a second; a server connection at most
two. An embedded default whose SQLite file does not exist (no job was ever submitted here)
has no queue to report: `latest` answers None and the job metrics are left out, rather than
creating the file or saying the database is down. A SQLite file named by URNN_DATABASE_URL
(`configured`) is different: the job API answers 503 without it (moved, a volume not mounted,
never migrated), so it reads as down (`urnn_jobs_database_up` 0, UrnnJobDatabaseUnreadable),
still without creating it; before, its job metrics vanished and that alert stayed silent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jobs.db import make_engine
from jobs.queue import JobSummary, summary
from urnn_forecast.tracking import sqlite_path

logger = logging.getLogger(__name__)

SQLITE_READ_TIMEOUT_S = 1.0
SERVER_CONNECT_TIMEOUT_S = 2
# A read in flight longer than this reads as down. The timeouts above bound a connection being
# made, not a query on a pooled connection to a server that stopped answering (a partition:
# no reset, so the SELECT waits out TCP's retransmissions, a quarter of an hour or more); that
# read held the one slot, no other started, and every scrape showed the last reading as up.
READ_DEADLINE_S = 30.0
# How old a reading may grow before the next look starts a read. The service also looks every
# TTL_S / 3 between scrapes (service.state), so a scrape shows a reading at most about
# 1.3 x TTL_S old in every worker process of --workers, whichever of them it reaches.
TTL_S = 15.0


class MissingJobDatabaseError(Exception):
    """The configured SQLite job database file does not exist (connecting would create it)."""


@dataclass(frozen=True)
class JobStatusReading:
    """The last summary read (None before the first success) and whether the latest read
    succeeded."""

    summary: JobSummary | None
    up: bool


class JobStatusReader:
    """The latest JobStatusReading of one job database, refreshed in the background.
    `configured`: the URL was given (URNN_DATABASE_URL), not the embedded default, so a
    missing SQLite file is a database down rather than no queue at all."""

    def __init__(
        self,
        url: str,
        *,
        configured: bool = False,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.configured = configured
        self.ttl = TTL_S if ttl is None else ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._reading: JobStatusReading | None = None
        self._read_at: float | None = None
        self._reading_now: threading.Thread | None = None
        self._started_at = 0.0
        self._overdue_said = False

    def latest(self) -> JobStatusReading | None:
        """The last reading (None: no queue here, or none read yet); starts a refresh when it
        is older than `ttl`. Never waits on the database."""
        if self._absent():
            return None
        with self._lock:
            stale = self._read_at is None or self._clock() - self._read_at >= self.ttl
            if stale and self._reading_now is None:
                self._started_at = self._clock()
                self._reading_now = threading.Thread(
                    target=self._refresh, name="urnn-job-status", daemon=True
                )
                self._reading_now.start()
            if self._reading_now is not None and self._overdue():
                return self._down()
            return self._reading

    def _down(self) -> JobStatusReading:
        """A reading that says the database cannot be read, with the last good counts."""
        return JobStatusReading(self._reading.summary if self._reading else None, up=False)

    def _overdue(self) -> bool:
        """Whether the read in flight has run past READ_DEADLINE_S (said once per read)."""
        if self._clock() - self._started_at <= READ_DEADLINE_S:
            return False
        if not self._overdue_said:
            self._overdue_said = True
            logger.warning(
                f"job metrics: a read of the job database has not returned in "
                f"{READ_DEADLINE_S:g} s: reported as down until one does"
            )
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Until the refresh in flight (if any) is done: for tests and the first scrape."""
        thread = self._reading_now
        if thread is not None:
            thread.join(timeout)

    def close(self, timeout: float = 1.0) -> None:
        """Let go of the engine's pooled connections (at shutdown), after the read in flight
        if it ends within `timeout`: a stuck one keeps its connection until it returns."""
        self.wait(timeout)
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def refresh_now(self) -> JobStatusReading | None:
        """Read once on this thread (tests; `latest` reads in the background)."""
        if self._absent():
            return None
        self._refresh()
        return self._reading

    def _absent(self) -> bool:
        return not self.configured and self._file_missing()

    def _file_missing(self) -> bool:
        path = sqlite_path(self.url)
        return path is not None and not path.exists()

    def _read(self) -> JobSummary:
        if self._file_missing():  # checked before every read: a pooled connection would
            # keep reading a file deleted under it, and a new one would create it empty
            raise MissingJobDatabaseError(f"no job database at {self.url}")
        with Session(self._connect()) as session:
            return summary(session)

    def _refresh(self) -> None:
        try:
            reading = JobStatusReading(self._read(), up=True)
        # ImportError: a dialect whose driver is not installed (mysql://), raised when the
        # engine is made; it ended this thread with a traceback and left the read in flight
        # for good, so no scrape read again (the job API answers such a URL with a 503)
        except (SQLAlchemyError, MissingJobDatabaseError, ImportError) as error:
            first = self._reading is None or self._reading.up
            if first:  # once per outage, not every ttl
                logger.warning(f"job metrics: the job database cannot be read: {error!r:.300}")
            reading = self._down()
        with self._lock:
            self._reading, self._read_at = reading, self._clock()
            self._reading_now = None
            self._overdue_said = False

    def _connect(self) -> Engine:
        if self._engine is None:
            if sqlite_path(self.url) is not None:
                # not jobs.db.make_engine: its BEGIN IMMEDIATE takes the write lock
                self._engine = create_engine(
                    self.url, connect_args={"timeout": SQLITE_READ_TIMEOUT_S}
                )
            else:
                self._engine = make_engine(self.url, connect_timeout=SERVER_CONNECT_TIMEOUT_S)
        return self._engine
