"""Every client operation that is more than one request, written once as a generator of `Call` and
`Sleep` steps (see _protocol): uploads with progress, waiting for a job, chunked transforms."""
from __future__ import annotations

import base64
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from cube_client._protocol import Call, Operation, Record, Sleep, clean_params, create_call
from cube_client.errors import WaitTimeout

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# JSON around a base64 chunk (model name, fields) and the base64 expansion; the chunk is sized so
# that the whole body stays under the server's max_request_bytes.
ENVELOPE_BYTES = 4096
BASE64_RATIO = 4 / 3


@dataclass
class ClientState:
    """What a client learns once and keeps: the server's limits from /info."""
    limits: dict[str, Any] | None = None


def info(state: ClientState) -> Operation:
    got = yield Call("GET", "/info")
    state.limits = dict(got.get("limits") or {})
    return got


def limits(state: ClientState) -> Operation:
    if state.limits is None:
        yield from info(state)
    return state.limits


# ---- datasets

EMBEDDING_SUFFIXES = (".npz", ".parquet")


def guess_kind(path: Path) -> str:
    """NPZ and Parquet hold vectors; CSV holds text; a JSONL file holds vectors when its first
    record's `input` is a list of numbers (the service's own rule for the two JSONL kinds)."""
    suffix = path.suffix.lower()
    if suffix in EMBEDDING_SUFFIXES:
        return "embedding_pairs"
    if suffix in (".jsonl", ".ndjson"):
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    try:
                        first = json.loads(line)
                    except ValueError:
                        break
                    return "embedding_pairs" if isinstance(first, dict) and isinstance(first.get("input"), list) \
                        else "text_pairs"
    return "text_pairs"


class ProgressReader:
    """A file that reports how many bytes have been read from it: the upload's progress."""

    def __init__(self, f: BinaryIO, total: int, on_progress: Callable[[int, int], None] | None):
        self._f, self.total, self._on_progress, self.sent = f, total, on_progress, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._f.read(size)
        self.sent += len(chunk)
        if self._on_progress is not None and chunk:
            self._on_progress(self.sent, self.total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._f.seek(offset, whence)
        self.sent = position
        return position

    def tell(self) -> int:
        return self._f.tell()

    def fileno(self) -> int:
        return self._f.fileno()


def upload(path: str | os.PathLike, *, kind: str | None, name: str | None, teacher: str | None,
           metadata: dict[str, Any] | None, on_progress: Callable[[int, int], None] | None,
           idempotency_key: str | None, target_teacher: str | None = None) -> Operation:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fields = {"kind": kind or guess_kind(path), "name": name, "teacher": teacher, "target_teacher": target_teacher,
              "metadata": json.dumps(metadata) if metadata is not None else None}
    total = path.stat().st_size

    @contextmanager
    def multipart() -> Iterator[dict[str, Any]]:
        with open(path, "rb") as f:  # reopened for each attempt, from the first byte
            yield {"files": {"file": (path.name, ProgressReader(f, total, on_progress), "application/octet-stream")},
                   "data": {k: v for k, v in fields.items() if v is not None}}

    call = create_call("/v1/datasets", idempotency_key=idempotency_key)
    call.body = multipart
    return (yield call)


# ---- jobs and sweeps

def wait(path: str, what: str, *, on_progress: Callable[[Record], None] | None, timeout: float | None,
         poll_interval: float, watch: tuple[str, ...] = ("status", "progress", "metrics")) -> Operation:
    """Poll the resource at `path` (a job, a sweep) until it succeeds, fails or is cancelled;
    `on_progress(resource)` whenever one of its `watch` fields changes. Returns its final state
    (check `status`)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        current = yield Call("GET", path)
        state = json.dumps([current.get(key) for key in watch], sort_keys=True)
        if on_progress is not None and state != seen:
            on_progress(current)
        seen = state
        if current.get("status") in TERMINAL_STATUSES:
            return current
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"{what} is still {current.get('status')} after {timeout}s", job=current)
            yield Sleep(min(poll_interval, left))
        else:
            yield Sleep(poll_interval)


# ---- transform

def transform(state: ClientState, model: str, inputs: Any, *, version: int | None, alias: str | None,
              normalize: bool, output: str | None = None, input_kind: str | None = None,
              target_space: str | None = None) -> Operation:
    lim = yield from limits(state)
    base = {"model": model, "encoding_format": "base64", "normalize": normalize,
            **clean_params({"version": version, "alias": alias, "output": output, "input_kind": input_kind,
                            "target_space": target_space})}
    max_rows = int(lim.get("max_transform_vectors") or 4096)
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        bodies = ({**base, "input": list(inputs[i:i + max_rows])} for i in range(0, len(inputs), max_rows))
    else:
        x = as_matrix(inputs)
        rows = rows_per_request(x.shape[1], max_rows, int(lim.get("max_request_bytes") or 0))
        bodies = ({**base, "input": encode_rows(x[i:i + rows]), "dim": x.shape[1]} for i in range(0, len(x), rows))
    parts = []
    for body in bodies:
        answer = yield Call("POST", "/v1/transform", json=body, raw=True)  # a pure function: safe to resend
        parts.append(decode_rows(answer))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def as_matrix(inputs: Any) -> np.ndarray:
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim == 1 and x.size:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"transform takes a non-empty [N, D] array of vectors or a list of str, got shape {x.shape}")
    return x


def rows_per_request(dim: int, max_rows: int, max_request_bytes: int) -> int:
    if max_request_bytes <= 0:
        return max_rows
    by_bytes = int((max_request_bytes - ENVELOPE_BYTES) / (dim * 4 * BASE64_RATIO))
    return max(1, min(max_rows, by_bytes))


def encode_rows(x: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(x, dtype="<f4").tobytes()).decode("ascii")


def decode_rows(answer: dict[str, Any]) -> np.ndarray:
    data = sorted(answer["data"], key=lambda e: e["index"])
    raw = b"".join(base64.b64decode(e["embedding"]) for e in data)
    return np.frombuffer(raw, dtype="<f4").reshape(len(data), answer["dim"]).astype(np.float32)
