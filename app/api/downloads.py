"""/v1/models/{name}/versions/{version}/files: download a version's artifact, report, plot and ONNX export."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from app.api.auth import TRAIN
from app.api.deps import SessionDep, StorageDep
from app.api.owners import AccessDep
from app.api.stored_files import stored_file_response
from app.openapi import errors
from app.schemas import MAX_INT
from app.services import downloads, registry

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[TRAIN])
Version = Annotated[int, Path(ge=1, le=MAX_INT)]


class VersionFileOut(BaseModel):
    object: Literal["model.version.file"] = "model.version.file"
    name: str
    content_type: str
    description: str
    bytes: int | None        # None until stored (model.onnx before its first download)
    available: bool


class VersionFilesOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[VersionFileOut]


@router.get("/{name}/versions/{version}/files", response_model=VersionFilesOut)
def list_files(name: str, version: Version, session: SessionDep, storage: StorageDep, access: AccessDep) -> VersionFilesOut:
    """The version's downloadable files and their sizes."""
    row = registry.get_version(session, name, version, access)
    return VersionFilesOut(data=[VersionFileOut(**f) for f in downloads.listing(storage, row)])


@router.get("/{name}/versions/{version}/files/{file}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}, "application/json": {}, "text/markdown": {},
                                         "image/png": {}},
                             "description": "the file, streamed, as an attachment"}, **errors(422)})
def download_file(name: str, version: Version, file: str, session: SessionDep, storage: StorageDep,
                  access: AccessDep) -> Response:
    """One file: model.safetensors, model.json, model.onnx (exported on the first request, then kept),
    report.json, report.md or training.png."""
    row = registry.get_version(session, name, version, access)
    session.close()  # an ONNX build or a long download need no database connection
    key, kind = downloads.download_key(storage, row, file)
    return stored_file_response(storage, key, kind.media_type, downloads.download_name(row, file),
                                missing=f"model {name} v{version} has no {file}", param="file")
