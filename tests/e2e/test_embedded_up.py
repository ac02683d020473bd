"""`cube up`: the embedded default (SQLite, the SQL broker, local storage, one worker) runs a job end
to end; Ctrl-C (SIGINT) or SIGTERM stops the API, the worker and its pool, even mid-job, and the
next `cube up` resumes that job from its checkpoint."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_CUBE
from tests.e2e.test_service_e2e import SLOWER_CUBE, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def start_up(tmp_path, port: int, log: Path, settings_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`cube up` on the embedded default under tmp_path/d, with extra CUBE_* variables; returns once /readyz answers."""
    env = {k: v for k, v in {**os.environ, "CUBE_TORCH_THREADS": "1", "PYTHONPATH": str(ROOT), **(settings_env or {})}.items()
           if k not in ("CUBE_DATABASE_URL", "CUBE_BROKER_URL")}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--data-dir", str(tmp_path / "d")],
                            cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def ready():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 90, "cube up to answer /readyz", interval=0.3)
    except AssertionError:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc


def test_cube_up_runs_a_job_and_stops_on_ctrl_c(tmp_path, pairs_npz):
    port, log = free_port(), tmp_path / "up.log"
    proc = start_up(tmp_path, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        text = log.read_text()
        assert f"{base}/v1" in text and "AUTHENTICATION IS OFF" in text
        with httpx.Client(base_url=base, timeout=30) as c:
            ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())},
                        data={"kind": "embedding_pairs", "name": "up"}).json()["id"]
            job = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE,
                                                    "hyperparameters": {"n_epochs": 2}}).json()
            done = wait_for(lambda: (j := c.get(f"/v1/training-jobs/{job['id']}").json())["status"]
                            in ("succeeded", "failed") and j, 120, "the job", interval=0.3)
            assert done["status"] == "succeeded", (done, log.read_text()[-3000:])
            r = c.post("/v1/transform", json={"model": "up", "version": 1, "input": [[0.1] * 16]})
            assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 16
        worker_pids = children_of(proc.pid)
        assert worker_pids, "cube up should run a worker process"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
        assert proc.wait(60) in (0, 130)
        wait_for(lambda: all(subprocess.run(["kill", "-0", str(p)], capture_output=True).returncode != 0
                             for p in worker_pids), 30, "the worker to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_the_worker_does_not_outlive_a_killed_cube_up(tmp_path):
    port = free_port()
    env = {k: v for k, v in {**os.environ, "PYTHONPATH": str(ROOT)}.items()
           if k not in ("CUBE_DATABASE_URL", "CUBE_BROKER_URL")}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--data-dir", str(tmp_path / "d")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        workers = wait_for(lambda: children_of(proc.pid), 60, "the worker process", interval=0.2)
        proc.kill()  # SIGKILL: no finally, no clean-up in `cube up`
        proc.wait()
        wait_for(lambda: not any(Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text().lower()
                                 for w in workers), 60, "the orphaned worker to exit", interval=0.3)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        found += kids
        todo += kids
    return found


def gone(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


def all_events(c: httpx.Client, job_id: str) -> list[dict]:
    events, after = [], ""
    while True:
        page = c.get(f"/v1/training-jobs/{job_id}/events", params={"limit": 100, **({"after": after} if after else {})}).json()
        events += page["data"]
        if not page["has_more"]:
            return events
        after = page["data"][-1]["id"]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigterm_mid_job_stops_everything_and_the_next_start_resumes(tmp_path, pairs_npz):
    port, log = free_port(), tmp_path / "up.log"
    proc = start_up(tmp_path, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())},
                        data={"kind": "embedding_pairs", "name": "up"}).json()["id"]
            job_id = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": SLOWER_CUBE, "hyperparameters": {
                "n_epochs": 5000, "early_stopping_patience": 0}}).json()["id"]
            wait_for(lambda: c.get(f"/v1/training-jobs/{job_id}").json()["progress"]["epoch"] >= 2, 90, "epoch 2")
        tree = descendants(proc.pid)
        assert len(tree) >= 2, "a worker and its pool child"
        proc.send_signal(signal.SIGTERM)  # to `cube up` alone, as a service manager sends it
        assert proc.wait(60) == 0
        wait_for(lambda: all(gone(p) for p in tree), 10, "the worker and its pool child to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc = start_up(tmp_path, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            def resumed():
                return [e for e in all_events(c, job_id) if e["message"].startswith("resumed from epoch")]

            try:
                at = wait_for(resumed, 120, "the job to resume", interval=0.5)[0]["data"]["resumed_from"]
            except AssertionError:
                messages = [e["message"] for e in all_events(c, job_id) if e["type"] != "metrics"]
                raise AssertionError((messages, log.read_text()[-4000:])) from None
            job = c.get(f"/v1/training-jobs/{job_id}").json()
            assert job["status"] == "running" and job["attempt"] == 2 and at >= 2, (job, log.read_text()[-3000:])
            handed_back = [e for e in all_events(c, job_id) if (e["data"] or {}).get("reason") == "worker_lost"]
            assert len(handed_back) == 1 and handed_back[0]["data"]["attempt"] == 1
            assert c.post(f"/v1/training-jobs/{job_id}/cancel").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
