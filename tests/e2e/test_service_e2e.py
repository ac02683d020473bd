"""End to end: the API (in process) and real `cube worker` processes on real Redis and PostgreSQL.

upload -> job -> succeeded -> model version with its evaluation -> transform; cancel while running;
kill -9 a worker mid-job and resume on a new one; a job whose training raises. Every wait polls
with a deadline. Each test gets its own queue, Redis key prefix and data directory.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_CUBE, _truncate

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SLOWER_CUBE = {"kind": "cube", "grid": [2, 2, 2], "channels": 4, "steps": 4, "hidden": 16}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Service:
    """The API in process (TestClient) plus worker processes, all on one PostgreSQL + Redis setup."""

    def __init__(self, db_url: str, redis_url: str, data_dir: Path):
        tag = uuid.uuid4().hex[:10]
        self.env = {**os.environ, "CUBE_DATABASE_URL": db_url, "CUBE_BROKER_URL": redis_url,
                    "CUBE_BROKER_KEY_PREFIX": f"cube-test-{tag}:", "CUBE_TRAINING_QUEUE": f"training-{tag}",
                    "CUBE_DATA_DIR": str(data_dir), "CUBE_JOB_LEASE_SECONDS": "2", "CUBE_HEARTBEAT_SECONDS": "0.5",
                    "CUBE_RESEND_AFTER_SECONDS": "2", "CUBE_TORCH_THREADS": "1",
                    "CUBE_WEBHOOK_ALLOW_PRIVATE": "true", "CUBE_WEBHOOK_POLL_SECONDS": "0.2",
                    "PYTHONPATH": str(ROOT)}
        from fastapi.testclient import TestClient

        from app.main import create_app
        from app.settings import Settings

        self.settings = Settings(database_url=db_url, broker_url=redis_url, broker_key_prefix=self.env["CUBE_BROKER_KEY_PREFIX"],
                                 training_queue=self.env["CUBE_TRAINING_QUEUE"], data_dir=data_dir, job_lease_seconds=2,
                                 heartbeat_seconds=0.5, resend_after_seconds=2, webhook_allow_private=True)
        # Production-like: auth stays on, and the client carries an admin key made as `cube keys create` does.
        from app.db import get_sessionmaker
        from app.services import keys

        with get_sessionmaker(self.settings.database)() as session:
            _, secret = keys.create_key(session, "admin", "e2e")
        self.client = TestClient(create_app(self.settings), headers={"Authorization": f"Bearer {secret}"})
        self.workers: list[tuple[subprocess.Popen, Path]] = []
        self.data_dir = data_dir

    def start_worker(self) -> subprocess.Popen:
        log = self.data_dir / f"worker-{len(self.workers)}.log"
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--loglevel", "info"], cwd=ROOT, env=self.env,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append((proc, log))
        wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, 90, "the worker to start")
        assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    def kill_worker(self, proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)  # the Celery parent and its pool child
        except ProcessLookupError:
            pass
        proc.wait(30)

    def close(self) -> None:
        for proc, _ in self.workers:
            if proc.poll() is None:
                self.kill_worker(proc, signal.SIGTERM)
        self.client.close()
        if not self.settings.broker.startswith("redis"):
            return
        import redis

        r = redis.Redis.from_url(self.settings.broker)
        keys = list(r.scan_iter(match=self.env["CUBE_BROKER_KEY_PREFIX"] + "*"))
        if keys:
            r.delete(*keys)

    def logs(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-2000:] for _, log in self.workers)

    # ---- API helpers
    def upload(self, data) -> str:
        from cube.pairs import save_pairs_npz

        buf = io.BytesIO()
        save_pairs_npz(buf, data)
        r = self.client.post("/v1/datasets", files={"file": ("pairs.npz", buf.getvalue())},
                             data={"kind": "embedding_pairs", "name": "e2e"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def submit(self, dataset_id: str, arch=TINY_CUBE, n_epochs=3, model="e2e") -> str:
        r = self.client.post("/v1/training-jobs", json={
            "dataset_id": dataset_id, "model": model, "architecture": arch,
            # One learning rate: these tests are about the service, not the tuning (tests/cube/test_tuning.py).
            "hyperparameters": {"n_epochs": n_epochs, "early_stopping_patience": 0, "tuning_budget": 1}})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.client.get(f"/v1/training-jobs/{job_id}").json()

    def wait_status(self, job_id: str, statuses, timeout: float) -> dict:
        try:
            return wait_for(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout, f"{job_id} to be {statuses}")
        except AssertionError:
            print(self.logs())
            raise


@pytest.fixture
def service(pg_database_url, redis_available, tmp_path):
    _truncate(pg_database_url)
    svc = Service(pg_database_url, redis_available, tmp_path / "data")
    yield svc
    svc.close()


@pytest.fixture
def embedded_service(tmp_path):
    """The same on the embedded default: SQLite metadata and the SQL broker (no server at all)."""
    from app.migrate import upgrade

    data = tmp_path / "data"
    data.mkdir()
    db = f"sqlite:///{data / 'cube.db'}"
    upgrade(db)
    svc = Service(db, f"sqla+sqlite:///{data / 'broker.db'}", data)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def pairs():
    from cube.synthetic import nonlinear_pairs

    return nonlinear_pairs(n=400, d_in=16, d_out=16)


def test_upload_train_register_transform(service, pairs):
    service.start_worker()
    seen = wait_for(lambda: service.client.get("/info").json()["workers"].get("cpu"), 10, "the worker to register")
    assert seen["live_workers"] == 1
    ready = service.client.get("/readyz")
    assert ready.status_code == 200, ready.text  # PostgreSQL, Redis and storage all reachable
    ds = service.upload(pairs)
    job_id = service.submit(ds)
    job = service.wait_status(job_id, {"succeeded", "failed"}, 60)
    assert job["status"] == "succeeded", job
    assert job["progress"]["epoch"] == 3 and job["attempt"] == 1 and job["metrics"]
    version = service.client.get("/v1/models/e2e/versions/1").json()
    assert version["id"] == job["model_version_id"] and version["source_job_id"] == job_id
    assert set(version["evaluation"]["methods"]) >= {"cube", "ridge", "mlp", "linear", "mean"}
    # Whether it takes unpinned traffic is its promotion gate's call (tests/app/test_promotion.py): pin it.
    assert version["status"] in ("approved", "rejected") and version["promotion"]["summary"]
    x = pairs.input[:5]
    r = service.client.post("/v1/transform", json={"model": "e2e", "version": 1, "input": x.tolist()})
    assert r.status_code == 200, r.text
    y = np.array([d["embedding"] for d in r.json()["data"]])
    assert y.shape == (5, 16) and np.isfinite(y).all()


def test_cancel_while_running_frees_the_worker(service, pairs):
    service.start_worker()
    ds = service.upload(pairs)
    job_id = service.submit(ds, arch=SLOWER_CUBE, n_epochs=500)
    wait_for(lambda: service.job(job_id)["progress"]["epoch"] >= 1, 60, "the first epoch")
    r = service.client.post(f"/v1/training-jobs/{job_id}/cancel").json()
    at_cancel = r["progress"]["epoch"]
    job = service.wait_status(job_id, {"cancelled", "failed", "succeeded"}, 30)
    assert job["status"] == "cancelled", job
    assert job["progress"]["epoch"] <= at_cancel + 2  # the epoch running at the request, plus a race of one
    assert job["model_version_id"] is None
    assert service.client.get("/v1/models/e2e").status_code == 404
    # The worker is free again: the next job runs to the end.
    nxt = service.submit(ds)
    assert service.wait_status(nxt, {"succeeded", "failed"}, 60)["status"] == "succeeded"


@pytest.mark.parametrize("which", ["postgresql+redis", "embedded"])
def test_kill_9_mid_job_resumes_from_checkpoint(which, request, pairs):
    # The new worker finds its dead predecessor on this host and queues the job again at once (on the
    # SQL broker the killed worker's message is lost; Redis would hold it until the visibility timeout).
    service = request.getfixturevalue("service" if which == "postgresql+redis" else "embedded_service")
    first = service.start_worker()
    ds = service.upload(pairs)
    job_id = service.submit(ds, arch=SLOWER_CUBE, n_epochs=40)
    wait_for(lambda: service.job(job_id)["progress"]["epoch"] >= 3, 60, "epoch 3")
    service.kill_worker(first)
    epoch_at_kill = service.job(job_id)["progress"]["epoch"]
    assert service.job(job_id)["status"] == "running"
    service.start_worker()
    job = service.wait_status(job_id, {"succeeded", "failed", "cancelled"}, 120)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2 and job["progress"]["epoch"] == 40
    events = service.client.get(f"/v1/training-jobs/{job_id}/events?limit=100").json()["data"]
    resumed = [e for e in events if e["message"].startswith("resumed from epoch")]
    # The checkpoint of an epoch is written just before its progress reaches SQL, so a kill between
    # the two resumes one epoch past the last progress the API showed.
    assert len(resumed) == 1 and resumed[0]["data"]["resumed_from"] in (epoch_at_kill, epoch_at_kill + 1)
    model = service.client.get("/v1/models/e2e").json()
    assert [v["source_job_id"] for v in model["versions"]] == [job_id]  # exactly one version


def test_training_that_raises_fails_the_job(service, pairs):
    from cube.pairs import PairData

    service.start_worker()
    # One conversation holds every pair: the held-out split cannot be made, so training raises.
    one_group = PairData(pairs.input, pairs.target, np.array(["same"] * len(pairs)))
    job_id = service.submit(service.upload(one_group))
    job = service.wait_status(job_id, {"succeeded", "failed"}, 60)
    assert job["status"] == "failed" and job["error"]["message"], job
    assert "split" in job["error"]["message"]
    assert service.client.get("/v1/models/e2e").status_code == 404


def test_text_pairs_are_encoded_by_the_worker_and_served_as_text(service):
    """The real teacher (all-MiniLM-L6-v2, 384d) encodes in the worker; the model then takes text."""
    import json

    service.start_worker()
    lines = [json.dumps({"input": f"what is item number {i}?", "target": f"item {i} is a thing", "group": f"g{i % 10}"})
             for i in range(60)]
    r = service.client.post("/v1/datasets", files={"file": ("qa.jsonl", "\n".join(lines).encode())},
                            data={"kind": "text_pairs", "teacher": "minilm", "name": "qa"})
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    job_id = service.submit(ds, model="qa", n_epochs=1)
    assert service.job(job_id)["status"] in ("validating_files", "queued", "running")
    job = service.wait_status(job_id, {"succeeded", "failed"}, 120)
    assert job["status"] == "succeeded", job
    dataset = service.client.get(f"/v1/datasets/{ds}").json()
    assert (dataset["status"], dataset["dim_in"], dataset["dim_out"]) == ("ready", 384, 384)
    r = service.client.post("/v1/transform", json={"model": "qa", "version": 1, "input": ["what is item number 3?"]})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 384


def read_event_stream(client, job_id: str, *, headers=None, params=None, on_message=None) -> list[tuple]:
    """(id, event, data) of every Server-Sent Event of the job's live stream, until the server closes it."""
    messages, fields = [], {}
    query = {"stream": "true", **(params or {})}
    with client.stream("GET", f"/v1/training-jobs/{job_id}/events", params=query, headers=headers or {}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(":"):  # a keep-alive comment
                continue
            if line:
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value
                continue
            if "data" in fields:
                message = (fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))
                messages.append(message)
                if on_message:
                    on_message(message)
            fields = {}
    return messages


