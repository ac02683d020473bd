"""Workers on other hosts: the API and two Celery workers as separate processes, each in its own
working directory with its own data directory and an environment of its own. They share only the
database URL (PostgreSQL), the broker URL (Redis) and the S3 store (moto's server); no file one
writes on disk is ever read by another.

Jobs run on either worker; a worker killed -9 mid-job (its directory then wiped, as a lost host's
disk) has its job resumed by the other from the checkpoint in the store; transforms are served, and
results downloaded, from what the workers stored.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import TINY_CUBE, _truncate
from tests.e2e.test_restarts import ApiProcess
from tests.e2e.test_service_e2e import SLOWER_CUBE, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


class Host:
    """One machine's share of the deployment: a directory of its own (working directory, data
    directory, logs) and an environment built from nothing but the shared URLs."""

    def __init__(self, name: str, base: Path, shared: dict[str, str]):
        self.name, self.dir = name, base / name
        self.dir.mkdir(parents=True)
        self.env = {"PATH": os.environ["PATH"], "HOME": str(self.dir), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                    "CUBE_DATA_DIR": str(self.dir / "data"), **shared}
        self.proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    def start_worker(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--loglevel", "info"], cwd=self.dir,
                                     env=self.env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(lambda: b"ready." in self.log.read_bytes() or self.proc.poll() is not None, 90, f"{self.name} to start")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the Celery parent and its pool child
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def local_files(self) -> list[str]:
        """The files in this host's data directory (the service's only place on its disk)."""
        data = self.dir / "data"
        return sorted(p.relative_to(self.dir).as_posix() for p in data.rglob("*") if p.is_file()) if data.exists() else []


@pytest.fixture
def deployment(pg_database_url, redis_available, s3_store, tmp_path):
    _truncate(pg_database_url)
    tag = uuid.uuid4().hex[:10]
    storage_url = s3_store.new_url()
    shared = {"CUBE_DATABASE_URL": pg_database_url, "CUBE_BROKER_URL": redis_available,
              "CUBE_BROKER_KEY_PREFIX": f"cube-hosts-{tag}:", "CUBE_TRAINING_QUEUE": f"training-{tag}",
              "CUBE_STORAGE_URL": storage_url, **s3_store.env,
              "CUBE_JOB_LEASE_SECONDS": "2", "CUBE_HEARTBEAT_SECONDS": "0.5", "CUBE_RESEND_AFTER_SECONDS": "2",
              "CUBE_TORCH_THREADS": "1", "CUBE_REQUIRE_AUTH": "false"}
    api_host, a, b = (Host(name, tmp_path, shared) for name in ("api", "worker-a", "worker-b"))
    api = ApiProcess(api_host.env, api_host.log, cwd=api_host.dir)
    api.start()
    try:
        yield api, api_host, a, b, storage_url
    finally:
        for host in (a, b):
            host.stop()
        api.kill()
        import redis

        r = redis.Redis.from_url(redis_available)
        keys = list(r.scan_iter(match=shared["CUBE_BROKER_KEY_PREFIX"] + "*"))
        if keys:
            r.delete(*keys)


def job_rows(db_url: str, job_ids) -> dict[str, tuple[str, int]]:
    """job id -> (the Celery node that ran its last attempt, that attempt)."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import TrainingJob

    with session_scope(db_url) as session:
        return {j.id: (j.worker, j.attempt) for j in session.scalars(select(TrainingJob).where(TrainingJob.id.in_(job_ids)))}


