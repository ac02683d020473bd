"""Dependencies shared by the routes: settings, a DB session, storage, the enqueuer, the model
cache. The caller's resources (`DatasetDep`, `JobDep`) are in app/api/owners.py."""
from __future__ import annotations

from typing import Annotated, Any, Callable, Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app import queue
from app.db import get_sessionmaker
from app.safe_input import check_text
from app.services.inference import ModelCache
from app.settings import Settings
from app.storage import Storage
from app.telemetry import Telemetry


async def storable_params(request: Request) -> None:
    """Every path and query parameter is text a database can compare with (no NUL): else 400 naming it.
    Runs for every route, before any lookup."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str):
            check_text(value, name)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = get_sessionmaker(settings.database)()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_storage(request: Request) -> Storage:
    return request.app.state.storage


StorageDep = Annotated[Storage, Depends(get_storage)]


async def get_enqueue(settings: SettingsDep) -> Callable[..., None]:
    """Sends by task name; tests replace this dependency with a recorder."""
    def enqueue(task: str, *args: Any, device: str = "cpu") -> None:
        queue.enqueue(settings, task, *args, device=device)
    return enqueue


EnqueueDep = Annotated[Callable[..., None], Depends(get_enqueue)]


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]


async def get_telemetry(request: Request) -> Telemetry:
    return request.app.state.telemetry


TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
