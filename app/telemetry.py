"""Observability: Prometheus metrics, request ids and one JSON log line per request.

Metrics live in a registry per app instance (not prometheus_client's global one), so tests can build
many apps in one process. Gauges that describe SQL state (jobs by status, worker heartbeats) are
filled at scrape time by the caller of `render`, not kept in memory.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REQUEST_ID_HEADER = "x-request-id"
log = logging.getLogger("cube.http")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Labels come from closed sets, whatever a client sends: any method name is a valid HTTP token, and
# each new label value would be a new time series kept for the life of the process.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"


class RequestIds:
    """Unique request ids, cheaply: a random per-process prefix and a counter. An id only has to be
    unique and findable in the logs, and a uuid4 per request costs a system call for entropy (about
    0.1 ms here, a tenth of a transform's budget)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class Telemetry:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("cube_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("cube_http_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("cube_transform_batch_rows", "Vectors per transform forward pass",
                                    ["model"], buckets=_ROWS_BUCKETS, registry=r)
        self.batch_seconds = Histogram("cube_transform_batch_duration_seconds", "Transform forward pass time",
                                       ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram("cube_transform_queue_duration_seconds", "Time a transform request waited for its batch",
                                       ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_rows = Gauge("cube_transform_queue_rows", "Vectors waiting for a forward pass", ["model"], registry=r)
        self.rejected = Counter("cube_transform_rejected_total", "Transform requests refused because the queue was full",
                                ["model"], registry=r)
        self.jobs = Gauge("cube_training_jobs", "Training jobs by status", ["status"], registry=r)
        self.worker_heartbeat_age = Gauge("cube_worker_heartbeat_age_seconds",
                                          "Seconds since each running job's worker last reported", ["job"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TelemetryMiddleware:
    """Pure ASGI middleware: request id in and out, latency and status per route template, a log line."""

    def __init__(self, app, telemetry: Telemetry):
        self.app = app
        self.telemetry = telemetry
        self.ids = RequestIds()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        # Accept a caller's id only if it is short and printable; otherwise make one.
        request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else self.ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            took = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE  # a template, never the raw path
            method = scope.get("method", "")
            label = method if method in METHODS else OTHER_METHOD
            self.telemetry.requests.labels(label, template, str(status)).inc()
            self.telemetry.latency.labels(label, template).observe(took)
            if log.isEnabledFor(logging.INFO):
                log.info(json.dumps({"request_id": request_id, "method": method, "path": scope.get("path"),
                                     "route": template, "status": status, "ms": round(took * 1000, 3)}))
