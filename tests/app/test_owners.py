"""Owners: each dataset, job and model belongs to the API key that created it. Another key gets 404
(as for an id that does not exist), an admin key sees everything; Idempotency-Keys are per API key
and expire. On SQLite and PostgreSQL."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from app.db import get_sessionmaker
from app.models import IdempotencyKey, RegisteredModel
from app.services import keys
from tests.conftest import TINY_CUBE


@pytest.fixture
def tenants(settings, client_for):
    """A client with auth on, and the headers of two train keys (A, B) and an admin key."""
    s = settings.model_copy(update={"require_auth": True})
    c, sent = client_for(s)
    headers = {}
    with get_sessionmaker(s.database)() as session:
        for name, scope in (("a", "train"), ("b", "train"), ("admin", "admin")):
            key, secret = keys.create_key(session, scope, name)
            headers[name] = {"Authorization": f"Bearer {secret}"}
            headers[name + "_id"] = key.id
    return c, sent, headers, s


def upload(c, headers, pairs_npz, **extra_headers):
    return c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"},
                  headers={**headers, **extra_headers})


def test_a_key_sees_and_acts_on_its_own_only(tenants, pairs_npz):
    c, sent, h, _ = tenants
    ds = upload(c, h["a"], pairs_npz).json()["id"]
    job = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE, "model": "m-a"}, headers=h["a"])
    assert job.status_code == 202, job.text
    job = job.json()["id"]
    # A sees its own.
    assert [d["id"] for d in c.get("/v1/datasets", headers=h["a"]).json()["data"]] == [ds]
    assert [j["id"] for j in c.get("/v1/training-jobs", headers=h["a"]).json()["data"]] == [job]
    assert c.get(f"/v1/training-jobs/{job}/events", headers=h["a"]).status_code == 200
    # B: nothing listed, and every id of A's is a 404, exactly like an id that does not exist.
    assert c.get("/v1/datasets", headers=h["b"]).json()["data"] == []
    assert c.get("/v1/training-jobs", headers=h["b"]).json()["data"] == []
    for method, path in [("GET", f"/v1/datasets/{ds}"), ("DELETE", f"/v1/datasets/{ds}"), ("GET", f"/v1/training-jobs/{job}"),
                         ("POST", f"/v1/training-jobs/{job}/cancel"), ("GET", f"/v1/training-jobs/{job}/events"),
                         ("GET", f"/v1/training-jobs/{job}/metrics"), ("GET", f"/v1/training-jobs/{job}/checkpoints")]:
        r = c.request(method, path, headers=h["b"])
        missing = c.request(method, path.replace(ds, "ds_" + "0" * 19).replace(job, "job_" + "0" * 19), headers=h["b"])
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path, r.text)
        assert r.json()["error"]["message"].split()[:2] == missing.json()["error"]["message"].split()[:2]
    # B cannot train on A's dataset either.
    r = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE}, headers=h["b"])
    assert r.status_code == 404 and r.json()["error"]["param"] == "dataset_id"
    # Nothing of A's changed.
    assert c.get(f"/v1/training-jobs/{job}", headers=h["a"]).json()["status"] == "queued"
    assert c.get(f"/v1/datasets/{ds}", headers=h["a"]).status_code == 200
    # The admin key sees both keys' resources and may act on them.
    ds_b = upload(c, h["b"], pairs_npz).json()["id"]
    assert {d["id"] for d in c.get("/v1/datasets", headers=h["admin"]).json()["data"]} == {ds, ds_b}
    assert c.get(f"/v1/training-jobs/{job}", headers=h["admin"]).status_code == 200
    assert c.post(f"/v1/training-jobs/{job}/cancel", headers=h["admin"]).json()["status"] == "cancelled"
    assert [d["id"] for d in c.get("/v1/datasets", headers=h["b"]).json()["data"]] == [ds_b]


def test_models_belong_to_the_key_of_their_jobs(tenants, pairs_npz):
    c, _, h, s = tenants
    with get_sessionmaker(s.database)() as session:
        session.add(RegisteredModel(name="m-a", created_at=time.time(), owner_key_id=h["a_id"]))
        session.commit()
    assert [m["id"] for m in c.get("/v1/models", headers=h["a"]).json()["data"]] == ["m-a"]
    assert c.get("/v1/models", headers=h["b"]).json()["data"] == []
    for method, path in [("GET", "/v1/models/m-a"), ("GET", "/v1/models/m-a/versions/1"),
                         ("PUT", "/v1/models/m-a/aliases/prod"), ("DELETE", "/v1/models/m-a/aliases/prod")]:
        r = c.request(method, path, json={"version": 1} if method == "PUT" else None, headers=h["b"])
        assert r.status_code == 404 and r.json()["error"]["param"] == "model", (method, path, r.text)
    assert c.get("/v1/models/m-a", headers=h["admin"]).status_code == 200
    # Model names are one namespace: B may not add versions to A's model.
    ds_b = upload(c, h["b"], pairs_npz).json()["id"]
    r = c.post("/v1/training-jobs", json={"dataset_id": ds_b, "architecture": TINY_CUBE, "model": "m-a"}, headers=h["b"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_name_taken"
    assert c.post("/v1/training-jobs", json={"dataset_id": ds_b, "architecture": TINY_CUBE, "model": "m-b"},
                  headers=h["b"]).status_code == 202


def test_idempotency_keys_are_per_api_key(tenants, pairs_npz):
    c, _, h, _ = tenants
    first = upload(c, h["a"], pairs_npz, **{"Idempotency-Key": "k1"})
    assert first.status_code == 201
    # B sends the same Idempotency-Key and body: a new dataset of B's, never A's response.
    theirs = upload(c, h["b"], pairs_npz, **{"Idempotency-Key": "k1"})
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]
    # Each key's own retry replays its own response.
    again = upload(c, h["b"], pairs_npz, **{"Idempotency-Key": "k1"})
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == theirs.json()["id"]
    again = upload(c, h["a"], pairs_npz, **{"Idempotency-Key": "k1"})
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
    # Jobs too.
    body = {"dataset_id": first.json()["id"], "architecture": TINY_CUBE}
    job_a = c.post("/v1/training-jobs", json=body, headers={**h["a"], "Idempotency-Key": "k2"})
    job_b = c.post("/v1/training-jobs", json=body, headers={**h["b"], "Idempotency-Key": "k2"})
    assert job_a.status_code == 202 and job_b.status_code == 404  # B's own request: A's dataset is not B's


def test_an_expired_idempotency_key_is_not_replayed(tenants, pairs_npz):
    c, _, h, s = tenants
    first = upload(c, h["a"], pairs_npz, **{"Idempotency-Key": "old"})
    with get_sessionmaker(s.database)() as session:  # a day and a minute later
        session.execute(update(IdempotencyKey).values(created_at=time.time() - s.idempotency_ttl_seconds - 60))
        session.commit()
    retry = upload(c, h["a"], pairs_npz, **{"Idempotency-Key": "old"})
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert retry.json()["id"] != first.json()["id"]
    assert c.get("/v1/datasets", headers=h["a"]).json()["data"][0]["id"] == retry.json()["id"]
    # The fresh row replays as usual.
    assert upload(c, h["a"], pairs_npz, **{"Idempotency-Key": "old"}).headers["idempotent-replayed"] == "true"
    with get_sessionmaker(s.database)() as session:
        assert session.query(IdempotencyKey).count() == 1  # the expired row is gone


def test_with_auth_off_everyone_sees_everything(client, pairs_npz):
    c, _ = client
    ds = upload(c, {}, pairs_npz).json()["id"]
    assert [d["id"] for d in c.get("/v1/datasets").json()["data"]] == [ds]
    assert c.get(f"/v1/datasets/{ds}").status_code == 200


def test_the_migration_gives_existing_rows_to_the_first_admin_key(tmp_path):
    from sqlalchemy import text

    from app.db import get_engine
    from app.migrate import upgrade

    for with_admin in (True, False):
        url = f"sqlite:///{tmp_path / f'old-{with_admin}.db'}"
        upgrade(url, "0003")
        with get_engine(url).begin() as conn:
            conn.execute(text("INSERT INTO api_keys (id, prefix, key_hash, scope, created_at, revoked_at) VALUES "
                              "('key_train', 'p', 'h1', 'train', 1, NULL), ('key_gone', 'p', 'h2', 'admin', 2, 3), "
                              "('key_admin2', 'p', 'h3', 'admin', 5, NULL), ('key_admin1', 'p', 'h4', 'admin', 4, NULL)"
                              if with_admin else
                              "INSERT INTO api_keys (id, prefix, key_hash, scope, created_at) VALUES ('key_train', 'p', 'h1', 'train', 1)"))
            conn.execute(text("INSERT INTO datasets (id, name, kind, format, filename, bytes, sha256, num_pairs, status, "
                              "storage_key, created_at) VALUES ('ds_1', 'd', 'embedding_pairs', 'npz', 'f', 1, 's', 20, "
                              "'ready', 'k', 1)"))
            conn.execute(text("INSERT INTO models (name, created_at) VALUES ('m', 1)"))
        upgrade(url)
        with get_engine(url).connect() as conn:
            owners = {conn.execute(text(f"SELECT owner_key_id FROM {t}")).scalar() for t in ("datasets", "models")}
        assert owners == ({"key_admin1"} if with_admin else {None})  # the oldest live admin key, else nobody
