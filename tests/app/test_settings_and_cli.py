"""Settings come from CUBE_* variables; `cube db upgrade` applies the migrations, which match the ORM."""
from __future__ import annotations

from app.settings import Settings


def test_environment_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("CUBE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CUBE_MAX_ATTEMPTS", "7")
    s = Settings()
    assert s.max_attempts == 7
    assert s.database == f"sqlite:///{tmp_path.resolve() / 'cube.db'}"
    assert s.broker.startswith("sqla+sqlite:///") and s.storage_root == (tmp_path / "storage").resolve()
    assert s.embedded and s.require_auth


def test_db_upgrade_command(monkeypatch, tmp_path, capsys):
    from alembic.script import ScriptDirectory

    from app.cli import main
    from app.migrate import alembic_config
    from app.settings import get_settings

    monkeypatch.setenv("CUBE_DATA_DIR", str(tmp_path / "d"))
    get_settings.cache_clear()
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    try:
        assert main(["db", "upgrade"]) == 0
        assert f"database at revision {head}" in capsys.readouterr().out and head >= "0005"
        assert main(["db", "current"]) == 0
    finally:
        get_settings.cache_clear()


def test_migrations_match_the_models(settings):
    """Alembic's autogenerate finds nothing to add: the migration creates exactly the ORM's schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.db import get_engine
    from app.models import Base

    from optuna.storages._rdb.models import BaseModel as OptunaTables

    from app.migrate import LEGACY_VERSION_TABLE, VERSION_TABLE

    def ours(obj, name, type_, reflected, compare_to) -> bool:
        # Sweeps keep their Optuna studies in the same database: those tables (and the revision
        # table Optuna keeps in alembic_version) are Optuna's, not ours.
        return not (type_ == "table" and (name in OptunaTables.metadata.tables or name == LEGACY_VERSION_TABLE))

    with get_engine(settings.database).connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "include_object": ours})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_the_schema_revision_moves_out_of_optunas_table_and_both_live_in_one_database(tmp_path):
    """A database migrated before sweeps kept our revision in `alembic_version`; upgrading moves it to
    `cube_schema_version`, and Optuna's storage (which keeps its own revision in `alembic_version`)
    then opens on the same database, and later upgrades leave it alone."""
    import optuna
    from sqlalchemy import inspect, text

    from app.db import get_engine
    from app.migrate import current, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0009")
    with get_engine(url).begin() as conn:  # the layout of a database from before the rename
        conn.execute(text("ALTER TABLE cube_schema_version RENAME TO alembic_version"))
    upgrade(url)
    tables = set(inspect(get_engine(url)).get_table_names())
    assert "cube_schema_version" in tables and "alembic_version" not in tables and "sweeps" in tables
    optuna.create_study(study_name="s", storage=url)
    upgrade(url)  # Optuna's alembic_version is not ours: left as it is
    assert current(url) == "0011"  # the newest revision: a later one moves this
    assert optuna.load_study(study_name="s", storage=url).study_name == "s"
