"""The Python client against a real running service (`cube up`, tests/client/conftest.py): every
resource call, idempotent creates, waiting with progress, chunked base64 transforms, typed errors
with the server's code/param/request id, retries on a real 429, the async client, and the import
without torch."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from cube_client import (AsyncClient, Client, Conflict, ConnectionFailed, NotFound, PermissionDenied, RateLimited,
                         Unauthorized, ValidationError)
from tests.conftest import TINY_CUBE

ROOT = Path(__file__).resolve().parents[2]


def counter(live, name: str, **labels: str) -> float:
    text = httpx.get(f"{live.url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def direct_transform(live, model: str, x: np.ndarray) -> np.ndarray:
    """The same vectors without the client: plain float JSON, one request per 50 rows."""
    out = []
    for i in range(0, len(x), 50):
        r = httpx.post(f"{live.url}/v1/transform", json={"model": model, "input": x[i:i + 50].tolist()},
                       headers={"Authorization": f"Bearer {live.admin_key}"}, timeout=60)
        assert r.status_code == 200, r.text
        out += [e["embedding"] for e in r.json()["data"]]
    return np.asarray(out, dtype=np.float32)


def test_imports_and_works_without_torch(live, trained):
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, cube_client\n"
        f"c = cube_client.Client({live.url!r})\n"  # the key comes from CUBE_API_KEY
        "y = c.transform('client-m', np.ones((3, 16), np.float32))\n"
        "print(y.shape, 'torch' in sys.modules and sys.modules['torch'] is not None)\n")
    done = subprocess.run([sys.executable, "-c", script], env=live.env(CUBE_API_KEY=live.admin_key), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 16) False"


def test_dataset_upload_with_progress_list_get_delete(client, pairs_npz):
    seen = []
    ds = client.datasets.upload(pairs_npz, name="uploaded", metadata={"source": "test"},
                                on_progress=lambda sent, total: seen.append((sent, total)))
    size = pairs_npz.stat().st_size
    assert ds.kind == "embedding_pairs" and ds.status == "ready" and ds.num_pairs == 400 and ds.bytes == size
    assert seen and seen[-1] == (size, size) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))
    assert ds.id in [d.id for d in client.datasets.list(limit=100).data]
    assert client.datasets.get(ds.id) == ds
    assert client.datasets.delete(ds.id)["deleted"] is True
    with pytest.raises(NotFound) as err:
        client.datasets.get(ds.id)
    assert err.value.status == 404 and err.value.code == "not_found" and err.value.request_id


def test_invalid_upload_is_a_validation_error_naming_the_field(client, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "hi", "target": "there"}\n{"input": "", "target": "x"}\n')
    with pytest.raises(ValidationError) as err:
        client.datasets.upload(bad)  # kind guessed: text_pairs
    assert err.value.status == 422 and err.value.line == 2 and err.value.field == "input", err.value.body


def test_upload_passes_the_target_teacher(client, tmp_path):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(f'{{"text": "sentence {i}"}}\n' for i in range(25)))
    with pytest.raises(ValidationError) as err:  # the server saw the field: it names it
        client.datasets.upload(texts, teacher="minilm", target_teacher="no-such-teacher")
    assert err.value.status == 400 and err.value.param == "target_teacher", err.value.body


def test_create_is_idempotent_with_a_key(client, trained):
    body = dict(dataset_id=trained["dataset_id"], model="client-idem", architecture=TINY_CUBE,
                hyperparameters={"n_epochs": 1}, idempotency_key="client-test-1")
    first, again = client.jobs.create(**body), client.jobs.create(**body)
    assert first.id == again.id
    with pytest.raises(ValidationError) as err:  # the same key with another body
        client.jobs.create(**{**body, "seed": 3})
    assert err.value.code == "idempotency_key_reused" and err.value.param == "Idempotency-Key"
    assert client.jobs.cancel(first.id).status in ("cancelled", "running")  # leave the worker to the other tests
    assert client.jobs.wait(first.id, timeout=120, poll_interval=0.3).status == "cancelled"


def test_job_wait_reports_progress_and_job_reads(client, trained):
    job = client.jobs.create(dataset_id=trained["dataset_id"], model="client-wait", architecture=TINY_CUBE,
                             hyperparameters={"n_epochs": 3, "early_stopping_patience": 0, "tuning_budget": 1})
    updates = []
    done = client.jobs.wait(job.id, on_progress=updates.append, timeout=300, poll_interval=0.2)
    assert done.status == "succeeded" and done.model_version_id
    assert updates[-1] == done and len({u.status for u in updates}) >= 2  # e.g. queued/running, then succeeded
    assert any(u.progress.epoch > 0 for u in updates)
    events = client.jobs.events(job.id, limit=100).data
    assert events[0].message == "job created (queued)" and any(e.type == "metrics" for e in events)
    metrics = client.jobs.metrics(job.id).data
    assert metrics and {m.epoch for m in metrics} >= {1, 2, 3}
    key = metrics[0].key
    assert {m.key for m in client.jobs.metrics(job.id, key=key).data} == {key}
    assert client.jobs.checkpoints(job.id).object == "list"
    assert job.id in [j.id for j in client.jobs.list(status="succeeded", limit=100).data]
    assert job.id not in [j.id for j in client.jobs.list(status="failed", limit=100).data]
    with pytest.raises(Conflict) as err:
        client.jobs.cancel(job.id)
    assert err.value.status == 409


def test_models_versions_and_aliases(client, trained):
    name = trained["model"]
    assert name in [m.id for m in client.models.list(limit=100).data]
    model = client.models.get(name)
    assert model.latest_version >= 1 and model.versions[0].source_job_id == trained["job"].id
    v1 = client.models.version(name, 1)
    assert v1.dim_in == 16 and v1.evaluation
    moved = client.models.set_alias(name, "prod", 1)
    assert (moved.model, moved.alias, moved.version) == (name, "prod", 1)
    assert client.models.get(name).aliases["prod"] == 1
    y = client.transform(name, np.ones((2, 16)), alias="prod")
    assert y.shape == (2, 16)
    assert client.models.delete_alias(name, "prod")["deleted"] is True
    with pytest.raises(NotFound):
        client.transform(name, np.ones((2, 16)), alias="prod")
    with pytest.raises(NotFound):
        client.models.version(name, 99)


def test_transform_chunks_over_the_server_limit_in_base64(client, live, trained):
    x = np.random.default_rng(0).standard_normal((120, 16)).astype(np.float32)
    before = counter(live, "cube_http_requests_total", route="/v1/transform", status="200")
    y = client.transform(trained["model"], x)
    assert counter(live, "cube_http_requests_total", route="/v1/transform", status="200") - before == 3  # 50+50+20
    assert y.dtype == np.float32 and y.shape == (120, 16)
    np.testing.assert_allclose(y, direct_transform(live, trained["model"], x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(client.transform(trained["model"], x[0]), y[:1], rtol=1e-6, atol=1e-6)  # one vector


def test_embeddings_in_openai_shape_match_transform(client, trained):
    x = np.random.default_rng(4).standard_normal((3, 16)).astype(np.float32)
    out = client.embeddings(f"{trained['model']}:1", x.tolist())
    assert out.object == "list" and out.model == f"{trained['model']}:1" and [e.index for e in out.data] == [0, 1, 2]
    np.testing.assert_allclose(np.array([e.embedding for e in out.data]), client.transform(trained["model"], x),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValidationError) as err:
        client.embeddings(trained["model"], x.tolist(), dimensions=8)
    assert err.value.param == "dimensions"


def test_transform_errors_carry_code_and_param(client, trained):
    with pytest.raises(ValidationError) as err:
        client.transform(trained["model"], np.ones((2, 8)))
    assert err.value.status == 422 and err.value.code == "dimension_mismatch" and err.value.param == "dim"
    with pytest.raises(ValidationError) as err:
        client.transform(trained["model"], ["a question?"])
    assert err.value.code == "text_not_supported" and err.value.param == "input"
    assert "text_not_supported" in str(err.value) and err.value.request_id in str(err.value)
    with pytest.raises(NotFound):
        client.transform("no-such-model", np.ones((1, 16)))
    with pytest.raises(ValueError):
        client.transform(trained["model"], np.ones((0, 16)))


def test_retries_a_real_429_honouring_retry_after(live, trained):
    """The queue holds 4 rows and a pass waits 300 ms for company: of several concurrent requests, some
    are refused with 429 + Retry-After; the client waits and resends, and every call succeeds."""
    rejected_before = counter(live, "cube_transform_rejected_total")
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    results, errors = [], []

    def call():
        try:
            with Client(live.url, api_key=live.admin_key) as c:
                results.append(c.transform(trained["model"], x))
        except Exception as exc:  # collected and failed on below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 4
    assert counter(live, "cube_transform_rejected_total") > rejected_before  # some really were refused
    for y in results:
        np.testing.assert_allclose(y, results[0], rtol=1e-6)


def test_without_retries_a_429_is_rate_limited_with_retry_after(live, trained):
    caught = []

    def call():
        with Client(live.url, api_key=live.admin_key, max_retries=0) as c:
            try:
                c.transform(trained["model"], np.ones((3, 16)))
            except RateLimited as exc:
                caught.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert caught, "concurrent requests over a 4-row queue should be refused"
    assert all(e.status == 429 and e.code == "overloaded" and e.retry_after >= 1 for e in caught)


def test_auth_errors_and_the_key_from_the_environment(live, monkeypatch):
    monkeypatch.delenv("CUBE_API_KEY", raising=False)
    with Client(live.url) as anonymous, pytest.raises(Unauthorized) as err:
        anonymous.datasets.list()
    assert err.value.status == 401 and err.value.code
    with Client(live.url, api_key="cube_not-a-key") as wrong, pytest.raises(Unauthorized):
        wrong.models.list()
    with Client(live.url, api_key=live.transform_key) as narrow, pytest.raises(PermissionDenied) as err:
        narrow.datasets.list()
    assert err.value.status == 403 and err.value.code == "insufficient_scope"
    monkeypatch.setenv("CUBE_API_KEY", live.admin_key)
    monkeypatch.setenv("CUBE_URL", live.url)
    with Client() as from_env:
        assert from_env.base_url == live.url and from_env.info()["auth"] == "api_key"


def test_connection_errors_are_retried_then_raised():
    with Client("http://127.0.0.1:9", max_retries=1) as c, pytest.raises(ConnectionFailed) as err:
        c.models.list()
    assert err.value.status is None and err.value.code == "connection_error"


def test_async_client_does_the_same(live, trained, pairs_npz):
    async def main():
        async with AsyncClient(live.url, api_key=live.admin_key) as c:
            progress = []
            ds = await c.datasets.upload(pairs_npz, kind="embedding_pairs", name="async",
                                         on_progress=lambda s, t: progress.append(s))
            assert progress[-1] == pairs_npz.stat().st_size
            assert (await c.datasets.get(ds.id)).id == ds.id
            page, model = await asyncio.gather(c.datasets.list(limit=100), c.models.get(trained["model"]))
            assert ds.id in [d.id for d in page.data] and model.id == trained["model"]
            job = await c.jobs.wait(trained["job"].id, timeout=10)
            assert job.status == "succeeded" and (await c.jobs.list(limit=5)).object == "list"
            x = np.random.default_rng(2).standard_normal((70, 16)).astype(np.float32)
            y = await c.transform(trained["model"], x)
            assert (await c.models.version(trained["model"], 1)).version == 1
            await c.datasets.delete(ds.id)
            with pytest.raises(NotFound):
                await c.datasets.get(ds.id)
            return x, y

    x, y = asyncio.run(main())
    np.testing.assert_allclose(y, direct_transform(live, trained["model"], x), rtol=1e-6, atol=1e-6)


def test_a_sweep_through_the_client(client, trained):
    sweep = client.sweeps.create(dataset_id=trained["dataset_id"], model="client-sweep", architecture=TINY_CUBE,
                                 search_space={"channels": [2, 4]}, n_trials=2, max_parallel=1,
                                 pruner={"kind": "none"},
                                 hyperparameters={"n_epochs": 2, "early_stopping_patience": 0, "tuning_budget": 1})
    assert sweep.status == "running" and sweep.search_space == {"channels": [2, 4]}
    updates = []
    done = client.sweeps.wait(sweep.id, on_progress=updates.append, timeout=300, poll_interval=0.3)
    assert done.status == "succeeded" and done.model_version_id and updates[-1] == done
    trials = client.sweeps.trials(sweep.id).data
    assert len(trials) == 2 and all(t.params.channels in (2, 4) and t.state == "complete" for t in trials)
    assert client.sweeps.events(sweep.id).data[0].message.startswith("sweep created")
    assert sweep.id in [s.id for s in client.sweeps.list(status="succeeded").data]
    with pytest.raises(Conflict):
        client.sweeps.cancel(sweep.id)
    with pytest.raises(ValidationError) as err:
        client.sweeps.create(dataset_id=trained["dataset_id"], search_space={"channels": []})
    assert err.value.param == "search_space.channels"
