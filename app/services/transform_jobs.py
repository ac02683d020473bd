"""Bulk transform jobs from the API's side: create (resolve and pin the version, check the input,
commit, then enqueue), list, read, cancel, events, and the result file.

The input is a stored dataset (its input vectors: a text dataset's are its teacher's encodings) or an
uploaded file (app.services.row_sources: NPY/NPZ/Parquet/JSONL vectors, or JSONL texts for a
text-trained version). An upload is streamed to a temp file, described without decoding it whole,
and moved under the job's key only with the job's row; on any refusal nothing is left behind.
"""
from __future__ import annotations

import time
from typing import IO, Any, Callable

from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidContent, InvalidRequest, NotFound, NotReady
from app.ids import new_id
from app.jobs import lifecycle, states
from app.jobs.kinds import TRANSFORM
from app.jobs.states import DatasetStatus
from app.models import Dataset, ModelVersion, TransformJob, TransformJobEvent
from app.services import registry
from app.services.access import EVERYONE, Access
from app.services.datasets import get_dataset, parse_metadata, stream_to_temp
from app.services import jobs
from app.services.row_sources import TEXTS, VECTORS, Described, SourceError, describe, detect_format
from app.settings import Settings
from app.storage import Storage

Enqueue = Callable[..., None]


def source_error(exc: SourceError) -> InvalidContent:
    return InvalidContent(exc.message, code="invalid_file", param="file", row=exc.row, field=exc.field)


def check_fits(described: Described, version: ModelVersion, param: str) -> None:
    """The input's rows are what the version takes: vectors of its dim_in, or texts for a text-trained one."""
    where = f"model {version.model_name} v{version.version}"
    if described.kind == TEXTS and version.teacher is None:
        raise InvalidContent(f"the input holds texts, but {where} was trained on vectors; send vectors",
                             param=param, code="text_not_supported")
    if described.kind == VECTORS and described.dim != version.dim_in:
        raise InvalidContent(f"the input's vectors have {described.dim} values; {where} takes {version.dim_in}",
                             param=param, code="dimension_mismatch")


def dataset_input(session: Session, dataset_id: str, version: ModelVersion, access: Access) -> tuple[Dataset, Described]:
    dataset = get_dataset(session, dataset_id, access=access)
    if dataset.status != DatasetStatus.READY:
        raise Conflict(f"dataset {dataset.id} is {dataset.status}: {dataset.error or 'not ready yet'}",
                       param="dataset_id", code="dataset_not_ready")
    if dataset.teacher and version.teacher and dataset.teacher != version.teacher:
        raise InvalidContent(f"dataset {dataset.id} holds {dataset.teacher} vectors; model {version.model_name} "
                             f"v{version.version} was trained on {version.teacher}'s", param="dataset_id",
                             code="teacher_mismatch")
    described = Described(VECTORS, dataset.num_pairs, dataset.dim_in)
    check_fits(described, version, "dataset_id")
    return dataset, described


def create_job(session: Session, settings: Settings, storage: Storage, enqueue: Enqueue, *, model: str,
               version: int | None = None, alias: str | None = None, dataset_id: str | None = None,
               upload: IO[bytes] | None = None, filename: str = "", normalize: bool = False,
               metadata: dict[str, Any] | str | None = None, access: Access = EVERYONE) -> TransformJob:
    if (dataset_id is None) == (upload is None):
        raise InvalidRequest("give either dataset_id or a file to transform, not both or neither", param="dataset_id")
    meta = parse_metadata(metadata) if isinstance(metadata, str) else metadata
    pinned = registry.resolve(session, model, version, alias)  # as /v1/transform; kept whatever aliases do later
    job_id = new_id("transform_job")
    tmp = stored_key = None
    try:
        if dataset_id is not None:
            dataset, described = dataset_input(session, dataset_id, pinned, access)
            input_key, fmt, size = dataset.pairs_key, dataset_format(dataset), dataset.bytes
        else:
            tmp, size, _ = stream_to_temp(upload, storage, settings.max_upload_bytes)
            if size == 0:
                raise InvalidContent("the file is empty", code="invalid_file", param="file")
            fmt = detect_format(tmp, filename)
            try:
                described = describe(tmp, fmt, settings.max_dataset_bytes)
            except SourceError as exc:
                raise source_error(exc) from None
            check_fits(described, pinned, "file")
            stored_key = input_key = f"transform-jobs/{job_id}/input.{fmt}"
            storage.put_file(tmp, input_key)
        job = TransformJob(
            id=job_id, model_name=pinned.model_name, model_version_id=pinned.id, version=pinned.version,
            dataset_id=dataset_id, input_key=input_key, input_format=fmt, input_kind=described.kind, input_bytes=size,
            num_rows=described.rows, dim_in=pinned.dim_in, dim_out=pinned.dim_out, normalize=normalize,
            status=states.QUEUED, device="cpu", attempt=0, rows_done=0, metadata_=meta, created_at=time.time(),
            owner_key_id=access.key_id)
        session.add(job)
        session.flush()  # the event's foreign key needs the job row first
        lifecycle.add_event(session, job.id, f"transform job created: {described.rows} {described.kind} through "
                            f"{pinned.model_name} v{pinned.version}", kind=TRANSFORM)
        session.commit()  # before enqueueing: the worker must find the row
    except BaseException:
        session.rollback()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if stored_key:
            storage.delete(f"transform-jobs/{job_id}")
        raise
    lifecycle.send(session, enqueue, job.id, job.device, kind=TRANSFORM)
    session.refresh(job)
    if job.error_code == "broker_unavailable":
        raise NotReady("the job queue is unreachable; the job was not started", code="broker_unavailable")
    lifecycle.note_if_unserved(session, settings, job)
    return job


def dataset_format(dataset: Dataset) -> str:
    """The format of the file a dataset's pairs are read from (text datasets: the encoded NPZ)."""
    return "npz" if dataset.pairs_key.endswith(".npz") else dataset.format


def get_job(session: Session, job_id: str, access: Access = EVERYONE) -> TransformJob:
    job = session.get(TransformJob, job_id)
    if job is None or not access.can_see(job.owner_key_id):
        raise NotFound(f"no transform job {job_id!r}", param="job_id")
    return job


def list_jobs(session: Session, after: str | None, limit: int, status: str | None,
              access: Access = EVERYONE) -> tuple[list[TransformJob], bool]:
    return jobs.newest_first(session, TransformJob, "transform_job", after, limit, access, status, states.STATES)


def cancel_job(session: Session, job: TransformJob) -> TransformJob:
    return jobs.cancel_job(session, job, "transform job")


def list_events(session: Session, job: TransformJob, after: str | None, limit: int) -> tuple[list[TransformJobEvent], bool]:
    return jobs.list_events(session, job, after, limit, TransformJobEvent)


def result_key(job: TransformJob) -> str:
    """The finished job's stored .npy, or 409 naming the job's status."""
    if job.status != states.SUCCEEDED:
        raise Conflict(f"transform job {job.id} is {job.status}; its result exists once it has succeeded",
                       param="job_id", code="result_not_ready")
    return job.result_key
