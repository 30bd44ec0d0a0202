"""The schema is Alembic's: upgrade -> downgrade -> upgrade on SQLite and PostgreSQL, and the
ORM classes match what the migrations build."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from jobs.db import current_revision, downgrade, make_engine, upgrade
from jobs.models import Base
from urnn_forecast.cli import main
from urnn_forecast.settings import Settings

TABLES = {"jobs", "schedules", "series_snapshots"}


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    upgrade(database_url)
    assert current_revision(database_url) == "0002"
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
    assert "upgraded to 0002" in capsys.readouterr().out
    assert main(["db", "downgrade", "base"], settings=settings) == 0
    assert main(["db", "current"], settings=settings) == 0
    assert "empty" in capsys.readouterr().out
