"""One real service for the client and CLI tests: `cube up` (the embedded default: SQLite, the SQL
broker, one worker process) on a free port, with API keys required, and limits small enough that
chunking and a full transform queue (429) happen with a few vectors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TINY_CUBE
from tests.e2e.test_embedded_up import free_port, start_up

ROOT = Path(__file__).resolve().parents[2]
SERVER_SETTINGS = {
    "CUBE_REQUIRE_AUTH": "true",
    "CUBE_MAX_TRANSFORM_VECTORS": "50",      # a 120-row transform takes three requests
    "CUBE_TRANSFORM_MAX_WAIT_MS": "300",     # a forward pass waits this long for company...
    "CUBE_TRANSFORM_MAX_QUEUE_ROWS": "4",    # ...so concurrent requests of a few rows fill the queue: 429
}


@dataclass
class Live:
    url: str
    admin_key: str
    transform_key: str
    data_dir: Path
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a `cube` process talking to this service (no CUBE_URL/CUBE_API_KEY leaking in)."""
        base = {k: v for k, v in os.environ.items() if k not in ("CUBE_URL", "CUBE_API_KEY")}
        return {**base, "PYTHONPATH": str(ROOT), **extra}


def create_key(data_dir: Path, scope: str) -> str:
    env = {**os.environ, "CUBE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--scope", scope], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    data_dir = tmp / "d"  # where start_up points `cube up`
    admin, transform = create_key(data_dir, "admin"), create_key(data_dir, "transform")
    port, log = free_port(), tmp / "up.log"
    proc = start_up(tmp, port, log, SERVER_SETTINGS)
    try:
        yield Live(f"http://127.0.0.1:{port}", admin, transform, data_dir, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def client(live):
    from cube_client import Client

    with Client(live.url, api_key=live.admin_key) as c:
        yield c


@pytest.fixture(scope="session")
def trained(live, pairs_npz):
    """A dataset and a job trained by the service's worker into model "client-m" v1 (16d -> 16d), its `default`."""
    from cube_client import Client

    with Client(live.url, api_key=live.admin_key) as c:
        ds = c.datasets.upload(pairs_npz, kind="embedding_pairs", name="client pairs")
        job = c.jobs.create(dataset_id=ds.id, model="client-m", architecture=TINY_CUBE,
                            hyperparameters={"n_epochs": 2, "early_stopping_patience": 0, "tuning_budget": 1})
        done = c.jobs.wait(job.id, timeout=300, poll_interval=0.3)
        assert done.status == "succeeded", (done, live.log.read_text()[-3000:])
        # Two epochs may not pass the promotion gate; unpinned calls are served `default`, so set it by hand.
        c.models.set_alias("client-m", "default", 1)
        return {"dataset_id": ds.id, "job": done, "model": "client-m"}
