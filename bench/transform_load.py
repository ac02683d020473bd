"""Transform under load: requests/s, vectors/s, p50 and p99 of /v1/transform, the server's CPU per
request, beside the in-process batched forward pass of the same model (the ceiling) and the server a
user would write instead (bench/naive_server.py), and a run that moves an alias every second under
load and counts failed requests.

    .venv/bin/python bench/transform_load.py [--seconds 10] [--api-workers 1 2] [--torch-threads 1]
                                             [--load-cpus 1] [--write]

It starts `cube up` (auth off on loopback) on a temporary data directory and trains a default cube
(384 -> 384, default CubeConfig, 1 epoch on a tiny synthetic NPZ: quality is not the point) twice.
Then for each --api-workers N it starts `cube api --workers N` on the same data (the load's server),
and the naive peer on the same artifact. The load generator (bench/load_generator.py) runs as its
own process for every row, pinned to --load-cpus if given; the server's CPU per request is read
from /proc for its processes.
--write puts the report under "## Transform under load" in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_generator import DIM, body_for  # noqa: E402
MODEL = "bench"
CONCURRENCY = (1, 8, 64)
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """A server process (its own session, so it stops with its children) on a free port."""
    port = free_port()
    proc = subprocess.Popen([*args, "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def server_env(data_dir: Path) -> dict:
    env = {**os.environ, "CUBE_DATA_DIR": str(data_dir), "CUBE_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    for var in ("CUBE_DATABASE_URL", "CUBE_BROKER_URL", "CUBE_REQUIRE_AUTH"):
        env.pop(var, None)
    return env


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """`cube up` on `data_dir` (auth off on loopback): this bench's and the other HTTP benches' service."""
    return start([sys.executable, "-m", "app.cli", "up", "--data-dir", str(data_dir)], server_env(data_dir),
                 data_dir.parent / "up.log")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_ready(client, path: str = "/readyz", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get(path).status_code == 200:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server did not become ready: {client.base_url}{path}")


def train_versions(client, n: int = 2) -> None:
    """Two versions of a default cube (384 -> 384), one epoch each on 256 synthetic pairs."""
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    tmp = Path(tempfile.mkdtemp()) / "pairs.npz"
    save_pairs_npz(tmp, nonlinear_pairs(n=256, d_in=DIM, d_out=DIM))
    ds = client.post("/v1/datasets", files={"file": ("pairs.npz", tmp.read_bytes())}, data={"kind": "embedding_pairs"})
    shutil.rmtree(tmp.parent)
    ds.raise_for_status()
    for seed in range(1, n + 1):
        job = client.post("/v1/training-jobs", json={"dataset_id": ds.json()["id"], "model": MODEL, "seed": seed,
                                                     "architecture": {"kind": "cube"}, "hyperparameters": {"n_epochs": 1}})
        job.raise_for_status()
        job_id, deadline = job.json()["id"], time.monotonic() + 600
        while (status := client.get(f"/v1/training-jobs/{job_id}").json()["status"]) not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise SystemExit("training took too long")
            time.sleep(0.5)
        if status != "succeeded":
            raise SystemExit(f"training job {job_id} {status}: {client.get(f'/v1/training-jobs/{job_id}').text}")


def artifact_dir(data_dir: Path) -> Path:
    """Version 1's artifact, staged from the service's storage."""
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import ModelVersion
    from app.settings import Settings
    from app.storage import get_storage

    settings = Settings(data_dir=data_dir)
    with get_sessionmaker(settings.database)() as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.model_name == MODEL, ModelVersion.version == 1))
        return Path(get_storage(settings).stage_tree(version.artifact_key))


def in_process_ceiling(artifact: Path, seconds: float, threads: int) -> dict[int, float]:
    """Vectors/s of what the server's batcher runs (cube.trainer.predict on the model through
    cube.fast_inference.accelerate) on the artifact, at batch 1 and 64, with the API processes' torch threads."""
    import torch

    from cube.artifacts import load_model
    from cube.fast_inference import accelerate
    from cube.trainer import predict

    if threads:
        torch.set_num_threads(threads)
    model = accelerate(load_model(artifact)[0])
    out = {}
    for batch in (1, 64):
        x = np.random.default_rng(0).standard_normal((batch, DIM)).astype(np.float32)
        predict(model, x)  # warm-up
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            predict(model, x)
            n += batch
        out[batch] = n / (time.perf_counter() - started)
    return out


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes have used."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def drive(url: str, kind: str, concurrency: int, seconds: float, server_pid: int, load_cpus: str | None,
          **extra) -> dict:
    """One row: the load generator in its own process, and the server's CPU over the same time."""
    pids = process_tree(server_pid)
    cmd = [sys.executable, str(ROOT / "bench" / "load_generator.py"), "--url", url, "--kind", kind,
           "--concurrency", str(concurrency), "--seconds", str(seconds), "--model", MODEL]
    if load_cpus:
        cmd += ["--cpus", load_cpus]
    for name, value in extra.items():
        cmd += [f"--{name.replace('_', '-')}"] + ([] if value is True else [str(value)])
    before = cpu_seconds(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    after = cpu_seconds(pids)
    row = json.loads(out.stdout)
    done = max(1, row["requests"] - row["failed"])
    row["server_ms"] = 1000 * (after - before) / done
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per load run")
    ap.add_argument("--api-workers", type=int, nargs="+", default=[1], help="`cube api --workers N` configurations")
    ap.add_argument("--torch-threads", type=int, default=0, help="CUBE_TORCH_THREADS for the API processes (0: torch's default)")
    ap.add_argument("--load-cpus", help="pin the load generator to these CPUs, e.g. 1")
    ap.add_argument("--write", action="store_true", help="write the report into bench/RESULTS.md")
    args = ap.parse_args()
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="cube-transform-bench-"))
    data_dir = tmp / "data"
    env = server_env(data_dir)
    procs = []
    try:
        up, url = start_server(data_dir)
        procs.append(up)
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_ready(client)
            print("training two versions of a default 384 -> 384 cube ...", file=sys.stderr, flush=True)
            train_versions(client)
            client.put(f"/v1/models/{MODEL}/aliases/prod", json={"version": 1}).raise_for_status()
        artifact = artifact_dir(data_dir)
        ceiling = in_process_ceiling(artifact, min(args.seconds, 3.0), args.torch_threads)
        rows, alias_run = [], None
        api_env = {**env, "CUBE_TORCH_THREADS": str(args.torch_threads), "CUBE_REQUIRE_AUTH": "false"}
        for workers in args.api_workers:
            api, api_url = start([sys.executable, "-m", "app.cli", "api", "--workers", str(workers)], api_env,
                                 tmp / f"api-{workers}.log")
            procs.append(api)
            with httpx.Client(base_url=api_url, timeout=60) as client:
                wait_ready(client)
            for _ in range(8 * workers):  # load the model in the processes: new connections spread over them
                with httpx.Client(base_url=api_url, timeout=60) as fresh:
                    for kind in ("json x1", "base64 x64"):
                        fresh.post("/v1/transform", json=body_for(kind, MODEL, np.random.default_rng(0))).raise_for_status()
            for kind in ("json x1", "base64 x64"):
                for c in CONCURRENCY:
                    rows.append({"server": f"cube api --workers {workers}", **drive(api_url, kind, c, args.seconds, api.pid, args.load_cpus)})
                    print(rows[-1], file=sys.stderr, flush=True)
            if alias_run is None:
                alias_run = drive(api_url, "json x1", 8, args.seconds, api.pid, args.load_cpus, alias="prod", move_alias=True)
            stop_server(api)
        # The peer gets the API processes' torch threads too: the comparison is of the servers, not of
        # a thread setting only one of them was given.
        peer_env = {**env, "NAIVE_ARTIFACT": str(artifact),
                    **({"OMP_NUM_THREADS": str(args.torch_threads)} if args.torch_threads else {})}
        peer, peer_url = start([sys.executable, "-m", "uvicorn", "bench.naive_server:app", "--log-level", "warning"],
                               peer_env, tmp / "peer.log")
        procs.append(peer)
        with httpx.Client(base_url=peer_url, timeout=60) as client:
            wait_ready(client, "/docs")
        for c in CONCURRENCY:
            rows.append({"server": "naive peer", **drive(peer_url, "json x1", c, args.seconds, peer.pid, args.load_cpus)})
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    report = render(rows, alias_run, ceiling, args)
    print(report)
    if args.write:
        write_results(report)
    return 0


