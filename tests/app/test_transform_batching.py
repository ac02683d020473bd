"""/v1/transform under concurrency: requests share forward passes, each gets its own rows, and a
full queue answers 429 with Retry-After."""
from __future__ import annotations

import asyncio

import httpx
import numpy as np

from app.main import create_app
from tests.conftest import make_version


def serving(client_for, settings, pairs_npz, seeds=(0,)):
    """A client and model "m" with one version per seed (untrained: serving is what is tested here)."""
    c, _ = client_for(settings)
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    for seed in seeds:
        make_version(c, settings, ds, seed=seed)
    return c


async def post_all(app, bodies):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.gather(*(client.post("/v1/transform", json=b) for b in bodies))


def test_concurrent_requests_each_get_their_rows(client_for, sqlite_settings, pairs_npz):
    sync_client = serving(client_for, sqlite_settings, pairs_npz)
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
    serving(client_for, sqlite_settings, pairs_npz)
    app = create_app(sqlite_settings.model_copy(update={"transform_max_wait_ms": 500.0, "transform_max_queue_rows": 2,
                                                        "transform_max_batch_rows": 1000}))
    responses = asyncio.run(post_all(app, [{"model": "m", "input": [[0.1] * 16] * 2}] * 8))
    codes = [r.status_code for r in responses]
    assert 200 in codes and 429 in codes, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["retry-after"]) >= 1


def test_alias_moves_under_load_fail_nothing(client_for, sqlite_settings, pairs_npz):
    """Requests naming an alias while it moves back and forth: none fails, and each answer comes from
    the version its x-model-version header names."""
    sync_client = serving(client_for, sqlite_settings, pairs_npz, seeds=(1, 2))
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32).tolist()
    expected = {}
    for v in (1, 2):
        r = sync_client.post("/v1/transform", json={"model": "m", "version": v, "input": x})
        expected[r.headers["x-model-version"]] = np.array([d["embedding"] for d in r.json()["data"]])
    (a, b) = expected.values()
    assert not np.allclose(a, b, atol=1e-4), "the two versions must differ for this test to mean anything"
    sync_client.put("/v1/models/m/aliases/prod", json={"version": 1})
    app = create_app(sqlite_settings)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            stop = asyncio.Event()

            async def mover():
                moves = 0
                while not stop.is_set():
                    r = await client.put("/v1/models/m/aliases/prod", json={"version": 1 + moves % 2})
                    assert r.status_code == 200, r.text
                    moves += 1
                    await asyncio.sleep(0.005)
                return moves

            async def requester():
                out = []
                for _ in range(15):
                    out.append(await client.post("/v1/transform", json={"model": "m", "alias": "prod", "input": x}))
                return out

            moving = asyncio.create_task(mover())
            results = await asyncio.gather(*(requester() for _ in range(8)))
            stop.set()
            return [r for rs in results for r in rs], await moving

    responses, moves = asyncio.run(run())
    assert moves >= 4
    served_by = set()
    for r in responses:
        assert r.status_code == 200, r.text
        version_id = r.headers["x-model-version"]
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert np.allclose(got, expected[version_id], atol=1e-5)
        served_by.add(version_id)
    assert served_by == set(expected), "both versions should have served while the alias moved"


def test_metrics_count_transform_batches_and_requests(client_for, sqlite_settings, pairs_npz):
    c = serving(client_for, sqlite_settings, pairs_npz)
    assert c.post("/v1/transform", json={"model": "m", "input": [[0.1] * 16] * 3}).status_code == 200
    text = c.get("/metrics").text
    assert 'cube_http_requests_total{method="POST",route="/v1/transform",status="200"} 1.0' in text
    assert 'cube_transform_batch_rows_sum{model="m:v1"} 3.0' in text
    assert 'cube_transform_queue_duration_seconds_count{model="m:v1"} 1.0' in text
    assert 'cube_transform_queue_rows{model="m:v1"} 0.0' in text
    assert 'cube_training_jobs{status="succeeded"} 1.0' in text