def test_api_and_workers_share_only_database_broker_and_store(deployment, pg_database_url, s3_store):
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    api, api_host, a, b, storage_url = deployment
    http = httpx.Client(base_url=api.base, timeout=60)
    a.start_worker()
    b.start_worker()
    pairs = nonlinear_pairs(n=300, d_in=8, d_out=8)
    buf = io.BytesIO()
    save_pairs_npz(buf, pairs)
    r = http.post("/v1/datasets", files={"file": ("p.npz", buf.getvalue())}, data={"kind": "embedding_pairs"})
    assert r.status_code == 201, r.text
    ds = r.json()["id"]

    def submit(model: str, arch=TINY_CUBE, n_epochs=2) -> str:
        r = http.post("/v1/training-jobs", json={
            "dataset_id": ds, "model": model, "architecture": arch, "promotion": {"mode": "always"},
            "hyperparameters": {"n_epochs": n_epochs, "early_stopping_patience": 0, "tuning_budget": 1}})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def wait_done(job_id: str, timeout: float) -> dict:
        try:
            return wait_for(lambda: (j := http.get(f"/v1/training-jobs/{job_id}").json())["status"]
                            in ("succeeded", "failed", "cancelled") and j, timeout, f"{job_id} to end")
        except AssertionError:
            print(a.log.read_text()[-3000:], b.log.read_text()[-3000:])
            raise

    # 1. Jobs run on either worker: both take some of four jobs queued at once.
    jobs = [submit(f"m{i}") for i in range(4)]
    for job_id in jobs:
        assert wait_done(job_id, 120)["status"] == "succeeded"
    ran_on = {worker.split("@")[1].rsplit("-", 1)[1] for worker, _ in job_rows(pg_database_url, jobs).values()}
    assert ran_on == {str(a.proc.pid), str(b.proc.pid)}, ran_on  # node names end in the worker's pid

    # 2. A worker killed -9 mid-job: the other resumes from the checkpoint in the store.
    slow = submit("slow", arch=SLOWER_CUBE, n_epochs=40)
    wait_for(lambda: http.get(f"/v1/training-jobs/{slow}").json()["progress"]["epoch"] >= 3, 90, "epoch 3")
    worker, _ = job_rows(pg_database_url, [slow])[slow]
    running, other = (a, b) if worker.endswith(f"-{a.proc.pid}") else (b, a)
    running.kill()
    shutil.rmtree(running.dir / "data")  # that host's disk is gone with it
    job = wait_done(slow, 180)
    assert job["status"] == "succeeded" and job["attempt"] == 2, job
    assert job_rows(pg_database_url, [slow])[slow][0].endswith(f"-{other.proc.pid}")
    events = http.get(f"/v1/training-jobs/{slow}/events", params={"limit": 100}).json()["data"]
    resumed = [e for e in events if e["message"].startswith("resumed from epoch")]
    assert len(resumed) == 1 and resumed[0]["data"]["resumed_from"] >= 3, [e["message"] for e in events]

    # 3. Transforms are served from the artifact in the store, and downloads stream from it.
    x = pairs.input[:5]
    r = http.post("/v1/transform", json={"model": "slow", "input": x.tolist()})
    assert r.status_code == 200, r.text
    served = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    assert served.shape == (5, 8) and np.isfinite(served).all()
    weights = http.get("/v1/models/slow/versions/1/files/model.safetensors")
    assert weights.status_code == 200 and len(weights.content) == int(weights.headers["content-length"]) > 0

    # 4. A bulk transform job runs on the surviving worker; its result is downloaded from the store.
    r = http.post("/v1/transform-jobs", json={"model": "slow", "dataset_id": ds})
    assert r.status_code == 202, r.text
    tj = r.json()["id"]
    wait_for(lambda: http.get(f"/v1/transform-jobs/{tj}").json()["status"] in ("succeeded", "failed"), 90, "the transform job")
    assert http.get(f"/v1/transform-jobs/{tj}").json()["status"] == "succeeded"
    result = np.load(io.BytesIO(http.get(f"/v1/transform-jobs/{tj}/result").content), allow_pickle=False)
    assert result.shape == (300, 8) and np.abs(result[:5] - served).max() <= 1e-5

    # Everything lives in the store; the hosts hold only the API's staged model copy, no work left over.
    stored = s3_store.keys(storage_url)
    assert f"datasets/{ds}/data.npz" in stored and any(k.startswith(f"transform-jobs/{tj}/result-") for k in stored)
    assert any(k.startswith(f"jobs/{slow}/attempts/2/run/model/") for k in stored)
    assert not (api_host.dir / "data" / "storage").exists() and not (other.dir / "data" / "storage").exists()
    assert other.local_files() == [], other.local_files()
    assert all(f.startswith("data/storage-cache/objects/jobs/") for f in api_host.local_files()), api_host.local_files()
