"""Fixtures of the job tests: a migrated job database on SQLite and on the real PostgreSQL.

`database_url` is parametrized over both backends. PostgreSQL tests create a database with a
unique name on the server at URNN_TEST_POSTGRES_URL (default: postgres@127.0.0.1:5432, the
`postgres` maintenance database) and drop it afterwards; they skip, saying why, only when that
server cannot be reached, and fail instead where CI or URNN_TEST_REQUIRE_POSTGRES is set.
Workers here use short leases and heartbeats so that crash recovery and cancellation take about
a second.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from jobs import queue
from jobs.db import Database, upgrade
from jobs.models import Job
from jobs.worker import Worker
from urnn_forecast.settings import Settings

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETT-small" / "ETTh1.csv"
POSTGRES_URL = os.environ.get(
    "URNN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
LOOKBACK, HORIZON = 24, 6


def _admin_connect() -> Any:
    import psycopg

    url = make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The server URL, or a skip that says why it cannot be reached."""
    try:
        _admin_connect().close()
    except Exception as error:
        reason = f"PostgreSQL at {POSTGRES_URL} is unreachable ({error})"
        if os.environ.get("CI") or os.environ.get("URNN_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"{reason}; CI (or URNN_TEST_REQUIRE_POSTGRES) requires it")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, uniquely named database on the server; dropped after the test."""
    name = f"urnn_test_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        job_lease_seconds=1.5,
        job_heartbeat_seconds=0.1,
        job_max_attempts=3,
        worker_poll_seconds=0.05,
        api_key=SecretStr("test-key"),
        model_poll_seconds=0.0,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The migrated database (Alembic head)."""
    upgrade(settings.resolved_database_url())
    database = Database.from_settings(settings)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def ett_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled ETTh1, first 400 rows: enough for a tiny model and a short backtest."""
    path = tmp_path_factory.mktemp("ett") / "ETTh1-400.csv"
    pd.read_csv(ETTH1, nrows=400).to_csv(path, index=False)
    return path


def tiny_spec(csv: Path, **overrides: Any) -> dict[str, Any]:
    """A JobSpec (as JSON) for a seconds-long uRNN: lookback 24, horizon 6, hidden 8, 1 epoch."""
    spec: dict[str, Any] = {
        "data": str(csv),
        "target": "OT",
        "covariates": ["HUFL"],
        "config": {
            "model": {
                "kind": "urnn",
                "lookback": LOOKBACK,
                "horizon": HORIZON,
                "hidden_size": 8,
                "segment_length": 6,
            },
            "fit": {"max_epochs": 1, "max_train_batches": 3, "batch_size": 32, "device": "cpu"},
            "train": {"backtest_step": HORIZON, "backtest_windows": 4},
        },
        "promote": True,
    }
    spec.update(overrides)
    return spec


def worker_settings(tmp_path: Path, mlflow_settings: Settings, **overrides: Any) -> Settings:
    """Settings for a worker that runs real training jobs: the test's MLflow store, a migrated
    SQLite job database in tmp_path, a heartbeat every 0.2 s (cancels seen quickly)."""
    settings = Settings(
        var_dir=mlflow_settings.var_dir,
        database_url=f"sqlite:///{tmp_path / 'worker-jobs.db'}",
        job_heartbeat_seconds=0.2,
        **overrides,
    )
    upgrade(settings.resolved_database_url())
    return settings


def cancel_once_logged(
    db: Database, settings: Settings, job_id: str, text: str, *, settle: float = 0.0
) -> tuple[Job, float]:
    """Run the queued job on a worker thread, cancel it once its log tail holds `text` (and
    `settle` seconds more), and wait for the worker: the job as it ended, and the seconds from
    the cancel to the worker's return."""
    worker = Worker(db, settings)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while text not in (_tail(db, job_id)):
            assert time.monotonic() < deadline, _tail(db, job_id)
            time.sleep(0.1)
        time.sleep(settle)
        with db.session() as session:
            queue.cancel(session, job_id=job_id)
        asked = time.monotonic()
        thread.join(timeout=60)
        assert not thread.is_alive()
        took = time.monotonic() - asked
    finally:
        worker.request_stop()
        thread.join(timeout=60)
    with db.session() as session:
        return queue.get(session, job_id=job_id), took


def _tail(db: Database, job_id: str) -> str:
    with db.session() as session:
        return queue.get(session, job_id=job_id).log_tail or ""
