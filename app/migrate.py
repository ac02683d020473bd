"""Apply the Alembic migrations (`cube db upgrade`, `cube up`, the compose file's migrate service).

The schema's revision lives in `cube_schema_version`, not Alembic's default `alembic_version`: the
sweeps' Optuna studies share the database, and Optuna keeps its own schema revision in
`alembic_version`. A database migrated before the rename has ours there; `upgrade` moves it.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "cube_schema_version"
LEGACY_VERSION_TABLE = "alembic_version"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    adopt_legacy_version_table(url)
    command.upgrade(alembic_config(url), revision)


def adopt_legacy_version_table(url: str) -> bool:
    """Rename `alembic_version` to ours if it holds one of our revisions (not Optuna's)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect, text

    from app.db import get_engine

    engine = get_engine(url)
    tables = set(inspect(engine).get_table_names())
    if LEGACY_VERSION_TABLE not in tables or VERSION_TABLE in tables:
        return False
    ours = {s.revision for s in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()}
    with engine.begin() as conn:
        # Bandit B608: the table name is a constant of this module, not input.
        held = {row[0] for row in conn.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}"))}  # nosec B608
        if not held or not held <= ours:
            return False
        conn.execute(text(f"ALTER TABLE {LEGACY_VERSION_TABLE} RENAME TO {VERSION_TABLE}"))
    return True


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from app.db import get_engine

    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
