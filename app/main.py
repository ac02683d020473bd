"""The FastAPI application factory: routers, middleware, the one error shape, and startup checks.

Middleware, outermost first: telemetry (request id, metrics, one JSON log line), then body limits.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import openapi, queue
from app.api import (datasets, downloads, embeddings, evaluations, jobs, models, ops, sweeps, transform, transform_jobs,
                     webhooks)
from app.api.deps import storable_params
from app.body_limit import BodyLimitMiddleware, limit_message
from app.errors import ServiceError, error_body
from app.hot_route import HotRoute
from app.services.inference import ModelCache
from app.services.keys import KeyCache
from app.settings import Settings, get_settings
from app.storage import StorageUnavailable, get_storage
from app.telemetry import REQUEST_ID_HEADER, Telemetry, TelemetryMiddleware
from app.ui import router as ui
from cube.teachers import configured_registry

log = logging.getLogger("cube.api")
ROUTERS = [ops.router, ops.info_router, datasets.router, jobs.router, models.router, evaluations.router,
           downloads.router, transform.router, embeddings.router, webhooks.router, transform_jobs.router,
           sweeps.router]
UPLOAD_PATHS = ("/v1/datasets", "/v1/transform-jobs")
MULTIPART_OVERHEAD = 64 * 1024
DATABASE_RETRY_AFTER_SECONDS = 5


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not settings.require_auth:
            log.warning("AUTHENTICATION IS OFF: anyone who can reach this port can upload, train and transform. "
                        "Bind to 127.0.0.1 only, or set CUBE_REQUIRE_AUTH=true and create keys with `cube keys create`.")
        for path in await run_in_threadpool(app.state.storage.remove_abandoned_temp_files):
            log.warning("removed %s, left half-written by an API process that died", path.name)
        configured_registry()  # a broken CUBE_TEACHERS_FILE stops the start, naming the file and the key
        configure_torch(settings)
        # Build the Celery producer now (imports, connection pool), not on the first job's POST.
        await run_in_threadpool(queue.producer, settings)
        yield

    app = FastAPI(title="cube service", version="1", lifespan=lifespan, dependencies=[Depends(storable_params)])
    app.state.settings = settings
    app.state.storage = get_storage(settings)
    app.state.storage.temp_dir()  # creates the local directories (an error here is a start error)
    app.state.telemetry = Telemetry()
    app.state.model_cache = ModelCache(settings, app.state.telemetry)
    app.state.key_cache = KeyCache(settings.transform_resolve_cache_seconds)
    for router in ROUTERS:
        app.include_router(router)
    ui.install(app)  # the dashboard at /ui (docs/dashboard.md); not in the OpenAPI document
    install_error_handlers(app)
    openapi.install(app)

    upload_refusal = limit_message(settings.max_upload_bytes, "upload", code="file_too_large", param="file")
    body_refusal = limit_message(settings.max_request_bytes)

    def body_limit(path: str) -> tuple[int, bytes]:
        # Uploads stream to disk and the copy loop enforces the exact file limit; this bounds the envelope.
        if path in UPLOAD_PATHS:
            return settings.max_upload_bytes + MULTIPART_OVERHEAD, upload_refusal
        return settings.max_request_bytes, body_refusal

    app.add_middleware(HotRoute, route=transform.TRANSFORM_ROUTE, exception_handlers=app.exception_handlers)
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(TelemetryMiddleware, telemetry=app.state.telemetry)  # added last: outermost
    return app


def configure_torch(settings: Settings) -> None:
    """The API's torch, for the transform batchers' forward passes: CUBE_TRANSFORM_DEVICE=cuda needs a
    GPU (stop the start rather than fail every transform), and CUBE_TORCH_THREADS caps its threads
    (several API processes on one machine should split the cores: docs/sizing.md)."""
    if settings.transform_device != "cuda" and not settings.torch_threads:
        return  # nothing to set: torch is imported with the first model
    import torch

    if settings.transform_device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"CUBE_TRANSFORM_DEVICE=cuda, but torch {torch.__version__} sees no CUDA device")
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


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
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(exc.status_code, str(exc.detail), code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Down, restarting, refusing connections, pool exhausted, or (SQLite) locked: all pass by
        # themselves, so the client is told to retry instead of seeing an internal error.
        log.warning("database unavailable (request %s): %s", getattr(request.state, "request_id", None),
                    str(exc).splitlines()[0])
        body = error_body(503, "the database is unavailable; try again shortly", code="database_unavailable",
                          type="server_error")
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})

    for unavailable in (OperationalError, InterfaceError, DisconnectionError, PoolTimeout):
        app.add_exception_handler(unavailable, database_unavailable)

    @app.exception_handler(StorageUnavailable)
    async def storage_unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.warning("storage unavailable (request %s): %s", getattr(request.state, "request_id", None), exc)
        body = error_body(503, "the file storage is unavailable; try again shortly", code="storage_unavailable",
                          type="server_error")
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # This handler runs outside the telemetry middleware, so it sets the request id itself.
        request_id = getattr(request.state, "request_id", None)
        log.exception("unhandled error (request %s)", request_id)
        return JSONResponse(error_body(500, "internal error", code="internal_error", type="server_error"), status_code=500,
                            headers={REQUEST_ID_HEADER: request_id} if request_id else None)
