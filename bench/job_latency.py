"""Job latency: time from POST /v1/training-jobs to `running`, and a small job's wall time (POST to
`succeeded`), on Redis and on the embedded SQL broker, side by side, and on Redis with S3 storage.

    .venv/bin/python bench/job_latency.py [--jobs 5] [--redis redis://127.0.0.1:6379/0] [--no-s3]

Each row gets a fresh data directory (SQLite metadata, local storage) and one real worker process
(`cube worker`); the API runs in this process. The S3 row stores everything in a moto S3 server on
loopback (tests/s3_server.py): the upload, the worker's staged dataset, its checkpoints and run.
Targets: Redis median < 1 s (with S3 too), embedded < 3 s to `running`.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY_CUBE = {"kind": "cube", "grid": [2, 2, 2], "channels": 4, "steps": 2, "hidden": 8}


def measure(broker: str | None, jobs: int, storage_url: str | None = None) -> dict[str, list[float]]:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.migrate import upgrade
    from app.settings import Settings
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    data_dir = Path(tempfile.mkdtemp(prefix="cube-bench-"))
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "CUBE_DATA_DIR": str(data_dir), "CUBE_TRAINING_QUEUE": f"bench-{tag}",
           "CUBE_BROKER_KEY_PREFIX": f"cube-bench-{tag}:", "CUBE_TORCH_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("CUBE_DATABASE_URL", None)
    env.pop("CUBE_BROKER_URL", None)
    if broker:
        env["CUBE_BROKER_URL"] = broker
    if storage_url:
        env["CUBE_STORAGE_URL"] = storage_url
    settings = Settings(data_dir=data_dir, broker_url=broker, training_queue=env["CUBE_TRAINING_QUEUE"],
                        broker_key_prefix=env["CUBE_BROKER_KEY_PREFIX"], storage_url=storage_url,
                        require_auth=False)  # the API is this process, reached only through its TestClient
    upgrade(settings.database)
    log = open(data_dir / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--loglevel", "info"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results = {"to_running": [], "to_succeeded": []}
    try:
        deadline = time.monotonic() + 90
        while b"ready." not in (data_dir / "worker.log").read_bytes():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("worker did not start:\n" + (data_dir / "worker.log").read_text()[-2000:])
            time.sleep(0.1)
        client = TestClient(create_app(settings))
        client.__enter__()  # run the app's startup, as uvicorn does
        buf = io.BytesIO()
        save_pairs_npz(buf, nonlinear_pairs(n=400, d_in=16, d_out=16))
        ds = client.post("/v1/datasets", files={"file": ("p.npz", buf.getvalue())}, data={"kind": "embedding_pairs"}).json()["id"]
        for i in range(jobs + 1):  # the first job is a warm-up (the pool child may still be importing torch)
            t0 = time.perf_counter()
            job = client.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE,
                                                         "hyperparameters": {"n_epochs": 2}}).json()
            running = None
            while True:
                status = client.get(f"/v1/training-jobs/{job['id']}").json()["status"]
                if status != "queued" and running is None:
                    running = time.perf_counter() - t0
                if status in ("succeeded", "failed", "cancelled"):
                    break
                if time.perf_counter() - t0 > 120:
                    raise SystemExit(f"job {job['id']} did not finish")
                time.sleep(0.01)
            if status != "succeeded":
                raise SystemExit(f"job {job['id']} ended {status}")
            if i > 0:
                results["to_running"].append(running)
                results["to_succeeded"].append(time.perf_counter() - t0)
        client.__exit__(None, None, None)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        if broker and broker.startswith("redis"):
            import redis

            r = redis.Redis.from_url(broker)
            keys = list(r.scan_iter(match=env["CUBE_BROKER_KEY_PREFIX"] + "*"))
            if keys:
                r.delete(*keys)
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-s3", action="store_true", help="skip the row with S3 storage")
    args = parser.parse_args()
    rows = []

    def row(name, broker, target, storage_url=None):
        r = measure(broker, args.jobs, storage_url)
        rows.append((name, statistics.median(r["to_running"]), max(r["to_running"]), statistics.median(r["to_succeeded"]), target))

    row("redis", args.redis, 1.0)
    row("embedded (SQL broker)", None, 3.0)
    if not args.no_s3:
        from tests.s3_server import running_s3_server

        with tempfile.TemporaryDirectory() as tmp, running_s3_server(Path(tmp)) as s3:
            row("redis + S3 storage", args.redis, 1.0, s3.new_url())
    print(f"\n{args.jobs} jobs per broker after one warm-up job; tiny cube (grid 2x2x2, 4 channels), 2 epochs on 400 pairs, 1 torch thread")
    print(f"{'broker':<24}{'POST->running median':>22}{'max':>8}{'POST->succeeded median':>25}{'target':>9}")
    for name, med, worst, done, target in rows:
        print(f"{name:<24}{med:>20.3f} s{worst:>7.2f}s{done:>23.2f} s{'< %.0f s' % target:>9}  {'ok' if med < target else 'MISSED'}")


if __name__ == "__main__":
    main()
