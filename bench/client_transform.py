"""The Python client's `transform` over HTTP against the same model in process, in one run.

    .venv/bin/python bench/client_transform.py [--vectors 10000] [--rounds 3] [--write]

Starts `cube up` (auth off on loopback) on a temporary data directory, trains a default cube
(384 -> 384, one epoch on synthetic pairs: quality is not the point), then alternates, `--rounds`
times: `cube_client.Client.transform(model, x)` on N random 384d vectors (base64 on the wire,
chunked over the server's max vectors per request) and `cube.trainer.predict` (batched torch) on
the same artifact in this process, at batch sizes 256 (the server's) and 1024, with torch's
default thread count and with one thread: the best of these is the in-process figure (on a busy
2-core machine one thread can beat two several times over). Prints the median vectors/s of each and the ratio (target: the
client at least 70% of in-process), checks both give the same vectors, and stops the server.
--write puts the result under "## Client transform over HTTP" in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from transform_load import DIM, MODEL, start_server, stop_server, train_versions, wait_ready  # noqa: E402

TARGET = 0.70
IN_PROCESS = [(threads, batch) for threads in (None, 1) for batch in (256, 1024)]  # None: torch's default
SECTION = "Client transform over HTTP"


def load_served_model(data_dir: Path):
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import ModelVersion
    from app.settings import Settings
    from app.storage import get_storage
    from cube.artifacts import load_model

    settings = Settings(data_dir=data_dir)
    with get_sessionmaker(settings.database)() as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.model_name == MODEL, ModelVersion.version == 1))
        path = get_storage(settings).stage_tree(version.artifact_key)
    return load_model(path)[0]


def timed(fn) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    y = fn()
    return time.perf_counter() - started, y


def measure(url: str, data_dir: Path, n: int, rounds: int) -> dict:
    import torch

    from cube.trainer import predict
    from cube_client import Client

    model = load_served_model(data_dir)
    x = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    default_threads = torch.get_num_threads()
    client_s, local_s = [], {config: [] for config in IN_PROCESS}
    max_diff = 0.0
    with Client(url) as client, torch.inference_mode():
        limits = client.info()["limits"]
        client.transform(MODEL, x[:64], version=1)  # warm-up: loads the model in the server
        predict(model, x[:64])
        for _ in range(rounds):
            seconds, y_http = timed(lambda: client.transform(MODEL, x, version=1))
            client_s.append(seconds)
            for threads, batch in IN_PROCESS:
                torch.set_num_threads(threads or default_threads)
                seconds, y_local = timed(lambda: predict(model, x, batch_size=batch))
                local_s[(threads, batch)].append(seconds)
                max_diff = max(max_diff, float(np.abs(y_http - y_local).max()))
            torch.set_num_threads(default_threads)
    local_vps = {b: n / statistics.median(s) for b, s in local_s.items()}
    best = max(local_vps, key=local_vps.get)
    http_rate = n / statistics.median(client_s)
    return {"n": n, "rounds": rounds, "client_vps": http_rate, "local_vps": local_vps, "best": best,
            "ratio": http_rate / local_vps[best], "max_diff": max_diff, "requests": -(-n // limits["max_transform_vectors"]),
            "max_vectors": limits["max_transform_vectors"], "threads": default_threads}


def render(r: dict) -> str:
    met = "met" if r["ratio"] >= TARGET else "not met"
    return "\n".join([
        f"`python bench/client_transform.py --vectors {r['n']} --rounds {r['rounds']}` (`cube up` on loopback, the default "
        f"cube 384 -> 384; the client and the in-process run alternate, median of {r['rounds']} rounds each; "
        f"2 CPU cores shared with the server and other work).", "",
        "| path | vectors/s | |", "|---|---:|---|",
        f"| `cube_client.Client.transform` over HTTP ({r['requests']} requests of at most {r['max_vectors']} vectors, "
        f"base64) | {r['client_vps']:,.0f} | {r['ratio']:.0%} of the best in-process |",
        *[f"| `cube.trainer.predict` in process, batch {b}, {t or r['threads']} torch thread{'s' if (t or r['threads']) > 1 else ''} "
          f"| {v:,.0f} | {'best in-process' if (t, b) == r['best'] else ''} |" for (t, b), v in r["local_vps"].items()], "",
        f"Target: the client at least {TARGET:.0%} of in-process: {r['ratio']:.0%} ({met}). "
        f"Largest difference between the two outputs: {r['max_diff']:.2g}."])


def write_results(report: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    section = f"## {SECTION}\n\n{report}\n"
    pattern = re.compile(rf"^## {re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n" if pattern.search(text) \
        else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help=f'write the result under "## {SECTION}" in bench/RESULTS.md')
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cube-client-bench-"))
    data_dir = tmp / "data"
    proc, url = start_server(data_dir)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            wait_ready(http)
            train_versions(http, n=1)
        result = measure(url, data_dir, args.vectors, args.rounds)
    finally:
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    report = render(result)
    print(report)
    print(f"\nratio (client / in-process): {result['ratio']:.2f}")
    if args.write:
        write_results(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
