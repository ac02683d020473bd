"""The FastAPI application factory: routers, the one error shape, and startup checks."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import queue
from app.api import datasets, jobs, models, ops, transform
from app.errors import ServiceError, error_body
from app.services.inference import ModelCache
from app.settings import Settings, get_settings
from app.storage import get_storage

log = logging.getLogger("cube.api")
ROUTERS = [ops.router, datasets.router, jobs.router, models.router, transform.router]
UPLOAD_PATHS = ("/v1/datasets",)
MULTIPART_OVERHEAD = 64 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.auth == "none":
            log.warning("AUTHENTICATION IS OFF: anyone who can reach this port can upload, train and transform. "
                        "Bind to 127.0.0.1 only (API keys are not implemented yet).")
        # Build the Celery producer now (imports, connection pool), not on the first job's POST.
        await run_in_threadpool(queue.producer, settings)
        yield

    app = FastAPI(title="cube service", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.storage = get_storage(settings)
    app.state.storage.root.mkdir(parents=True, exist_ok=True)
    app.state.model_cache = ModelCache(settings)
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)

    @app.middleware("http")
    async def refuse_oversized_uploads(request: Request, call_next):
        # Refuse by Content-Length before the multipart body is read; the copy loop enforces the exact limit.
        length = request.headers.get("content-length")
        if request.method == "POST" and request.url.path in UPLOAD_PATHS and length and length.isdigit() \
                and int(length) > settings.max_upload_bytes + MULTIPART_OVERHEAD:
            return JSONResponse(error_body(413, f"upload is larger than the limit of {settings.max_upload_bytes} bytes",
                                           code="file_too_large", param="file"), status_code=413)
        return await call_next(request)

    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error, whatever raised it, leaves as {"error": {type, code, message, param}}."""

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return JSONResponse(error_body(400, message, code="invalid_request", param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(exc.status_code, str(exc.detail), code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body(500, "internal error", code="internal_error", type="server_error"), status_code=500)
