"""Idempotency-Key: the same key and body replay the first response; another body is refused."""
from __future__ import annotations

from tests.conftest import TINY_CUBE


def test_job_creation_is_idempotent(client, pairs_npz):
    c, sent = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    body = {"dataset_id": ds, "architecture": TINY_CUBE, "hyperparameters": {"n_epochs": 2}}
    first = c.post("/v1/training-jobs", json=body, headers={"Idempotency-Key": "k1"})
    again = c.post("/v1/training-jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(sent.sent) == 1 and len(c.get("/v1/training-jobs").json()["data"]) == 1
    other = c.post("/v1/training-jobs", json={**body, "seed": 5}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert c.post("/v1/training-jobs", json=body).json()["id"] != first.json()["id"]  # no key: a new job


def test_a_failed_request_frees_its_key(client):
    c, _ = client
    bad = c.post("/v1/training-jobs", json={"dataset_id": "ds_missing"}, headers={"Idempotency-Key": "k2"})
    assert bad.status_code == 404
    again = c.post("/v1/training-jobs", json={"dataset_id": "ds_missing"}, headers={"Idempotency-Key": "k2"})
    assert again.status_code == 404  # recomputed, not replayed from a half-stored key


def test_upload_is_idempotent(client, settings, pairs_npz):
    c, _ = client
    files = {"file": ("p.npz", pairs_npz.read_bytes())}
    first = c.post("/v1/datasets", files=files, data={"kind": "embedding_pairs"}, headers={"Idempotency-Key": "u1"})
    again = c.post("/v1/datasets", files=files, data={"kind": "embedding_pairs"}, headers={"Idempotency-Key": "u1"})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert len(c.get("/v1/datasets").json()["data"]) == 1
    other = c.post("/v1/datasets", files=files, data={"kind": "embedding_pairs", "name": "x"}, headers={"Idempotency-Key": "u1"})
    assert other.status_code == 422
