"""An autoencoder end to end on the embedded service (`cube up`: SQLite, the SQL broker, a worker
process) and on PostgreSQL + Redis: a job with code_size trains, and the client gets codes,
reconstructions and decoded codes from /v1/transform."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from cube_client import Client
from tests.conftest import TINY_CUBE
from tests.e2e.test_embedded_up import free_port, start_up
from tests.e2e.test_service_e2e import service  # noqa: F401  (the fixture: PostgreSQL + Redis, worker processes)
from tests.live_server import serve

pytestmark = pytest.mark.e2e


def test_an_autoencoder_job_trains_and_serves_codes(tmp_path, pairs_npz):
    port = free_port()
    proc = start_up(tmp_path, port, tmp_path / "up.log")
    try:
        with Client(f"http://127.0.0.1:{port}") as client:
            ds = client.datasets.upload(pairs_npz, name="ae", kind="embedding_pairs")
            job = client.jobs.create(dataset_id=ds.id, model="ae", mode="autoencoder", code_size=4,
                                     architecture=TINY_CUBE, hyperparameters={"n_epochs": 2, "tuning_budget": 1},
                                     promotion={"mode": "always"})
            done = client.jobs.wait(job.id, timeout=180, poll_interval=0.3)
            assert done.status == "succeeded" and done.code_size == 4, (done, (tmp_path / "up.log").read_text()[-3000:])
            assert "pca" in client.models.version("ae", 1).evaluation["methods"]
            x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
            code = client.transform("ae", x, output="code")
            recon = client.transform("ae", x)
            assert code.shape == (5, 4) and recon.shape == (5, 16)
            assert np.allclose(client.transform("ae", code, input_kind="code"), recon, atol=1e-5)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)


def test_an_autoencoder_job_on_postgresql_and_redis(service, pairs_npz):  # noqa: F811
    """The same through the production backends: the API on PostgreSQL, a worker process on Redis."""
    service.start_worker()
    key = service.client.headers["authorization"].split()[1]
    with serve(service.client.app) as url, Client(url, api_key=key) as client:
        ds = client.datasets.upload(pairs_npz, name="ae", kind="embedding_pairs")
        job = client.jobs.create(dataset_id=ds.id, model="ae", mode="autoencoder", code_size=4, architecture=TINY_CUBE,
                                 hyperparameters={"n_epochs": 2, "tuning_budget": 1})
        done = client.jobs.wait(job.id, timeout=180, poll_interval=0.3)
        assert done.status == "succeeded", done
        x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
        code = client.transform("ae", x, output="code")
        assert code.shape == (3, 4)
        assert np.allclose(client.transform("ae", code, input_kind="code"), client.transform("ae", x), atol=1e-5)
