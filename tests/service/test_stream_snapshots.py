"""The snapshot repository on real databases: SQLite (a file in tmp_path) and PostgreSQL.

The PostgreSQL fixtures are the job tests' (tests/jobs/conftest.py): each test gets a freshly
created database, migrated to head here, and dropped afterwards; they skip when the server is
unreachable, and fail instead where CI or URNN_TEST_REQUIRE_POSTGRES is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select

from jobs.db import Database, current_revision, downgrade, head_revision, make_engine, upgrade
from jobs.models import SeriesSnapshot
from service.stream_snapshots import SaveResult, Snapshot, SnapshotRepository

# Fixtures shared with the job tests: `database_url` is parametrized over SQLite and PostgreSQL.
from tests.jobs.conftest import database_url, postgres_server, postgres_url

__all__ = ["database_url", "postgres_server", "postgres_url"]

NS_2023 = 1_700_000_000_000_000_000  # 2023-11-14 in epoch ns: past 2**32 and 2**53's precision
# Every byte value, NULs and invalid UTF-8 included: the column must be binary, not text.
STATE = bytes(range(256)) * 4 + b"\x00\xff\x00"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    database = Database.from_url(database_url)
    yield database
    database.dispose()


@pytest.fixture
def repo(db: Database) -> SnapshotRepository:
    return SnapshotRepository(db)


def snap(series_id: str = "meter-1", **overrides: object) -> Snapshot:
    fields: dict[str, object] = {
        "series_id": series_id,
        "model_version": "7",
        "model_key": "meters/7@run-7",
        "freq": "h",
        "tz": "Europe/Paris",
        "first_ns": NS_2023,
        "last_ns": NS_2023 + 3_600_000_000_000 * 99,
        "points_seen": 100,
        "state": STATE,
        "tail": b"tail\x00" + series_id.encode(),
        "revision": 0,  # ignored by save_many
    }
    fields.update(overrides)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_load_of_an_unknown_series_is_none(repo: SnapshotRepository) -> None:
    assert repo.load("nobody") is None
    assert repo.count() == 0


def test_insert_then_load_round_trips_exactly(repo: SnapshotRepository) -> None:
    before = datetime.now(UTC)
    written = snap(points_seen=2**40, tz=None)
    result = repo.save_many([(written, None)])
    assert result == SaveResult(conflicts=[], revisions={"meter-1": 1})

    loaded = repo.load("meter-1")
    assert loaded is not None
    assert loaded.state == STATE and type(loaded.state) is bytes
    assert loaded.tail == b"tail\x00meter-1" and type(loaded.tail) is bytes
    assert (loaded.first_ns, loaded.last_ns) == (written.first_ns, written.last_ns)
    assert loaded.points_seen == 2**40
    assert loaded.tz is None
    assert loaded.revision == 1
    assert loaded.updated_at is not None and loaded.updated_at.tzinfo is not None
    # Stored naive UTC, handed back aware; allow for coarse clocks on either side.
    assert before - timedelta(seconds=1) <= loaded.updated_at <= datetime.now(UTC)
    # Everything else is what was written (revision and updated_at are the database's).
    assert replace(loaded, revision=0, updated_at=None) == written


def test_update_with_the_right_revision_bumps_it(repo: SnapshotRepository) -> None:
    repo.save_many([(snap(), None)])
    advanced = snap(last_ns=NS_2023 + 10**15, points_seen=101, state=b"\x01new", tz="UTC")
    assert repo.save_many([(advanced, 1)]) == SaveResult(revisions={"meter-1": 2})
    again = snap(points_seen=102, state=b"\x02newer")
    assert repo.save_many([(again, 2)]) == SaveResult(revisions={"meter-1": 3})

    loaded = repo.load("meter-1")
    assert loaded is not None
    assert (loaded.revision, loaded.points_seen, loaded.state) == (3, 102, b"\x02newer")
    assert loaded.tz == "Europe/Paris"
    assert repo.count() == 1


def test_a_stale_revision_conflicts_and_leaves_the_row_alone(
    repo: SnapshotRepository, db: Database
) -> None:
    repo.save_many([(snap(), None)])
    repo.save_many([(snap(points_seen=150, state=b"winner"), 1)])  # the other writer, first
    with db.session() as session:
        updated_before = session.execute(select(SeriesSnapshot.updated_at)).scalar_one()

    result = repo.save_many([(snap(points_seen=999, state=b"loser"), 1)])
    assert result == SaveResult(conflicts=["meter-1"], revisions={})
    loaded = repo.load("meter-1")
    assert loaded is not None
    assert (loaded.revision, loaded.points_seen, loaded.state) == (2, 150, b"winner")
    assert loaded.updated_at == updated_before
    # A revision from the future conflicts too; so does updating a series that does not exist.
    assert repo.save_many([(snap(), 5), (snap("ghost"), 1)]).conflicts == ["meter-1", "ghost"]
    assert repo.load("ghost") is None


def test_a_double_insert_conflicts_without_losing_the_other_rows(
    repo: SnapshotRepository,
) -> None:
    repo.save_many([(snap("a", state=b"first a"), None), (snap("b"), None)])
    result = repo.save_many(
        [
            (snap("c", state=b"c"), None),  # new: written
            (snap("a", state=b"second a"), None),  # exists: conflict
            (snap("b", points_seen=5), 1),  # right revision: written
            (snap("d", state=b"d"), None),  # new, after the failed insert: written
        ]
    )
    assert result == SaveResult(conflicts=["a"], revisions={"c": 1, "b": 2, "d": 1})
    a, b, c, d = (repo.load(s) for s in "abcd")
    assert a is not None and (a.state, a.revision) == (b"first a", 1)
    assert b is not None and (b.points_seen, b.revision) == (5, 2)
    assert c is not None and c.state == b"c"
    assert d is not None and d.state == b"d"
    assert repo.count() == 4


def test_invalid_input_raises_before_writing_anything(repo: SnapshotRepository) -> None:
    with pytest.raises(ValueError, match="points_seen"):
        repo.save_many([(snap("ok"), None), (snap("bad", points_seen=-1), None)])
    with pytest.raises(ValueError, match="expected revision"):
        repo.save_many([(snap("ok"), None), (snap("bad"), 0)])
    assert repo.count() == 0


def test_delete_and_count(repo: SnapshotRepository) -> None:
    assert repo.delete("meter-1") is False
    repo.save_many([(snap(f"s{i}"), None) for i in range(3)])
    assert repo.count() == 3
    assert repo.delete("s1") is True
    assert repo.delete("s1") is False
    assert repo.count() == 2
    assert repo.load("s1") is None
    assert repo.load("s0") is not None
    # A deleted series can be created again, from revision 1.
    assert repo.save_many([(snap("s1"), None)]).revisions == {"s1": 1}


def test_downgrade_to_0001_drops_only_the_snapshot_table(database_url: str) -> None:
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    downgrade(database_url, "0001")
    assert current_revision(database_url) == "0001"
    engine = make_engine(database_url)
    try:
        names = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "series_snapshots" not in names
    assert {"jobs", "schedules"} <= names
    upgrade(database_url)
    database = Database.from_url(database_url)
    try:
        repository = SnapshotRepository(database)
        assert repository.save_many([(snap(), None)]).revisions == {"meter-1": 1}
    finally:
        database.dispose()
