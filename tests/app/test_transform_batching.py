"""/v1/transform under concurrency: requests share forward passes, each gets its own rows, and a
full queue answers 429 with Retry-After."""
from __future__ import annotations

import asyncio

import httpx
import numpy as np

from app.main import create_app
from app.services import training
from tests.conftest import TINY_CUBE


def make_version(client_for, settings, pairs_npz):
    c, _ = client_for(settings)
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    job = c.post("/v1/training-jobs", json={"dataset_id": ds, "model": "m", "architecture": TINY_CUBE,
                                            "hyperparameters": {"n_epochs": 1}}).json()
    training.run_job(settings, job["id"], "w1")
    return c


async def post_all(app, bodies):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.gather(*(client.post("/v1/transform", json=b) for b in bodies))


def test_concurrent_requests_each_get_their_rows(client_for, sqlite_settings, pairs_npz):
    sync_client = make_version(client_for, sqlite_settings, pairs_npz)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((int(rng.integers(1, 4)), 16)).astype(np.float32) for _ in range(12)]
    expected = [np.array([d["embedding"] for d in sync_client.post("/v1/transform", json={"model": "m", "input": x.tolist()})
                          .json()["data"]]) for x in inputs]
    app = create_app(sqlite_settings.model_copy(update={"transform_max_wait_ms": 20.0}))
    responses = asyncio.run(post_all(app, [{"model": "m", "input": x.tolist()} for x in inputs]))
    for x, want, r in zip(inputs, expected, responses):
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert got.shape == (len(x), 16) and np.allclose(got, want, atol=1e-5)
        assert float(r.headers["x-queue-time"]) >= 0


def test_full_queue_is_429_with_retry_after(client_for, sqlite_settings, pairs_npz):
    make_version(client_for, sqlite_settings, pairs_npz)
    app = create_app(sqlite_settings.model_copy(update={"transform_max_wait_ms": 500.0, "transform_max_queue_rows": 2,
                                                        "transform_max_batch_rows": 1000}))
    responses = asyncio.run(post_all(app, [{"model": "m", "input": [[0.1] * 16] * 2}] * 8))
    codes = [r.status_code for r in responses]
    assert 200 in codes and 429 in codes, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["retry-after"]) >= 1
