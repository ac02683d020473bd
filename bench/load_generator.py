"""The load generator of bench/transform_load.py, run as its own process so that its CPU is its own
(and can be pinned to its own cores with --cpus) and measured apart from the server's.

    python bench/load_generator.py --url http://127.0.0.1:8000 --kind "json x1" --concurrency 64 --seconds 10
        [--model bench] [--alias prod --move-alias] [--key KEY] [--cpus 1]

Prints one JSON object: requests, failed, requests/s, vectors/s, p50/p99 ms, the versions that
answered, alias moves, and this process's own CPU seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import time
from urllib.parse import urlsplit

import numpy as np

DIM = 384
KINDS = {"json x1": 1, "base64 x64": 64}


def body_for(kind: str, model: str, rng) -> dict:
    if kind == "json x1":
        return {"model": model, "input": rng.standard_normal((1, DIM)).astype(np.float32).tolist()}
    x = rng.standard_normal((64, DIM)).astype("<f4")
    return {"model": model, "input": base64.b64encode(x.tobytes()).decode(), "dim": DIM, "encoding_format": "base64"}


class KeepAliveConnection:
    """One persistent HTTP/1.1 connection that sends pre-encoded requests and reads the answers.

    It must be cheap per request: httpx's AsyncClient spent about 6 ms of CPU per request at 64
    concurrent connections here (0.9 ms at one), which capped any endpoint, even /livez, near 180
    requests/s. This costs a fraction of that."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        return status, headers, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def encode_request(host: str, method: str, path: str, headers: dict, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{extra}"
            f"content-length: {len(payload)}\r\n\r\n").encode() + payload


async def load(url: str, headers: dict, kind: str, concurrency: int, seconds: float, model: str,
               alias: str | None = None, move_alias: bool = False) -> dict:
    parsed = urlsplit(url)
    rng = np.random.default_rng(concurrency)
    bodies = [body_for(kind, model, rng) for _ in range(16)]
    if alias:
        for b in bodies:
            b["alias"] = alias
    requests = [encode_request(parsed.netloc, "POST", "/v1/transform", headers, b) for b in bodies]
    latencies: list[float] = []
    failed = moves = 0
    served_by: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds

    async def user(i: int) -> None:
        nonlocal failed
        conn = KeepAliveConnection(parsed.hostname, parsed.port)
        k = i
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    status, got, _ = await conn.request(requests[k % len(requests)])
                    ok = status == 200
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    ok, conn = False, KeepAliveConnection(parsed.hostname, parsed.port)
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    failed += 1
                elif "x-model-version" in got:
                    served_by[got["x-model-version"]] = served_by.get(got["x-model-version"], 0) + 1
                k += 1
        finally:
            await conn.close()

    async def mover() -> None:
        nonlocal moves
        conn = KeepAliveConnection(parsed.hostname, parsed.port)
        try:
            while time.perf_counter() < stop_at:
                await asyncio.sleep(1.0)
                raw = encode_request(parsed.netloc, "PUT", f"/v1/models/{model}/aliases/{alias}", headers,
                                     {"version": 1 + (moves + 1) % 2})
                status, _, body = await conn.request(raw)
                if status != 200:
                    raise SystemExit(f"moving the alias failed: {status} {body[:200]!r}")
                moves += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*[user(i) for i in range(concurrency)], *([mover()] if move_alias else []))
    took = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    done = len(latencies) - failed
    return {"kind": kind, "concurrency": concurrency, "requests": len(latencies), "failed": failed,
            "rps": done / took, "vps": done * KINDS[kind] / took, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "moves": moves, "served_by": served_by}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--kind", choices=list(KINDS), default="json x1")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model", default="bench")
    ap.add_argument("--alias")
    ap.add_argument("--move-alias", action="store_true", help="move --alias between versions 1 and 2 every second")
    ap.add_argument("--key", help="an API key, if the server requires one")
    ap.add_argument("--cpus", help="pin this process to these CPUs, e.g. 1 or 2,3")
    args = ap.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    headers = {"authorization": f"Bearer {args.key}"} if args.key else {}
    result = asyncio.run(load(args.url, headers, args.kind, args.concurrency, args.seconds, args.model,
                              args.alias, args.move_alias))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))


if __name__ == "__main__":
    main()