def render(rows: list[dict], alias_run: dict, ceiling: dict[int, float], args) -> str:
    cmd = "python bench/transform_load.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
    load_where = f"pinned to CPU {args.load_cpus}" if args.load_cpus else "not pinned"
    lines = [f"`{cmd.strip()}`: loopback, {args.seconds:g} s per row; the load generator is its own process "
             f"({load_where}); torch threads per API process and for the peer: {args.torch_threads or 'torch default'}. "
             f"This machine has {os.cpu_count()} CPU cores, shared by the server, the load generator and anything "
             "else running: the figures move from run to run; ratios within one run hold better.", "",
             f"In-process ceiling (`cube.trainer.predict` on the accelerated model, as the server runs it; same artifact): batch 1 = {ceiling[1]:,.0f} vectors/s, "
             f"batch 64 = {ceiling[64]:,.0f} vectors/s.", "",
             "| server | request | concurrency | requests/s | vectors/s | p50 ms | p99 ms | failed | server CPU ms/request "
             "| load generator CPU ms/request | vs in-process batch 64 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        done = max(1, r["requests"] - r["failed"])
        lines.append(f"| {r['server']} | {r['kind']} | {r['concurrency']} | {r['rps']:,.0f} | {r['vps']:,.0f} | "
                     f"{r['p50']:.1f} | {r['p99']:.1f} | {r['failed']} | {r['server_ms']:.2f} | "
                     f"{1000 * r['cpu_s'] / done:.2f} | {r['vps'] / ceiling[64]:.0%} |")
    a = alias_run
    lines += ["", f"Alias moved every second under load (json x1, concurrency 8, {args.seconds:g} s, "
              f"`cube api --workers {args.api_workers[0]}`): {a['moves']} moves, {a['requests']} requests, "
              f"**{a['failed']} failed**, served by {len(a['served_by'])} versions "
              f"({', '.join(str(n) for n in a['served_by'].values())} requests), p99 {a['p99']:.1f} ms.", ""]
    lines.append("Targets:")
    for workers in args.api_workers:
        ours = {(r["kind"], r["concurrency"]): r for r in rows if r["server"] == f"cube api --workers {workers}"}
        peer = {r["concurrency"]: r for r in rows if r["server"] == "naive peer"}
        ahead = all(ours[("json x1", c)]["rps"] > peer[c]["rps"] for c in CONCURRENCY)
        b64, one = ours[("base64 x64", 8)], ours[("json x1", 64)]
        lines += [f"- `--workers {workers}`: ahead of the naive peer at every concurrency (json x1): "
                  + ", ".join(f"{ours[('json x1', c)]['rps']:,.0f} vs {peer[c]['rps']:,.0f}" for c in CONCURRENCY)
                  + f" ({'met' if ahead else 'not met'})",
                  f"- `--workers {workers}`: json x1 at concurrency 64 >= 50% of in-process batch 64: "
                  f"{one['vps'] / ceiling[64]:.0%} ({'met' if one['vps'] >= 0.5 * ceiling[64] else 'not met'}); "
                  f"server CPU {one['server_ms']:.2f} ms/request, at most 1 ms: "
                  f"{'met' if one['server_ms'] <= 1 else 'not met'}",
                  f"- `--workers {workers}`: base64 x64 at concurrency 8 >= 70% of in-process batch 64: "
                  f"{b64['vps'] / ceiling[64]:.0%} ({'met' if b64['vps'] >= 0.7 * ceiling[64] else 'not met'})"]
    lines.append(f"- alias moves: {a['failed']} failed requests ({'met' if a['failed'] == 0 else 'not met'})")
    return "\n".join(lines)


def write_results(report: str) -> None:
    """Replace (or add) only the "## Transform under load" section of bench/RESULTS.md."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"## Transform under load\n\n{report}\n"
    pattern = re.compile(r"^## Transform under load\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
