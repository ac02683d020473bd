"""A hostile upload: a ~5 MB NPZ whose .npy headers claim 10 GB of float32 (and whose zip entries
really decompress to 2 x 2.4 GB of zeros) sent to a running API, with the status it answers and the
API process's peak resident memory (VmHWM) before and after.

    .venv/bin/python bench/hostile_upload.py [--url http://127.0.0.1:8000 --pid PID] [--key KEY] [--write]

Without --url it starts `cube api` (SQLite, auth off on loopback) on a temporary data directory and
stops it at the end. With --url, --pid names the API process to read /proc/PID/status from (same
machine). --write puts the result under "## Hostile upload" in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20
CLAIMED_SHAPE = (1_310_720, 1024)  # float32: 5 GiB per array as the header declares, 10 GiB for the pair
STORED_BYTES = 2400 * MB           # zeros really in each zip entry (deflate: about 1000:1)


def hostile_npz(path: Path) -> Path:
    chunk = bytes(MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in ("input", "target"):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": CLAIMED_SHAPE})
                for _ in range(STORED_BYTES // MB):
                    f.write(chunk)
    return path


def peak_rss(pid: int) -> int:
    """Peak resident set size of a process, in bytes (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(data_dir: Path) -> tuple[subprocess.Popen, str]:
    from app.migrate import upgrade

    data_dir.mkdir(parents=True)
    upgrade(f"sqlite:///{data_dir / 'cube.db'}")
    port = free_port()
    env = {**os.environ, "CUBE_DATA_DIR": str(data_dir), "CUBE_LOG_LEVEL": "warning", "CUBE_REQUIRE_AUTH": "false",
           "PYTHONPATH": str(ROOT)}
    for var in ("CUBE_DATABASE_URL", "CUBE_BROKER_URL"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(client, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/livez").status_code == 200:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise SystemExit("the API did not start")


def write_results(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    results = path.read_text()
    section = "## Hostile upload\n"
    start = results.find(section)
    if start >= 0:
        end = results.find("\n## ", start + len(section))
        results = results[:start] + text + (results[end + 1:] if end >= 0 else "")
    else:
        results = results.rstrip("\n") + "\n\n" + text
    path.write_text(results)


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--pid", type=int, help="the API process (with --url)")
    parser.add_argument("--key", help="an API key of scope train or admin")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    started = time.perf_counter()
    path = hostile_npz(work / "hostile.npz")
    claimed = 2 * int(np.prod(CLAIMED_SHAPE)) * 4
    print(f"file: {path.stat().st_size / MB:.1f} MB on disk, headers claim {claimed / 2**30:.1f} GiB, "
          f"zip entries hold {2 * STORED_BYTES / 2**30:.1f} GiB (made in {time.perf_counter() - started:.0f} s)")
    proc = None
    try:
        if args.url:
            url, pid = args.url, args.pid
        else:
            proc, url = start_api(work / "data")
            pid = proc.pid
        headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
            wait_ready(client)
            client.get("/v1/datasets")  # the routes are warm before the baseline is read
            before = peak_rss(pid) if pid else None
            sent = time.perf_counter()
            with open(path, "rb") as f:
                r = client.post("/v1/datasets", files={"file": ("hostile.npz", f)}, data={"kind": "embedding_pairs"})
            took = time.perf_counter() - sent
            after = peak_rss(pid) if pid else None
        print(f"status: {r.status_code} in {took:.2f} s: {r.text[:300]}")
        if pid:
            print(f"API peak RSS: {before / MB:.0f} MB before the upload, {after / MB:.0f} MB after")
        if args.write and pid:
            write_results(
                "## Hostile upload\n\n"
                f"`.venv/bin/python bench/hostile_upload.py --write` ({time.strftime('%Y-%m-%d')}, one `cube api` "
                "process on SQLite):\n\n"
                "| file | claims | answer | API peak RSS before / after |\n|---|---|---|---|\n"
                f"| {path.stat().st_size / MB:.1f} MB NPZ (zip entries: {2 * STORED_BYTES / 2**30:.1f} GiB of zeros) "
                f"| {claimed / 2**30:.1f} GiB in its .npy headers | {r.status_code} `{r.json()['error']['code']}` "
                f"in {took:.2f} s | {before / MB:.0f} MB / {after / MB:.0f} MB |\n\n"
                "The upload streams to a temp file; the NPZ's zip directory and .npy headers are read (no array\n"
                "data) and compared with `CUBE_MAX_DATASET_BYTES` (1 GiB) before anything is decompressed.\n")
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        for p in work.rglob("*"):
            if p.is_file():
                p.unlink()


if __name__ == "__main__":
    main()