@pytest.mark.parametrize("which", ["postgresql+redis", "embedded"])
def test_events_stream_live_while_the_job_runs_and_resume_after_the_last_id(which, request, pairs):
    service = request.getfixturevalue("service" if which == "postgresql+redis" else "embedded_service")
    service.start_worker()
    job_id = service.submit(service.upload(pairs), arch=SLOWER_CUBE, n_epochs=6)
    status_at_first_metrics = []

    def note_status(message):
        if message[1] == "metrics" and not status_at_first_metrics:
            status_at_first_metrics.append(service.job(job_id)["status"])

    messages = read_event_stream(service.client, job_id, on_message=note_status)
    assert messages[-1] == (None, "end", {"status": "succeeded"}), messages[-3:]
    assert status_at_first_metrics == ["running"]  # delivered while the job ran, not replayed after it
    events = messages[:-1]
    ids = [m[0] for m in events]
    assert ids == sorted(set(ids))  # in order, none twice
    listed = service.client.get(f"/v1/training-jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    assert [e["id"] for e in listed] == ids and [m[2] for m in events] == listed  # all of them, as the list has them
    assert sum(m[1] == "metrics" for m in events) == 6  # one per epoch
    # Reconnecting with Last-Event-ID (as an EventSource does) gives exactly what came after it.
    rest = read_event_stream(service.client, job_id, headers={"Last-Event-ID": ids[2]})
    assert [m[0] for m in rest[:-1]] == ids[3:] and rest[-1][1] == "end"
    bad = service.client.get(f"/v1/training-jobs/{job_id}/events", params={"stream": "true"},
                             headers={"Last-Event-ID": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "Last-Event-ID"

def test_the_worker_sends_signed_webhooks_when_a_job_succeeds(service, pairs):
    from standardwebhooks import Webhook as Verifier

    from tests.app.test_webhooks import Receiver

    rx = Receiver()
    try:
        hook = service.client.post("/v1/webhooks", json={"url": rx.url}).json()
        service.start_worker()
        job_id = service.submit(service.upload(pairs))
        assert service.wait_status(job_id, {"succeeded", "failed"}, 60)["status"] == "succeeded"
        wait_for(lambda: len(rx.accepted()) >= 2, 20, "the worker to send both events")
        got = [Verifier(hook["secret"]).verify(body, headers) for headers, body in rx.accepted()]
        # One transaction, in order; `default` moves too when the version passes its promotion gate.
        assert [p["type"] for p in got[:2]] == ["job.succeeded", "model.version.created"]
        assert [(p["type"], p["data"]["alias"]) for p in got[2:]] in ([], [("model.alias.moved", "default")])
        assert got[0]["data"]["id"] == job_id and got[0]["data"]["model_version_id"] == got[1]["data"]["id"]
    finally:
        rx.server.shutdown()
