"""Bulk transform throughput: a transform job over N 384d vectors on the service's worker, beside the
in-process batched forward pass of the same model on the same vectors, in one run.

    .venv/bin/python bench/bulk_transform.py [--rows 200000]

It starts `cube up` (auth off on loopback, one worker) on a temporary data directory, trains a default
cube (384 -> 384, default CubeConfig, 1 epoch on 256 synthetic pairs: quality is not the point),
uploads the vectors as an .npy with POST /v1/transform-jobs, and times the job from its 202 to
`succeeded` (claim, reading, forward passes, writing the result, progress updates). The in-process
figure runs the same artifact under torch.inference_mode in batches of the worker's size
(CUBE_TRANSFORM_JOB_BATCH_ROWS, 1024), once before the job and once after (the machine is shared; the
mean is the reference). The result is downloaded and compared with the in-process output. Prints the
figures and the ratio (target >= 80%).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.transform_load import DIM, MODEL, start_server, stop_server, train_versions, wait_ready  # noqa: E402

TARGET = 0.80


def in_process(model_dir: Path, x: np.ndarray, batch_rows: int) -> tuple[float, np.ndarray]:
    """Seconds to map x through the artifact in batches of batch_rows, and the output."""
    import torch

    from cube.artifacts import load_model

    model, _ = load_model(model_dir)
    out = np.empty((len(x), DIM), dtype=np.float32)
    with torch.inference_mode():
        model(torch.from_numpy(np.array(x[:batch_rows])))  # warm-up
        started = time.perf_counter()
        for i in range(0, len(x), batch_rows):
            out[i:i + batch_rows] = model(torch.from_numpy(np.array(x[i:i + batch_rows]))).numpy()
        return time.perf_counter() - started, out


def artifact_dir(data_dir: Path) -> Path:
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import ModelVersion
    from app.settings import Settings
    from app.storage import get_storage

    settings = Settings(data_dir=data_dir)
    with get_sessionmaker(settings.database)() as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.model_name == MODEL, ModelVersion.version == 1))
        return get_storage(settings).stage_tree(version.artifact_key)


def run_job(client, path: Path) -> tuple[float, float, str]:
    """(upload seconds, job seconds from 202 to succeeded, job id)."""
    started = time.perf_counter()
    with open(path, "rb") as f:
        r = client.post("/v1/transform-jobs", files={"file": ("vectors.npy", f)}, data={"model": MODEL, "version": "1"},
                       timeout=600)
    r.raise_for_status()
    created = time.perf_counter()
    job_id = r.json()["id"]
    while (job := client.get(f"/v1/transform-jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)
    finished = time.perf_counter()
    if job["status"] != "succeeded":
        raise SystemExit(f"transform job {job_id} {job['status']}: {job.get('error')}")
    return created - started, finished - created, job_id


def download(client, job_id: str, dest: Path) -> float:
    started = time.perf_counter()
    with client.stream("GET", f"/v1/transform-jobs/{job_id}/result", timeout=600) as r, open(dest, "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_bytes(1 << 20):
            f.write(chunk)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    import httpx

    from app.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    batch_rows = Settings().transform_job_batch_rows
    tmp = Path(tempfile.mkdtemp(prefix="cube-bulk-"))
    proc, url = start_server(tmp / "data")
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_ready(client)
            train_versions(client, n=1)
            rng = np.random.default_rng(0)
            x = rng.standard_normal((args.rows, DIM)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            np.save(tmp / "vectors.npy", x)
            model_dir = artifact_dir(tmp / "data")
            before, expected = in_process(model_dir, x, batch_rows)
            upload_s, job_s, job_id = run_job(client, tmp / "vectors.npy")
            after, _ = in_process(model_dir, x, batch_rows)
            download_s = download(client, job_id, tmp / "result.npy")
        got = np.load(tmp / "result.npy", mmap_mode="r")
        diff = float(np.abs(got - expected).max())
    finally:
        stop_server(proc)
    reference = (before + after) / 2
    ratio = reference / job_s
    print(f"{args.rows:,} vectors of {DIM}d through the default cube, batches of {batch_rows}")
    print(f"in-process (inference_mode, same artifact): {args.rows / before:,.0f} vectors/s before the job, "
          f"{args.rows / after:,.0f} after; reference {args.rows / reference:,.0f} vectors/s")
    print(f"bulk transform job, 202 -> succeeded: {job_s:.1f} s = {args.rows / job_s:,.0f} vectors/s")
    print(f"upload {upload_s:.1f} s, result download {download_s:.1f} s ({(tmp / 'result.npy').stat().st_size / 2**20:,.0f} MiB); "
          f"max |job - in-process| = {diff:.2g}")
    print(f"ratio: {ratio:.0%} of the in-process throughput (target >= {TARGET:.0%}: {'met' if ratio >= TARGET else 'NOT met'})")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
