"""What the sync and async clients share: a request is described once (`Call`), every operation is a
generator that yields `Call`s and `Sleep`s and returns its result, and the retry policy and
response parsing are plain functions. `Client` and `AsyncClient` only differ in how they perform
the yielded steps (blocking httpx and time.sleep, or awaited httpx and asyncio.sleep).

    def get_job(job_id):
        job = yield Call("GET", f"/v1/training-jobs/{job_id}")
        return job
"""
from __future__ import annotations

import email.utils
import json
import random
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Generator, Iterator

from cube_client.errors import ConnectionFailed, CubeError, error_for

RETRY_STATUSES = frozenset({429, 503})


class Record(dict):
    """A JSON object from the service, readable as `job["status"]` or `job.status`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def to_records(value: Any) -> Any:
    if isinstance(value, dict):
        return Record({k: to_records(v) for k, v in value.items()})
    if isinstance(value, list):
        return [to_records(v) for v in value]
    return value


@dataclass
class Call:
    """One HTTP request. `idempotent`: safe to send again after a connection error (reads, PUT, DELETE,
    and creates that carry an Idempotency-Key). `body`: a context manager giving httpx keyword
    arguments, entered afresh for each attempt (an upload reopens its file)."""
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    body: Callable[[], ContextManager[dict[str, Any]]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    raw: bool = False  # return the decoded JSON as is (no Record wrapping): large transform answers

    def request_kwargs(self) -> ContextManager[dict[str, Any]]:
        if self.body is not None:
            return self.body()
        return _json_kwargs(self.json)


@contextmanager
def _json_kwargs(payload: Any) -> Iterator[dict[str, Any]]:
    yield {} if payload is None else {"content": json.dumps(payload).encode(),
                                      "headers": {"content-type": "application/json"}}


@dataclass
class Sleep:
    seconds: float


Operation = Generator["Call | Sleep", Any, Any]


def create_call(path: str, payload: Any = None, idempotency_key: str | None = None, **kw: Any) -> Call:
    """A POST that creates something: it carries an Idempotency-Key (generated unless given), so the
    client can resend it after a lost connection without creating twice."""
    key = idempotency_key or f"cube-client-{uuid.uuid4()}"
    return Call("POST", path, json=payload, headers={"Idempotency-Key": key}, idempotent=True, **kw)


def one(call: Call) -> Operation:
    return (yield call)


def clean_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter on 429/503 and (idempotent calls only) connection errors; a
    Retry-After from the service wins over the computed delay, capped by `max_delay`."""
    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def backoff(self, attempt: int) -> float:
        # Jitter spreads clients refused together; it needs no cryptographic randomness.
        return min(self.max_delay, self.base_delay * 2 ** attempt) * (0.5 + random.random() / 2)  # nosec B311

    def delay_for_status(self, status: int, headers: Any, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: do not retry."""
        if status not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        after = retry_after_seconds(headers)
        return min(self.max_delay, after) if after is not None else self.backoff(attempt)

    def delay_for_connection_error(self, call: Call, attempt: int) -> float | None:
        if not call.idempotent or attempt >= self.max_retries:
            return None
        return self.backoff(attempt)


def retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def decode(call: Call, status: int, headers: Any, content: bytes) -> Any:
    """The answer's JSON (as Records unless `call.raw`), or the typed error for a refusal."""
    try:
        payload = json.loads(content) if content else None
    except ValueError:
        payload = content.decode(errors="replace")
    if status >= 400:
        raise error_for(status, payload, headers, retry_after_seconds(headers))
    if isinstance(payload, str):
        raise CubeError(f"expected JSON from {call.method} {call.path}, got {payload[:200]!r}", status=status)
    return payload if call.raw else to_records(payload)


def connection_error(call: Call, exc: Exception) -> ConnectionFailed:
    return ConnectionFailed(f"{call.method} {call.path} failed: {type(exc).__name__}: {exc}", code="connection_error")
