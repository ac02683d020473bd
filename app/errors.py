"""Domain exceptions and their one mapping to HTTP.

    ServiceError
     +-- InvalidRequest       400  malformed request (bad parameter)
     +-- Unauthorized         401  no API key, or an unknown or revoked one (WWW-Authenticate: Bearer)
     +-- Forbidden            403  the key's scope does not allow this
     +-- NotFound             404  unknown id or name
     +-- Conflict             409  illegal state change (e.g. cancel a succeeded job)
     +-- PayloadTooLarge      413  upload or request over a limit
     +-- InvalidContent       422  content is invalid (dataset file errors carry line and field)
     +-- TooManyRequests      429  overloaded; the response has Retry-After
     +-- NotReady             503  a dependency (database, broker, storage, teacher) is unavailable

Services raise these; `app.main` renders every one as {"error": {type, code, message, param}}.
"""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.param = param
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def headers(self) -> dict[str, str] | None:
        return None

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param, **self.extra}}


class InvalidRequest(ServiceError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class Unauthorized(ServiceError):
    status, type, code = 401, "authentication_error", "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    status, type, code = 403, "permission_error", "insufficient_scope"


class NotFound(ServiceError):
    status, type, code = 404, "invalid_request_error", "not_found"


class Conflict(ServiceError):
    status, type, code = 409, "invalid_request_error", "conflict"


class PayloadTooLarge(ServiceError):
    status, type, code = 413, "invalid_request_error", "too_large"


class InvalidContent(ServiceError):
    status, type, code = 422, "invalid_request_error", "invalid_content"


class TooManyRequests(ServiceError):
    status, type, code = 429, "server_error", "overloaded"

    def __init__(self, message: str, *, retry_after: float, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class NotReady(ServiceError):
    status, type, code = 503, "server_error", "not_ready"


def error_body(status: int, message: str, *, code: str, type: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"type": type, "code": code, "message": message, "param": param}}
