"""Operations: /livez (process up), /readyz (database, broker, storage reachable) and /metrics
(Prometheus) are open, for probes and scrapers; /info needs a key of any scope."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text

from app import queue
from app.api.auth import ANY_KEY
from app.api.deps import ModelCacheDep, SessionDep, SettingsDep, StorageDep, TelemetryDep
from app.db import get_engine
from app.jobs import workers
from app.services import monitoring
from cube.teachers import catalogue

router = APIRouter(tags=["operations"])
info_router = APIRouter(tags=["operations"], dependencies=[ANY_KEY])


@router.get("/livez")
def livez() -> dict:
    """The process is up."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]  # database, broker, storage: "ok" or "error: ..."


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Something is down; `checks` says what"}})
def readyz(settings: SettingsDep, storage: StorageDep) -> JSONResponse:
    """Database, broker and storage are reachable (503 otherwise)."""
    checks = {}
    try:
        with get_engine(settings.database).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, never raise: this endpoint exists to say what is down
        checks["database"] = f"error: {type(exc).__name__}"
    checks["broker"] = "ok" if queue.broker_reachable(settings) else "error: unreachable"
    checks["storage"] = "ok" if storage.writable() else "error: not writable"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics(session: SessionDep, telemetry: TelemetryDep, cache: ModelCacheDep) -> Response:
    """Prometheus metrics: requests, latencies, transform batches and queue, jobs by status."""
    monitoring.refresh(session, telemetry, cache)
    return Response(telemetry.render(), media_type=telemetry.content_type)


@info_router.get("/info")
def info(settings: SettingsDep, session: SessionDep, cache: ModelCacheDep) -> dict:
    """Version, limits, the device transforms run on, loaded models, the worker kinds seen (live ones
    reported within the lease), and the teachers text can be encoded with (the built-in ones plus
    CUBE_TEACHERS_FILE's; `installed` says whether this process has their files)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("cube-service")
    except PackageNotFoundError:
        v = "unknown"
    return {"version": v, "auth": "api_key" if settings.require_auth else "off", "embedded": settings.embedded,
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_request_bytes": settings.max_request_bytes,
                       "max_dataset_bytes": settings.max_dataset_bytes,
                       "max_transform_vectors": settings.max_transform_vectors,
                       "transform_max_queue_rows": settings.transform_max_queue_rows,
                       "transform_max_batch_rows": settings.transform_max_batch_rows, "min_pairs": settings.min_pairs},
            "transform_device": settings.transform_device, "loaded_models": cache.loaded(),
            "workers": workers.kinds_seen(session, settings),
            "teachers": catalogue()}
