"""API keys: the CLI prints a key once and stores its hash; every endpoint but /livez, /readyz and
/metrics needs a live key of the right scope (401 without one, 403 for the wrong scope)."""
from __future__ import annotations

import hashlib
import time

import pytest

from app.db import get_sessionmaker
from app.services import keys


@pytest.fixture
def secured(client_for, sqlite_settings):
    """A client on a database with auth required, and a function that makes keys."""
    s = sqlite_settings.model_copy(update={"require_auth": True})
    c, _ = client_for(s)

    def make_key(scope: str) -> dict[str, str]:
        with get_sessionmaker(s.database)() as session:
            _, secret = keys.create_key(session, scope)
        return {"Authorization": f"Bearer {secret}"}

    return c, make_key, s


READS = [("get", "/v1/datasets"), ("get", "/v1/training-jobs"), ("get", "/v1/models"),
         ("get", "/v1/models/m/compare?versions=1,2&dataset_id=ds_x"), ("get", "/v1/models/m/versions/1/evaluations")]
TRAIN_WRITES = [("post", "/v1/training-jobs"), ("put", "/v1/models/m/aliases/prod"), ("delete", "/v1/datasets/ds_x"),
                ("post", "/v1/models/m/versions/1/evaluations")]
TRANSFORM = [("post", "/v1/transform"), ("post", "/v1/embeddings")]


def call(c, method, path, headers=None):
    kw = {"json": {}} if method in ("post", "put") else {}
    return getattr(c, method)(path, headers=headers or {}, **kw)


def test_no_key_or_a_bad_key_is_401_with_the_error_shape(secured):
    c, _, _ = secured
    for method, path in READS + TRAIN_WRITES + TRANSFORM + [("get", "/info")]:
        for headers in ({}, {"Authorization": "Bearer cube_not-a-key"}, {"Authorization": "Basic abc"},
                        {"Authorization": "Bearer "}):
            r = call(c, method, path, headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["type"] == "authentication_error" and r.json()["error"]["message"]
            assert r.headers["x-request-id"]


def test_open_endpoints_need_no_key(secured):
    c, _, _ = secured
    for path in ("/livez", "/readyz", "/metrics"):
        assert c.get(path).status_code == 200, path


@pytest.mark.parametrize("scope,allowed", [
    ("train", READS + TRAIN_WRITES),
    ("transform", TRANSFORM),
    ("admin", READS + TRAIN_WRITES + TRANSFORM),
])
def test_scopes(secured, scope, allowed):
    c, make_key, _ = secured
    headers = make_key(scope)
    assert c.get("/info", headers=headers).status_code == 200  # any live key reads /info
    for method, path in READS + TRAIN_WRITES + TRANSFORM:
        r = call(c, method, path, headers)
        if (method, path) in allowed:
            assert r.status_code not in (401, 403), (scope, method, path, r.text)  # past auth: 200, 400 or 404
        else:
            assert r.status_code == 403, (scope, method, path, r.text)
            assert r.json()["error"]["code"] == "insufficient_scope" and scope in r.json()["error"]["message"]


def test_revoked_key_is_401_at_once(secured):
    c, make_key, s = secured
    headers = make_key("train")
    assert c.get("/v1/models", headers=headers).status_code == 200
    with get_sessionmaker(s.database)() as session:
        key = keys.list_keys(session)[-1]
        keys.revoke_key(session, key.id)
    r = c.get("/v1/models", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_auth_off_lets_everyone_in(client_for, sqlite_settings):
    c, _ = client_for(sqlite_settings)  # require_auth=False
    assert c.get("/v1/models").status_code == 200 and c.get("/info").json()["auth"] == "off"


def test_cli_create_list_revoke(monkeypatch, tmp_path, capsys, client_for):
    from app.cli import main
    from app.settings import Settings, get_settings

    monkeypatch.setenv("CUBE_DATA_DIR", str(tmp_path / "d"))
    get_settings.cache_clear()
    try:
        assert main(["keys", "create", "--scope", "transform", "--name", "ci"]) == 0
        out = capsys.readouterr().out
        secret = out.split()[-1]
        assert secret.startswith("cube_") and len(secret) > 40
        key_id = out.split()[1]
        assert main(["keys", "list"]) == 0
        listed = capsys.readouterr().out
        assert key_id in listed and secret[:12] in listed and secret not in listed and "transform" in listed
        # Only the hash is stored.
        s = Settings(data_dir=tmp_path / "d")
        with get_sessionmaker(s.database)() as session:
            (row,) = keys.list_keys(session)
            assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest() and secret not in (row.prefix, row.name)
        c, _ = client_for(s)  # the server reads the same settings
        ok = c.post("/v1/transform", json={"model": "none", "input": [[0.1]]}, headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 404
        assert main(["keys", "revoke", key_id]) == 0 and f"revoked {key_id}" in capsys.readouterr().out
        assert c.get("/info", headers={"Authorization": f"Bearer {secret}"}).status_code == 401  # at once
        # /v1/transform remembers a key for the resolve cache's seconds (app.services.keys.KeyCache).
        time.sleep(s.transform_resolve_cache_seconds)
        r = c.post("/v1/transform", json={"model": "none", "input": [[0.1]]}, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401
        assert main(["keys", "revoke", "key_nope"]) == 1
        with pytest.raises(SystemExit):
            main(["keys", "create", "--scope", "root"])
    finally:
        get_settings.cache_clear()


def test_cube_up_opens_only_on_loopback():
    from app.serve import banner, quickstart_settings
    from app.settings import Settings

    assert not quickstart_settings(Settings(), "127.0.0.1").require_auth
    assert "AUTHENTICATION IS OFF" in banner(quickstart_settings(Settings(), "127.0.0.1"), "127.0.0.1", 8000)
    public = quickstart_settings(Settings(), "0.0.0.0")
    assert public.require_auth and "keys required" in banner(public, "0.0.0.0", 8000)
    assert "dashboard http://127.0.0.1:8000/ui" in banner(public, "0.0.0.0", 8000)
    assert quickstart_settings(Settings(require_auth=True), "127.0.0.1").require_auth  # an explicit choice wins


def test_the_key_cache_forgets_after_its_seconds_and_stays_bounded(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: now[0])
    cache = keys.KeyCache(ttl=1.0, size=2)
    assert cache.get("cube_a") == (False, None)
    cache.put("cube_a", None)  # an unknown secret is remembered as unknown
    assert cache.get("cube_a") == (True, None)
    now[0] += 1.0
    assert cache.get("cube_a") == (False, None)  # stale: look it up again
    cache.put("cube_a", None)
    cache.put("cube_b", None)
    cache.put("cube_c", None)
    assert cache.get("cube_a") == (False, None) and cache.get("cube_c") == (True, None)  # the oldest went
