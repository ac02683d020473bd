"""/v1/transform on local storage and on S3 storage, side by side in one process: the first request
(the model staged from the store and loaded) and the steady state once the version is loaded.

    .venv/bin/python bench/storage_transform.py [--rounds 5] [--seconds 2]

Starts moto's S3 server on loopback (tests/s3_server.py), makes one version of a 384 -> 384 cube
(random weights: serving speed does not depend on them) in each storage, then alternates rounds:
sequential requests through each app's in-process client, single-vector JSON and 64-vector base64.
Prints the median requests/s per storage and their ratio (target: S3 within noise of local, since
a loaded version never touches the store).
"""
from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DIM = 384
CUBE = {"kind": "cube", "grid": [4, 4, 6], "channels": 8, "steps": 4, "hidden": 32}


def make_app(data_dir: Path, storage_url: str | None):
    import io

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.migrate import upgrade
    from app.settings import Settings
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs
    from tests.conftest import make_version

    settings = Settings(data_dir=data_dir, storage_url=storage_url, require_auth=False)
    data_dir.mkdir(parents=True)
    upgrade(settings.database)
    client = TestClient(create_app(settings))
    client.__enter__()
    buf = io.BytesIO()
    save_pairs_npz(buf, nonlinear_pairs(n=200, d_in=DIM, d_out=DIM))
    ds = client.post("/v1/datasets", files={"file": ("p.npz", buf.getvalue())}, data={"kind": "embedding_pairs"}).json()["id"]
    make_version(client, settings, ds, architecture=CUBE)
    return client


def bodies(rng) -> dict[str, dict]:
    x = rng.standard_normal((64, DIM)).astype("<f4")
    return {"json x1": {"model": "m", "input": rng.standard_normal((1, DIM)).astype(np.float32).tolist()},
            "base64 x64": {"model": "m", "input": base64.b64encode(x.tobytes()).decode(), "dim": DIM,
                           "encoding_format": "base64"}}


def rate(client, body: dict, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        r = client.post("/v1/transform", json=body)
        if r.status_code != 200:
            raise SystemExit(r.text)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="per request kind, storage and round")
    args = ap.parse_args()
    from tests.s3_server import running_s3_server

    with tempfile.TemporaryDirectory() as tmp, running_s3_server(Path(tmp)) as s3:
        clients = {"local": make_app(Path(tmp) / "local", None), "s3": make_app(Path(tmp) / "s3", s3.new_url())}
        body = bodies(np.random.default_rng(0))
        first = {}
        for name, client in clients.items():
            t0 = time.perf_counter()
            client.post("/v1/transform", json=body["json x1"]).raise_for_status()  # staged (S3) and loaded here
            first[name] = time.perf_counter() - t0
        rates = {(name, kind): [] for name in clients for kind in body}
        for i in range(args.rounds):
            for kind in body:
                order = list(clients) if i % 2 == 0 else list(clients)[::-1]  # neither always goes first
                for name in order:
                    rates[(name, kind)].append(rate(clients[name], body[kind], args.seconds))
        for client in clients.values():
            client.__exit__(None, None, None)
    print(f"\n/v1/transform in process (TestClient, sequential), cube {CUBE['grid']} x{CUBE['channels']} 384 -> 384; "
          f"{args.rounds} alternating rounds of {args.seconds:g} s")
    print(f"first request (stage + load): local {first['local'] * 1000:.0f} ms, S3 {first['s3'] * 1000:.0f} ms")
    print(f"{'request':<12}{'local req/s':>14}{'S3 req/s':>12}{'S3 / local':>12}")
    for kind in body:
        loc, s3r = statistics.median(rates[("local", kind)]), statistics.median(rates[("s3", kind)])
        print(f"{kind:<12}{loc:>14.0f}{s3r:>12.0f}{s3r / loc:>11.0%}")


if __name__ == "__main__":
    main()
