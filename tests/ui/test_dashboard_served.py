"""The dashboard's files: served at /ui with a strict CSP, kept out of the OpenAPI document, and
every one of them declared as package data (a non-editable install must carry them)."""
from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.ui.router import DIGEST, STATIC

ROOT = Path(__file__).resolve().parents[2]


def test_shell_and_static_files_are_served_without_auth(sqlite_settings):
    sqlite_settings.require_auth = True
    with TestClient(create_app(sqlite_settings)) as c:
        shell = c.get("/ui")
        assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in shell.headers["content-security-policy"]
        assert shell.headers["cache-control"] == "no-cache"
        assert f'src="ui/static/{DIGEST}/js/app.js"' in shell.text
        js = c.get(f"/ui/static/{DIGEST}/js/app.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        assert "immutable" in js.headers["cache-control"]  # the digest changes with the contents
        assert c.get(f"/ui/static/{DIGEST}/js/nope.js").status_code == 404
        assert c.get("/ui/static/js/app.js").status_code == 404
        assert c.get("/v1/training-jobs").status_code == 401  # the API behind it still asks for a key
        assert not [p for p in c.get("/openapi.json").json()["paths"] if p.startswith("/ui")]


def test_every_static_file_is_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["app.ui"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)] == []


def test_every_module_is_preloaded_by_the_shell():
    shell = (STATIC / "index.html").read_text()
    modules = [p.relative_to(STATIC).as_posix() for p in (STATIC / "js").rglob("*.js")]
    assert [m for m in modules if f'href="ui/static/{m}"' not in shell and m != "js/app.js"] == []
