"""Durable snapshots of streamed series' recurrent state, with optimistic concurrency.

The stream engine keeps each series' state hot in memory and persists it here (table
`series_snapshots`, jobs.models.SeriesSnapshot) so that a restart, or another replica, resumes a
series where it stopped instead of replaying its history. Several processes may advance the same
series, so every write is conditional on the revision its writer started from:

    repo = SnapshotRepository(db)
    snap = repo.load("meter-17")                     # None: a series never seen
    ... advance the state ...
    result = repo.save_many([(new_snap, snap.revision if snap else None)])
    if "meter-17" in result.conflicts:               # someone else saved first: reload, redo
        ...
    revision = result.revisions["meter-17"]          # start the next save from this one

Statements are Core INSERT/UPDATE/DELETE checked by rowcount (and IntegrityError for inserts),
so SQLite and PostgreSQL behave the same; nothing here reads a row before writing it, so there is
no read-then-write race to lose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobs.db import Database
from jobs.models import SeriesSnapshot, utcnow

# The Core table: statements on it skip the ORM's identity map and give plain rowcounts.
TABLE: Table = SeriesSnapshot.metadata.tables[SeriesSnapshot.__tablename__]


@dataclass(frozen=True)
class Snapshot:
    """One series' persisted state, as the stream engine hands it in and gets it back.

    `state` and `tail` are opaque bytes (the engine's own serialisation); times are epoch
    nanoseconds (UTC) of the first and last consumed points. `revision` is the revision this
    snapshot has in the database: the one it was loaded at, and after a save the new one
    (`SaveResult.revisions`); `save_many` ignores it on input and uses the expected revision
    passed beside each snapshot instead. `updated_at` is set by the database side (None on a
    snapshot not yet saved; save_many ignores it).
    """

    series_id: str
    model_version: str
    model_key: str | None  # name/version@run_id of the model; None for rows saved before it
    freq: str  # pandas offset alias, e.g. "h"
    tz: str | None  # IANA name of the series' timestamps, None when naive
    first_ns: int
    last_ns: int
    points_seen: int
    state: bytes
    tail: bytes
    revision: int
    updated_at: datetime | None = None


@dataclass(frozen=True)
class SaveResult:
    """What `save_many` did: the ids that conflicted (not written) and the new revisions.

    `revisions` maps every id that was written to the revision it now has in the database
    (1 for an insert, expected + 1 for an update): pass it as the expected revision of the
    next save of that series. Conflicted ids are absent from it.
    """

    conflicts: list[str] = field(default_factory=list)
    revisions: dict[str, int] = field(default_factory=dict)


class SnapshotConflictError(RuntimeError):
    """For callers that want to raise on a conflict; `save_many` itself never raises it."""

    def __init__(self, series_ids: Sequence[str]) -> None:
        super().__init__(f"snapshot revision conflict for {', '.join(series_ids)}")
        self.series_ids = list(series_ids)


def _values(snapshot: Snapshot) -> dict[str, Any]:
    """The columns a save writes (not series_id, revision or timestamps: the caller sets them)."""
    return {
        "model_version": snapshot.model_version,
        "model_key": snapshot.model_key,
        "freq": snapshot.freq,
        "tz": snapshot.tz,
        "first_ns": snapshot.first_ns,
        "last_ns": snapshot.last_ns,
        "points_seen": snapshot.points_seen,
        "state": snapshot.state,
        "tail": snapshot.tail,
    }


class SnapshotRepository:
    """Loads, saves (revision-checked), deletes and counts snapshots in the job database.

    Stateless apart from the `Database`: safe to share between threads, since each call opens
    its own session (one transaction).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, series_id: str) -> Snapshot | None:
        """The snapshot of `series_id`, or None if the series has none (never saved, deleted)."""
        with self.db.session() as session:
            row = session.execute(select(TABLE).where(TABLE.c.series_id == series_id)).first()
        if row is None:
            return None
        return Snapshot(
            series_id=row.series_id,
            model_version=row.model_version,
            model_key=row.model_key,
            freq=row.freq,
            tz=row.tz,
            first_ns=int(row.first_ns),
            last_ns=int(row.last_ns),
            points_seen=int(row.points_seen),
            # Some drivers hand binary columns back as memoryview: the engine wants bytes.
            state=bytes(row.state),
            tail=bytes(row.tail),
            revision=int(row.revision),
            updated_at=row.updated_at,  # aware UTC: UtcDateTime applies to Core selects too
        )

    def save_many(self, snapshots: Sequence[tuple[Snapshot, int | None]]) -> SaveResult:
        """Write many snapshots in one transaction, each only if nobody saved it in between.

        Each item is (snapshot to write, the revision its writer started from), the latter
        None when the writer created the series (it loaded nothing):
        - None: INSERT with revision 1; if the row already exists (another writer created it
          first) that id conflicts. Each insert runs in its own SAVEPOINT, so its failure
          does not abort the transaction and the other rows of the call still commit.
        - an int: UPDATE ... SET ..., revision = expected + 1 WHERE series_id = ? AND
          revision = expected; 0 rows (stale revision, or the row was deleted) -> conflict.
        Conflicted ids are not written; the others are, atomically together. Conflicts are
        reported, never raised (the caller decides: reload and redo, or drop its state);
        other database errors raise and roll the whole call back. One `updated_at` is
        stamped on every row the call writes; `created_at` is set on insert only.

        Raises ValueError, before writing anything, for a negative points_seen or an
        expected revision < 1 (the table's CHECK would reject them, and an insert's
        IntegrityError must mean "already exists").
        """
        for snapshot, expected in snapshots:
            if snapshot.points_seen < 0:
                raise ValueError(f"{snapshot.series_id}: points_seen {snapshot.points_seen} < 0")
            if expected is not None and expected < 1:
                raise ValueError(f"{snapshot.series_id}: expected revision {expected} < 1")
        result = SaveResult()
        now = utcnow()
        with self.db.session() as session:
            for snapshot, expected in snapshots:
                sid = snapshot.series_id
                if expected is None:
                    statement = insert(TABLE).values(
                        series_id=sid,
                        revision=1,
                        created_at=now,
                        updated_at=now,
                        **_values(snapshot),
                    )
                    try:
                        with session.begin_nested():
                            session.execute(statement)
                    except IntegrityError:
                        result.conflicts.append(sid)
                    else:
                        result.revisions[sid] = 1
                    continue
                # The Connection's execute is typed CursorResult, which has the rowcount.
                updated = session.connection().execute(
                    update(TABLE)
                    .where(TABLE.c.series_id == sid, TABLE.c.revision == expected)
                    .values(revision=expected + 1, updated_at=now, **_values(snapshot))
                )
                if updated.rowcount == 1:
                    result.revisions[sid] = expected + 1
                else:
                    result.conflicts.append(sid)
        return result

    def delete(self, series_id: str) -> bool:
        """Forget a series' snapshot (unconditionally); True if there was one."""
        with self.db.session() as session:
            deleted = session.connection().execute(
                delete(TABLE).where(TABLE.c.series_id == series_id)
            )
            return deleted.rowcount > 0

    def count(self) -> int:
        """How many series have a snapshot (for metrics and housekeeping)."""
        with self.db.session() as session:
            return int(session.execute(select(func.count()).select_from(TABLE)).scalar_one())
