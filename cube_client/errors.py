"""Typed errors: one class per HTTP status family, each carrying what the service said.

    CubeError                      base; .status, .code, .param, .type, .message, .request_id, .body
     +-- ConnectionFailed           no answer (refused, reset, timed out); .status is None
     +-- ValidationError            400 malformed request, 422 invalid content (dataset errors: .line, .field)
     +-- Unauthorized               401 missing, unknown or revoked API key
     +-- PermissionDenied           403 the key's scope does not allow this
     +-- NotFound                   404 unknown id or name
     +-- Conflict                   409 illegal state change (e.g. cancel a succeeded job)
     +-- PayloadTooLarge            413 over an upload or request limit
     +-- RateLimited                429 overloaded; .retry_after in seconds (after the client's own retries)
     +-- ServiceUnavailable         503 a dependency is down (after the client's own retries)
     +-- ServerError                any other 5xx
     +-- WaitTimeout                `jobs.wait` or `sweeps.wait` gave up first; .job is the last state
"""
from __future__ import annotations

from typing import Any

REQUEST_ID_HEADER = "x-request-id"  # the service's (app.telemetry.REQUEST_ID_HEADER)


class CubeError(Exception):
    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, param: str | None = None,
                 type: str | None = None, request_id: str | None = None, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code
        self.param = param
        self.type = type
        self.request_id = request_id
        self.body = body or {}

    def __str__(self) -> str:
        where = f" (param {self.param})" if self.param else ""
        head = f"{self.status} {self.code}: " if self.status and self.code else f"{self.code}: " if self.code else ""
        request = f" [request {self.request_id}]" if self.request_id else ""
        return f"{head}{self.message}{where}{request}"


class ConnectionFailed(CubeError):
    pass


class ValidationError(CubeError):
    @property
    def line(self) -> int | None:
        return self.body.get("line")

    @property
    def field(self) -> str | None:
        return self.body.get("field")


class Unauthorized(CubeError):
    status = 401


class PermissionDenied(CubeError):
    status = 403


class NotFound(CubeError):
    status = 404


class Conflict(CubeError):
    status = 409


class PayloadTooLarge(CubeError):
    status = 413


class RateLimited(CubeError):
    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServiceUnavailable(CubeError):
    status = 503


class ServerError(CubeError):
    pass


class WaitTimeout(CubeError):
    def __init__(self, message: str, *, job: dict[str, Any]):
        super().__init__(message, code="wait_timeout")
        self.job = job


BY_STATUS: dict[int, type[CubeError]] = {400: ValidationError, 401: Unauthorized, 403: PermissionDenied, 404: NotFound,
                                          409: Conflict, 413: PayloadTooLarge, 422: ValidationError, 429: RateLimited,
                                          503: ServiceUnavailable}


def error_for(status: int, payload: Any, headers: Any, retry_after: float | None) -> CubeError:
    """The typed error for a refused request: `payload` is the decoded body (the service's
    {"error": {...}} shape, or anything else a proxy in front of it may answer)."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        err = {"message": str(payload)[:500] or f"HTTP {status}"}
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else CubeError)
    kw: dict[str, Any] = dict(status=status, code=err.get("code"), param=err.get("param"), type=err.get("type"),
                              request_id=headers.get(REQUEST_ID_HEADER), body=err)
    if cls is RateLimited:
        kw["retry_after"] = retry_after
    return cls(str(err.get("message") or f"HTTP {status}"), **kw)
