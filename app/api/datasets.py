"""/v1/datasets: upload (validated before anything is stored), list, get, delete."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, UploadFile
from fastapi.responses import JSONResponse

from app.api.auth import TRAIN
from app.api.deps import EnqueueDep, SessionDep, SettingsDep, StorageDep
from app.api.owners import AccessDep, DatasetDep
from app.openapi import errors
from app.schemas import DatasetOut, ListOf
from app.services import datasets, idempotency

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], dependencies=[TRAIN])


@router.post("", status_code=201, response_model=DatasetOut, responses=errors(409, 422))
def upload_dataset(session: SessionDep, settings: SettingsDep, storage: StorageDep, enqueue: EnqueueDep, access: AccessDep,
                   file: Annotated[UploadFile, File()], kind: Annotated[str, Form()],
                   name: Annotated[str | None, Form()] = None, teacher: Annotated[str | None, Form()] = None,
                   metadata: Annotated[str | None, Form()] = None,
                   target_teacher: Annotated[str | None, Form()] = None,
                   idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Upload a pair file (multipart): embedding pairs are ready at once, text pairs after encoding."""
    def create():
        dataset = datasets.create_dataset(session, settings, storage, enqueue, file.file, filename=file.filename or "upload",
                                          kind=kind, name=name, teacher=teacher, metadata=metadata, access=access,
                                          target_teacher=target_teacher)
        return 201, DatasetOut.of(dataset).model_dump(mode="json")

    body_hash = None
    if idempotency_key is not None:
        body_hash = idempotency.fingerprint(datasets.file_sha256(file.file), kind, name or "", teacher or "", metadata or "",
                                            file.filename or "", *([target_teacher] if target_teacher else []))
    status, out, replayed = idempotency.run_once(session, idempotency_key, "POST /v1/datasets", body_hash or "", create,
                                                 api_key_id=access.key_id, ttl_seconds=settings.idempotency_ttl_seconds)
    return JSONResponse(out, status_code=status, headers={"idempotent-replayed": "true"} if replayed else None)


@router.get("", response_model=ListOf[DatasetOut])
def list_datasets(session: SessionDep, access: AccessDep, after: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ListOf[DatasetOut]:
    """List the caller's datasets (an admin key: everyone's), newest first."""
    rows, more = datasets.list_datasets(session, after, limit, access)
    return ListOf[DatasetOut](data=[DatasetOut.of(d) for d in rows], has_more=more)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset: DatasetDep) -> DatasetOut:
    """One dataset."""
    return DatasetOut.of(dataset)


@router.delete("/{dataset_id}", responses=errors(409))
def delete_dataset(dataset: DatasetDep, session: SessionDep, storage: StorageDep) -> dict:
    """Delete a dataset and its files (409 while a job uses it)."""
    datasets.delete_dataset(session, storage, dataset)
    return {"id": dataset.id, "object": "dataset", "deleted": True}
