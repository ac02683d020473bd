"""The Python client drives a job end to end on PostgreSQL + Redis with a real `cube worker`
process: the API served over HTTP by uvicorn, auth on (an admin key), upload -> create -> wait with
progress -> version -> transform, and the same vectors as a plain float request."""
from __future__ import annotations

import httpx
import numpy as np
import pytest

from cube_client import Client, NotFound
from tests.conftest import TINY_CUBE
from tests.e2e.test_service_e2e import pairs, service  # noqa: F401 (fixtures)
from tests.live_server import serve

pytestmark = pytest.mark.e2e


def test_a_job_through_the_client_on_postgres_and_redis(service, pairs, tmp_path):  # noqa: F811
    from cube.pairs import save_pairs_npz

    service.start_worker()
    path = tmp_path / "pairs.npz"
    save_pairs_npz(path, pairs)
    key = service.client.headers["authorization"].split()[1]
    with serve(service.client.app) as url, Client(url, api_key=key) as c:
        ds = c.datasets.upload(path, name="e2e client")
        job = c.jobs.create(dataset_id=ds.id, model="e2e-client", architecture=TINY_CUBE,
                            hyperparameters={"n_epochs": 3, "early_stopping_patience": 0, "tuning_budget": 1})
        seen = []
        done = c.jobs.wait(job.id, on_progress=seen.append, timeout=180, poll_interval=0.2)
        assert done.status == "succeeded", (done, service.logs())
        assert seen[-1].status == "succeeded" and any(s.progress.epoch for s in seen)
        version = c.models.version("e2e-client", 1)
        assert version.source_job_id == job.id and version.evaluation
        x = np.asarray(pairs.input[:30], dtype=np.float32)
        y = c.transform("e2e-client", x, version=1)  # pinned: three epochs need not pass the promotion gate
        # Over the same server: the model's batcher lives on uvicorn's event loop, not the TestClient's.
        plain = httpx.post(f"{url}/v1/transform", json={"model": "e2e-client", "version": 1, "input": x.tolist()},
                           headers={"Authorization": f"Bearer {key}"}, timeout=60).json()
        np.testing.assert_allclose(y, np.array([e["embedding"] for e in plain["data"]]), rtol=1e-6, atol=1e-6)
        with pytest.raises(NotFound):
            c.models.version("e2e-client", 2)
