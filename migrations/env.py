"""Alembic environment: the URL comes from the same Settings as the app (URNN_DATABASE_URL,
default a SQLite file under ./var/) unless the caller set `sqlalchemy.url` (jobs.db.upgrade)."""

from __future__ import annotations

from alembic import context

from jobs.db import make_engine
from jobs.models import Base
from urnn_forecast.settings import Settings

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url or Settings().resolved_database_url()


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
