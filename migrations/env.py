"""Alembic environment: the URL comes from the caller (`app.migrate`) or the service settings."""
from __future__ import annotations

from alembic import context

from app.db import get_engine, normalise_url
from app.migrate import VERSION_TABLE
from app.models import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.settings import get_settings

    return get_settings().database


def run_offline() -> None:
    context.configure(url=normalise_url(database_url()), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = get_engine(database_url())
    with engine.connect() as connection:
        # Batch mode lets later migrations alter SQLite tables (it has no ALTER COLUMN).
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
