"""`cube api --workers N`: N API processes behind one port, answering, all stopped by one SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.test_embedded_up import ROOT, children_of, free_port
from tests.e2e.test_service_e2e import wait_for

pytestmark = pytest.mark.e2e


def test_cube_api_with_two_workers_serves_from_two_processes_and_stops_cleanly(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUBE_DATA_DIR": str(data), "CUBE_REQUIRE_AUTH": "false",
           "CUBE_DATABASE_URL": f"sqlite:///{data / 'cube.db'}", "CUBE_BROKER_URL": f"sqla+sqlite:///{data / 'broker.db'}"}
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    port, log = free_port(), open(tmp_path / "api.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--port", str(port), "--workers", "2"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 90, "cube api --workers 2 to answer /readyz", interval=0.3)
        wait_for(lambda: len(children_of(proc.pid)) >= 2, 30, "two API processes")
        serving = children_of(proc.pid)
        with httpx.Client(base_url=base, timeout=10) as c:
            assert all(c.get("/livez").status_code == 200 for _ in range(20))
        assert len(serving) >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    time.sleep(0.5)
    assert children_of(proc.pid) == [] and proc.returncode == 0, (tmp_path / "api.log").read_text()[-2000:]
