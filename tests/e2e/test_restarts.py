"""Restarts on real services: Redis restarted under a running job and queued jobs, PostgreSQL
restarted under a running job, the API killed (-9) in the middle of an upload, a worker killed (-9)
during registration.

Every test runs on a private `redis-server` and a private PostgreSQL cluster that it may stop and
restart (tests/e2e/private_servers.py); the shared servers on 5432/6379 are never touched.
The promise under test: every job ends `succeeded` with exactly one model version, the API answers
503 (never 500) while a dependency is down and recovers by itself, and a killed upload leaves
neither a row nor a file.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_CUBE
from tests.e2e.private_servers import PrivatePostgres, PrivateRedis, free_port
from tests.e2e.test_service_e2e import SLOWER_CUBE, Service, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def private_pg():
    try:
        server = PrivatePostgres().start()
    except (RuntimeError, OSError) as exc:  # no PostgreSQL binaries, or no `postgres` user to run them as
        pytest.skip(f"cannot run a private PostgreSQL: {exc}")
    yield server
    server.close()


@pytest.fixture
def db_url(private_pg):
    """A fresh, migrated database on the private cluster."""
    from app.db import get_engine
    from app.migrate import upgrade

    url = private_pg.create_database(f"cube_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    yield url
    get_engine(url).dispose()


@pytest.fixture
def stack(db_url, private_pg, private_redis, tmp_path):
    """The API in process plus worker processes on the private PostgreSQL and Redis."""
    svc = Service(db_url, private_redis.url, tmp_path / "data")
    yield svc
    # A failed test may leave a server down: bring it back so the next test (and clean-up) finds it.
    if private_redis.proc is None:
        private_redis.start()
    try:
        private_pg.start()
    except RuntimeError:
        pass  # already running
    svc.close()


@pytest.fixture(scope="module")
def small_pairs():
    from cube.synthetic import nonlinear_pairs

    return nonlinear_pairs(n=200, d_in=8, d_out=8)


def versions_of(svc: Service, model: str) -> list[str]:
    r = svc.client.get(f"/v1/models/{model}")
    return [] if r.status_code == 404 else [v["source_job_id"] for v in r.json()["versions"]]


def assert_one_version_each(svc: Service, jobs: dict[str, str]) -> None:
    """jobs: job id -> model name (one model per job, so a duplicate version cannot hide)."""
    for job_id, model in jobs.items():
        assert versions_of(svc, model) == [job_id], (model, svc.logs())


def test_redis_restart_under_a_running_job(stack, private_redis, small_pairs):
    stack.start_worker()
    ds = stack.upload(small_pairs)
    job_id = stack.submit(ds, arch=SLOWER_CUBE, n_epochs=30, model="running")
    wait_for(lambda: stack.job(job_id)["progress"]["epoch"] >= 2, 60, "the job to be training")
    private_redis.restart(down_for=1.0)  # keeps nothing on disk: the job's message is gone with it
    job = stack.wait_status(job_id, {"succeeded", "failed", "cancelled"}, 90)
    assert job["status"] == "succeeded", job
    assert_one_version_each(stack, {job_id: "running"})
    # The worker still takes new work over the restarted Redis.
    nxt = stack.submit(ds, n_epochs=2, model="after")
    assert stack.wait_status(nxt, {"succeeded", "failed", "cancelled"}, 60)["status"] == "succeeded"
    assert_one_version_each(stack, {nxt: "after"})


def test_redis_restart_with_jobs_queued(stack, private_redis, small_pairs):
    ds = stack.upload(small_pairs)
    jobs = {stack.submit(ds, n_epochs=2, model=f"queued-{i}"): f"queued-{i}" for i in range(3)}
    private_redis.restart(down_for=1.0)  # no worker yet: the three messages sat in Redis and are gone
    stack.start_worker()  # its recovery sweep finds them queued, unclaimed and their queue empty: sent again
    for job_id in jobs:
        job = stack.wait_status(job_id, {"succeeded", "failed", "cancelled"}, 60)
        assert job["status"] == "succeeded", job
    assert_one_version_each(stack, jobs)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] and error["message"], error


def test_postgres_restart_under_a_running_job(stack, private_pg, small_pairs):
    stack.start_worker()
    ds = stack.upload(small_pairs)
    job_id = stack.submit(ds, arch=SLOWER_CUBE, n_epochs=30, model="pg")
    wait_for(lambda: stack.job(job_id)["progress"]["epoch"] >= 2, 60, "the job to be training")
    private_pg.stop()
    try:
        ready = stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error"), ready.text
        assert_unavailable(stack.client.get(f"/v1/training-jobs/{job_id}"))
        assert_unavailable(stack.client.get("/v1/datasets"))
        time.sleep(3)  # longer than the lease (2 s): heartbeats fail meanwhile
        assert_unavailable(stack.client.get(f"/v1/training-jobs/{job_id}"))
    finally:
        private_pg.start()
    # Recovers by itself: no restart of the API or the worker.
    wait_for(lambda: stack.client.get("/readyz").status_code == 200, 30, "/readyz to recover")
    assert stack.client.get(f"/v1/training-jobs/{job_id}").status_code == 200
    job = stack.wait_status(job_id, {"succeeded", "failed", "cancelled"}, 120)
    assert job["status"] == "succeeded", job
    assert_one_version_each(stack, {job_id: "pg"})


def test_worker_killed_during_registration_registers_once(stack, small_pairs):
    # Test hook: the first worker pauses inside the registration transaction, after the version row
    # is written and before the commit, so the kill lands exactly there.
    stack.env["CUBE_TEST_HOOK_PAUSE_BEFORE_REGISTER_COMMIT"] = "120"
    first = stack.start_worker()
    del stack.env["CUBE_TEST_HOOK_PAUSE_BEFORE_REGISTER_COMMIT"]
    log = stack.workers[-1][1]
    job_id = stack.submit(stack.upload(small_pairs), arch=TINY_CUBE, n_epochs=2, model="reg")
    wait_for(lambda: b"pausing before the registration commit" in log.read_bytes(), 90, "the registration to start")
    stack.kill_worker(first)
    assert versions_of(stack, "reg") == []  # the uncommitted version died with the worker
    assert stack.job(job_id)["status"] == "running"
    stack.start_worker()
    job = stack.wait_status(job_id, {"succeeded", "failed", "cancelled"}, 90)
    assert job["status"] == "succeeded" and job["attempt"] == 2, job
    assert_one_version_each(stack, {job_id: "reg"})
    assert stack.client.get("/v1/models/reg/versions/1").json()["id"] == job["model_version_id"]


# ---- the API killed in the middle of an upload


class ApiProcess:
    """`cube api` as a real process, so it can be killed -9."""

    def __init__(self, env: dict, log: Path, cwd: Path = ROOT):
        self.env, self.log, self.port, self.cwd = env, log, free_port(), cwd
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--port", str(self.port)], cwd=self.cwd,
                                     env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def ready():
            try:
                return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return self.proc.poll() is not None

        wait_for(ready, 60, "the API to start", interval=0.1)
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def multipart(payload: bytes) -> tuple[bytes, bytes, str]:
    """(head, tail, content type) of a multipart upload around `payload`."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nembedding_pairs\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.npz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def send_raw(port: int, head: bytes, body_parts, content_type: str, length: int):
    """Send a request by hand, part by part, so the test decides when the API dies."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {length}\r\n\r\n").encode() + head)
    for part in body_parts:
        try:
            sock.sendall(part)
        except OSError:  # the API died under us
            break
    return sock


def files_in(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def dataset_rows(db_url: str) -> int:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import Dataset

    with session_scope(db_url) as session:
        return session.scalar(select(func.count()).select_from(Dataset))


def test_api_killed_mid_upload_leaves_no_row_and_no_file(db_url, private_redis, tmp_path):
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    buf = io.BytesIO()
    save_pairs_npz(buf, nonlinear_pairs(n=60_000, d_in=128, d_out=128))  # ~60 MB: copied and read for a while
    payload = buf.getvalue()
    data = tmp_path / "data"
    env = {**os.environ, "CUBE_DATABASE_URL": db_url, "CUBE_BROKER_URL": private_redis.url, "CUBE_DATA_DIR": str(data),
           "CUBE_REQUIRE_AUTH": "false", "CUBE_BROKER_KEY_PREFIX": "upload-test:", "PYTHONPATH": str(ROOT)}
    storage = data / "storage"
    api = ApiProcess(env, tmp_path / "api.log")
    head, tail, ctype = multipart(payload)
    length = len(head) + len(payload) + len(tail)
    try:
        # 1. Killed while the body arrives: half the file is sent, then the API dies.
        api.start()
        half = len(payload) // 2
        sock = send_raw(api.port, head, [payload[:half]], ctype, length)
        time.sleep(0.3)
        api.kill()
        sock.close()
        assert files_in(storage) == [] and dataset_rows(db_url) == 0

        # 2. Killed while the API copies the received file into storage (its temp file exists).
        api.start()
        tmp_dir = storage / ".tmp"
        sock = send_raw(api.port, head, [payload, tail], ctype, length)
        wait_for(lambda: any(p.name.startswith("upload@") for p in files_in(tmp_dir)), 60, "the upload's temp file",
                 interval=0.002)
        api.kill()
        sock.close()
        assert dataset_rows(db_url) == 0
        left = files_in(storage)
        assert left and all(p.parent == tmp_dir for p in left), left  # killed before the move: only the temp file
        # A restarted API removes what a dead process of its own host left half-written.
        api.start()
        assert files_in(storage) == [] and dataset_rows(db_url) == 0

        # The restarted API takes the same upload.
        r = httpx.post(f"{api.base}/v1/datasets", files={"file": ("big.npz", payload)}, data={"kind": "embedding_pairs"},
                       timeout=120)
        assert r.status_code == 201, r.text
        assert dataset_rows(db_url) == 1
    finally:
        if api.proc is not None and api.proc.poll() is None:
            api.kill()
