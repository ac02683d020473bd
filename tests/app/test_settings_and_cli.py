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

    with get_engine(settings.database).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
