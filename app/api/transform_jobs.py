"""/v1/transform-jobs: bulk transforms of a stored dataset or an uploaded file, run on the workers.

Create with JSON (`dataset_id`) or multipart/form-data (`file`, for vectors or texts not stored as a
dataset); then poll, read events, cancel, and download the result (.npy float32, streamed)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.api.auth import TRANSFORM
from app.api.deps import EnqueueDep, SessionDep, SettingsDep, StorageDep
from app.api.owners import AccessDep
from app.api.stored_files import stored_file_response
from app.openapi import errors
from app.errors import InvalidRequest
from app.safe_input import check_text
from app.schemas import MAX_INT, ListOf, TransformJobCreate, TransformJobEventOut, TransformJobOut
from app.services import transform_jobs

router = APIRouter(prefix="/v1/transform-jobs", tags=["transform jobs"], dependencies=[TRANSFORM])
Limit = Annotated[int, Query(ge=1, le=100)]


class TransformJobUpload(BaseModel):
    """The multipart form's fields besides `file` (metadata as a JSON object in a string)."""
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=200)
    version: int | None = Field(None, ge=1, le=MAX_INT)
    alias: str | None = Field(None, min_length=1, max_length=100)
    normalize: bool = False
    metadata: str | None = None

    _texts = field_validator("model", "alias", "metadata")(lambda v, info: v if v is None else check_text(v, info.field_name))


def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


UPLOAD_SCHEMA = _schema(TransformJobUpload)
UPLOAD_SCHEMA["properties"]["file"] = {"type": "string", "format": "binary",
                                       "description": "NPY/NPZ (`input` array)/Parquet (`input` column) vectors, or JSONL vectors or texts"}
UPLOAD_SCHEMA["required"] = [*UPLOAD_SCHEMA.get("required", []), "file"]
REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _schema(TransformJobCreate)},
    "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}}


def _invalid(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])


@router.post("", status_code=202, response_model=TransformJobOut, openapi_extra=REQUEST_BODY,
             responses=errors(404, 409, 413, 422))
async def create_job(request: Request, session: SessionDep, settings: SettingsDep, storage: StorageDep,
                     enqueue: EnqueueDep, access: AccessDep) -> JSONResponse:
    """Queue a bulk transform: JSON with `dataset_id`, or multipart with a `file`; `model` with
    `version` or `alias` (resolved now and kept), `normalize`, `metadata`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    args: dict[str, Any]
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("the multipart form needs a `file` part (or send JSON with dataset_id)", param="file")
        fields = {k: v for k, v in form.multi_items() if k != "file"}
        try:
            parsed = TransformJobUpload.model_validate(fields)
        except ValidationError as exc:
            raise _invalid(exc) from None
        args = {**parsed.model_dump(), "upload": upload.file, "filename": upload.filename or "upload"}
    elif content_type in ("application/json", ""):
        try:
            parsed_json = TransformJobCreate.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            raise _invalid(exc) from None
        args = parsed_json.model_dump()
    else:
        raise InvalidRequest(f"send application/json (with dataset_id) or multipart/form-data (with a file), "
                             f"not {content_type}", param="content-type", code="unsupported_media_type")

    def create() -> dict:
        return TransformJobOut.of(transform_jobs.create_job(session, settings, storage, enqueue, access=access,
                                                            **args)).model_dump(mode="json")

    return JSONResponse(await run_in_threadpool(create), status_code=202)


@router.get("", response_model=ListOf[TransformJobOut])
def list_jobs(session: SessionDep, access: AccessDep, after: str | None = None, limit: Limit = 20,
              status: str | None = None) -> ListOf[TransformJobOut]:
    """The caller's transform jobs (an admin key: everyone's), newest first, optionally by status."""
    rows, more = transform_jobs.list_jobs(session, after, limit, status, access)
    return ListOf[TransformJobOut](data=[TransformJobOut.of(j) for j in rows], has_more=more)


@router.get("/{job_id}", response_model=TransformJobOut)
def get_job(job_id: str, session: SessionDep, access: AccessDep) -> TransformJobOut:
    """One transform job: status, rows done, ETA, and its result's shape once it succeeded."""
    return TransformJobOut.of(transform_jobs.get_job(session, job_id, access))


@router.post("/{job_id}/cancel", response_model=TransformJobOut, responses=errors(409))
def cancel_job(job_id: str, session: SessionDep, access: AccessDep) -> TransformJobOut:
    """Cancel (idempotent): at once if not started, else after the current batch; no result is kept."""
    return TransformJobOut.of(transform_jobs.cancel_job(session, transform_jobs.get_job(session, job_id, access)))


@router.get("/{job_id}/events", response_model=ListOf[TransformJobEventOut])
def list_events(job_id: str, session: SessionDep, access: AccessDep, after: str | None = None,
                limit: Limit = 100) -> ListOf[TransformJobEventOut]:
    """The job's events, oldest first."""
    rows, more = transform_jobs.list_events(session, transform_jobs.get_job(session, job_id, access), after, limit)
    return ListOf[TransformJobEventOut](data=[TransformJobEventOut.of(e) for e in rows], has_more=more)


@router.get("/{job_id}/result", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the result as .npy (float32 [rows, dim_out], row i from input row i), streamed"},
                        **errors(409)})
def download_result(job_id: str, session: SessionDep, storage: StorageDep, access: AccessDep) -> Response:
    """The result of a succeeded job (409 before)."""
    job = transform_jobs.get_job(session, job_id, access)
    key = transform_jobs.result_key(job)
    session.close()
    return stored_file_response(storage, key, "application/octet-stream", f"{job.id}-result.npy",
                                missing=f"the result of transform job {job.id} is no longer stored", param="job_id")
