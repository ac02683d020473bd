"""Dependencies shared by the routes: settings, a DB session, storage, the enqueuer, the model
cache, and existence checks (`valid_job`, ...) so handlers never repeat a 404."""
from __future__ import annotations

from typing import Annotated, Any, Callable, Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app import queue
from app.db import get_sessionmaker
from app.models import Dataset, TrainingJob
from app.safe_input import check_text
from app.services import datasets, jobs
from app.services.inference import ModelCache
from app.settings import Settings
from app.storage import LocalStorage
from app.telemetry import Telemetry


def storable_params(request: Request) -> None:
    """Every path and query parameter is text a database can compare with (no NUL): else 400 naming it.
    Runs for every route, before any lookup."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str):
            check_text(value, name)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = get_sessionmaker(settings.database)()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def get_storage(request: Request) -> LocalStorage:
    return request.app.state.storage


StorageDep = Annotated[LocalStorage, Depends(get_storage)]


def get_enqueue(settings: SettingsDep) -> Callable[..., None]:
    """Sends by task name; tests replace this dependency with a recorder."""
    def enqueue(task: str, *args: Any, countdown: float | None = None) -> None:
        queue.enqueue(settings, task, *args, countdown=countdown)
    return enqueue


EnqueueDep = Annotated[Callable[..., None], Depends(get_enqueue)]


def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]


def valid_dataset(dataset_id: str, session: SessionDep) -> Dataset:
    return datasets.get_dataset(session, dataset_id)


def valid_job(job_id: str, session: SessionDep) -> TrainingJob:
    return jobs.get_job(session, job_id)


DatasetDep = Annotated[Dataset, Depends(valid_dataset)]
JobDep = Annotated[TrainingJob, Depends(valid_job)]


def get_telemetry(request: Request) -> Telemetry:
    return request.app.state.telemetry


TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
