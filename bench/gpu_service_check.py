"""The service half of bench/gpu_check.sh, against a running `cube up` whose transforms run on CUDA
(CUBE_TRANSFORM_DEVICE=cuda) with a `cube worker --device cuda` beside it:

1. waits until the API is ready and a CUDA worker is live;
2. uploads 2,000 synthetic 384d -> 384d pairs and trains one small job with "device": "cuda" (a
   default cube, 3 epochs); it must be started by a cube-cuda worker and succeed;
3. times /v1/transform on the model it made, through the Python client: single vectors (latency)
   and requests of the server's largest size (vectors/s).

    python bench/gpu_service_check.py --url http://127.0.0.1:8765 --out DIR

Prints the figures and writes them to DIR/service.json; exits non-zero, saying why, at the first
step that fails.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cube_client import Client, CubeError  # noqa: E402

DIM = 384
MODEL = "gpu-check"


class CheckFailed(Exception):
    pass


def wait_for_service(client: Client, timeout: float) -> dict:
    """/info once the API answers and a CUDA worker has reported in."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            info = client.info()
            if info["workers"].get("cuda", {}).get("live_workers", 0) > 0:
                return info
            last = f"no live CUDA worker yet (workers seen: {info['workers']})"
        except CubeError as exc:
            last = str(exc)
        time.sleep(1)
    raise CheckFailed(f"the service was not ready with a CUDA worker within {timeout:g} s: {last}")


def train_on_cuda(client: Client, out: Path, timeout: float) -> dict:
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    pairs = out / "pairs.npz"
    save_pairs_npz(pairs, nonlinear_pairs(n=2000, d_in=DIM, d_out=DIM, seed=0))
    dataset = client.datasets.upload(pairs, kind="embedding_pairs", name=MODEL)
    t0 = time.perf_counter()
    job = client.jobs.create(dataset_id=dataset["id"], model=MODEL, device="cuda", hyperparameters={"n_epochs": 3})
    job = client.jobs.wait(job["id"], timeout=timeout)
    seconds = time.perf_counter() - t0
    events = [e["message"] for e in client.jobs.events(job["id"], limit=100)["data"]]
    if job["status"] != "succeeded":
        raise CheckFailed(f"the CUDA job {job['id']} {job['status']}: {job.get('error')}; events: {events}")
    started = [m for m in events if m.startswith("started on ")]
    if not started or not started[0].startswith("started on cube-cuda@"):
        raise CheckFailed(f"the CUDA job was not started by a cube-cuda worker; events: {events}")
    return {"job": job["id"], "device": job["device"], "started": started[0], "post_to_succeeded_s": round(seconds, 2),
            "epochs": job["progress"]["epoch"], "metrics": job["metrics"]}


def time_transforms(client: Client, max_rows: int) -> dict:
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, DIM)).astype(np.float32)
    full = rng.standard_normal((max_rows, DIM)).astype(np.float32)
    for x in (one, full):  # warm-up: loads the model onto the GPU, then cuDNN's first passes
        y = client.transform(MODEL, x)
        if y.shape != (len(x), DIM) or not np.isfinite(y).all():
            raise CheckFailed(f"/v1/transform gave {y.shape} rows (finite: {np.isfinite(y).all()}) for {x.shape}")
    latencies = []
    for _ in range(50):
        t0 = time.perf_counter()
        client.transform(MODEL, one)
        latencies.append(time.perf_counter() - t0)
    t0, rounds = time.perf_counter(), 10
    for _ in range(rounds):
        client.transform(MODEL, full)
    rate = rounds * max_rows / (time.perf_counter() - t0)
    return {"one_vector_median_ms": round(1000 * statistics.median(latencies), 2),
            "one_vector_p90_ms": round(1000 * statistics.quantiles(latencies, n=10)[-1], 2),
            "rows_per_request": max_rows, "vectors_per_s": round(rate)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ready-timeout", type=float, default=180.0)
    ap.add_argument("--job-timeout", type=float, default=600.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with Client(args.url) as client:
        try:
            info = wait_for_service(client, args.ready_timeout)
            if info.get("transform_device") != "cuda":
                raise CheckFailed(f"the API transforms on {info.get('transform_device')!r}, not cuda (CUBE_TRANSFORM_DEVICE)")
            print(f"service ready: transforms on cuda, workers {info['workers']}", flush=True)
            job = train_on_cuda(client, args.out, args.job_timeout)
            print(f"tiny CUDA job {job['job']}: succeeded in {job['post_to_succeeded_s']} s from POST "
                  f"({job['epochs']} epochs; {job['started']})", flush=True)
            transform = time_transforms(client, info["limits"]["max_transform_vectors"])
            print(f"/v1/transform on cuda: 1 vector median {transform['one_vector_median_ms']} ms "
                  f"(p90 {transform['one_vector_p90_ms']} ms); {transform['rows_per_request']} vectors a request: "
                  f"{transform['vectors_per_s']:,} vectors/s", flush=True)
        except (CheckFailed, CubeError) as exc:
            print(f"gpu_service_check: FAILED: {exc}", file=sys.stderr)
            return 1
    (args.out / "service.json").write_text(json.dumps({"training_job": job, "transform": transform}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
