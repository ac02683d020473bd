"""/v1/training-jobs: create, list, get, cancel, events (listed or streamed), metrics, checkpoints."""
from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from app.api.auth import TRAIN
from app.api.deps import EnqueueDep, SessionDep, SettingsDep
from app.api.owners import AccessDep, JobDep
from app.errors import InvalidRequest
from app.openapi import errors
from app.schemas import CheckpointOut, EventOut, ListOf, MetricOut, TrainingJobCreate, TrainingJobOut
from app.ids import is_id
from app.services import idempotency, jobs
from app.services.event_stream import job_events

router = APIRouter(prefix="/v1/training-jobs", tags=["training jobs"], dependencies=[TRAIN])
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("", status_code=202, response_model=TrainingJobOut, responses=errors(404, 409, 422))
def create_job(body: TrainingJobCreate, session: SessionDep, settings: SettingsDep, enqueue: EnqueueDep, access: AccessDep,
               idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Queue a training job (it runs on a worker; poll it for status and progress)."""
    status, out, replayed = idempotency.run_once(
        session, idempotency_key, "POST /v1/training-jobs", idempotency.fingerprint(body.model_dump_json()),
        lambda: (202, TrainingJobOut.of(jobs.create_job(session, settings, enqueue, body, access)).model_dump(mode="json")),
        api_key_id=access.key_id, ttl_seconds=settings.idempotency_ttl_seconds)
    return JSONResponse(out, status_code=status, headers={"idempotent-replayed": "true"} if replayed else None)


LIST_FILTERS = ("after", "limit", "status", "model", "dataset_id")
METADATA_FILTER = re.compile(r"^metadata\[(.+)\]$")
# FastAPI cannot declare `metadata[key]=value` parameters; the schema says it as OpenAPI's deepObject.
METADATA_PARAMETER = {"parameters": [{
    "name": "metadata", "in": "query", "required": False, "style": "deepObject", "explode": True,
    "description": "metadata[key]=value: jobs whose metadata has that value at that key (numbers as their JSON text)",
    "schema": {"type": "object", "additionalProperties": {"type": "string"}}}]}


def metadata_filters(request: Request) -> dict[str, str]:
    """`metadata[key]=value` query parameters as {key: value}; any other unknown parameter is a 400
    (a misspelt filter would otherwise list every job)."""
    found = {}
    for name, value in request.query_params.multi_items():
        if name in LIST_FILTERS:
            continue
        match = METADATA_FILTER.match(name)
        if match is None:
            raise InvalidRequest(f"unknown query parameter {name!r}; the filters are status, model, dataset_id and "
                                 f"metadata[key]=value", param=name, code="unknown_filter")
        if match.group(1) in found and found[match.group(1)] != value:
            raise InvalidRequest(f"{name} is given twice with different values", param=name)
        found[match.group(1)] = value
    return found


@router.get("", response_model=ListOf[TrainingJobOut], openapi_extra=METADATA_PARAMETER)
def list_jobs(request: Request, session: SessionDep, access: AccessDep, after: str | None = None, limit: Limit = 20,
              status: str | None = None, model: str | None = None,
              dataset_id: str | None = None) -> ListOf[TrainingJobOut]:
    """List the caller's jobs (an admin key: everyone's), newest first, filtered by status, model,
    dataset and metadata values (all that are given must hold)."""
    rows, more = jobs.list_jobs(session, after, limit, status, access, model=model, dataset_id=dataset_id,
                                metadata=metadata_filters(request))
    return ListOf[TrainingJobOut](data=[TrainingJobOut.of(j) for j in rows], has_more=more)


@router.get("/{job_id}", response_model=TrainingJobOut)
def get_job(job: JobDep) -> TrainingJobOut:
    """One job: status, progress, ETA, latest metrics."""
    return TrainingJobOut.of(job)


@router.post("/{job_id}/cancel", response_model=TrainingJobOut, responses=errors(409))
def cancel_job(job: JobDep, session: SessionDep) -> TrainingJobOut:
    """Cancel (idempotent): at once if not started, else after the current epoch."""
    return TrainingJobOut.of(jobs.cancel_job(session, job))


STREAM_DOC = {200: {"description": "JSON list; with `stream=true` a Server-Sent Events stream: `id` (the event's "
                                    "id), `event` (message | metrics, and a last `end`), `data` (the event as JSON)",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.get("/{job_id}/events", response_model=ListOf[EventOut], responses=STREAM_DOC)
def list_events(job: JobDep, session: SessionDep, settings: SettingsDep, after: str | None = None, limit: Limit = 100,
                stream: bool = False, last_event_id: Annotated[str | None, Header()] = None) -> ListOf[EventOut] | Response:
    """The job's events, oldest first; `stream=true` sends them live as Server-Sent Events until the job
    has ended (resume with the `Last-Event-ID` header, or `after`)."""
    if stream:
        if last_event_id is not None and not is_id(last_event_id, "event"):
            raise InvalidRequest(f"Last-Event-ID must be an event id of this job, got {last_event_id!r}",
                                 param="Last-Event-ID", code="invalid_cursor")
        jobs.check_cursor(after, "event")
        cursor = last_event_id or after
        return EventSourceResponse(job_events(settings.database, job.id, cursor), ping=15,
                                   headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    rows, more = jobs.list_events(session, job, after, limit)
    return ListOf[EventOut](data=[EventOut.of(e) for e in rows], has_more=more)


@router.get("/{job_id}/metrics", response_model=ListOf[MetricOut])
def list_metrics(job: JobDep, session: SessionDep, key: str | None = None) -> ListOf[MetricOut]:
    """The metrics history, one point per key per epoch."""
    rows = jobs.list_metrics(session, job, key)
    return ListOf[MetricOut](data=[MetricOut(key=m.key, value=m.value, step=m.step, epoch=m.epoch, timestamp=m.timestamp)
                                   for m in rows])


@router.get("/{job_id}/checkpoints", response_model=ListOf[CheckpointOut])
def list_checkpoints(job: JobDep, session: SessionDep) -> ListOf[CheckpointOut]:
    """The checkpoints kept for the job (the newest few)."""
    return ListOf[CheckpointOut](data=[CheckpointOut.of(c) for c in jobs.list_checkpoints(session, job)])
