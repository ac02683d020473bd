"""Datasets: validate an upload before anything is stored, then move it into storage and insert its row.

Order matters so a failed upload leaves nothing behind: stream to a temp file (with the size limit),
validate it, move it to its server-generated key, insert the row, commit; on any failure the temp or
moved file is deleted and no row exists. Text pairs are validated here and encoded by a worker.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidContent, InvalidRequest, NotFound, NotReady, PayloadTooLarge
from app.ids import is_id, new_id
from app.jobs import lifecycle, states
from app.jobs.states import DatasetStatus
from app.models import Dataset, Sweep, TrainingJob, TransformJob, teacher_names
from app.queue import ENCODE_TASK
from app.safe_input import check_json, check_text
from app.services.access import EVERYONE, Access
from app.settings import Settings
from app.storage import Storage

Enqueue = Callable[..., None]  # enqueue(task_name, *args)
KINDS = ("text_pairs", "embedding_pairs")
CHUNK = 1 << 20


@dataclass
class Validated:
    num_pairs: int
    dim_in: int | None
    dim_out: int | None


def stream_to_temp(source: IO[bytes], storage: Storage, limit: int) -> tuple[Path, int, str]:
    """Copy the upload to a temp file in chunks; stop at the size limit. Returns (path, bytes, sha256).
    If the API dies meanwhile, its next start removes the file (Storage.remove_abandoned_temp_files)."""
    fd, path = storage.new_temp_file("upload")
    size, digest = 0, hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"file is larger than the limit of {limit} bytes", param="file", code="file_too_large")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size, digest.hexdigest()


def file_sha256(source: IO[bytes]) -> str:
    """Hash an upload without consuming it (for Idempotency-Key fingerprints)."""
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()


def detect_format(path: Path, filename: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        return "npz"
    if head == b"PAR1":
        return "parquet"
    suffix = Path(filename).suffix.lower()
    return {".csv": "csv", ".parquet": "parquet", ".npz": "npz"}.get(suffix, "jsonl")


def file_error(exc) -> InvalidContent | PayloadTooLarge:
    """A cube PairFileError as a 422 naming the line (text files), row (arrays) and field; a file
    whose arrays would decode past the limit as a 413."""
    from cube.pairs import PairFileTooLarge

    if isinstance(exc, PairFileTooLarge):
        return PayloadTooLarge(f"{exc.message} (setting max_dataset_bytes)", code="decoded_too_large", param="file",
                               field=exc.field)
    return InvalidContent(exc.message, code="invalid_file", param="file", line=exc.line, field=exc.field, row=exc.row)


def validate_file(path: Path, kind: str, fmt: str, settings: Settings, *, translation: bool = False) -> Validated:
    """Check the file's content; array files are first checked against `max_dataset_bytes` from their
    headers and metadata, so memory stays bounded whatever sizes a file claims. Texts for translation
    (a target teacher) may be single texts; `num_pairs` counts their distinct texts, the items."""
    from cube.pairs import PairFileError

    try:
        if kind == "embedding_pairs":
            if fmt == "npz":
                from cube.pairs import load_pairs_npz

                data = load_pairs_npz(path, min_pairs=settings.min_pairs, max_bytes=settings.max_dataset_bytes)
            else:
                from cube.pairs import load_pairs_file

                data = load_pairs_file(path, fmt=fmt, min_pairs=settings.min_pairs, max_bytes=settings.max_dataset_bytes)
            return Validated(len(data), data.dim_in, data.dim_out)
        if fmt not in ("jsonl", "csv"):
            raise InvalidContent(f"text_pairs must be JSONL or CSV, got a {fmt} file; did you mean kind=embedding_pairs?",
                                 code="wrong_kind", param="kind")
        if translation:
            from cube.translation import load_translation_texts

            return Validated(len(load_translation_texts(path, fmt=fmt, min_texts=settings.min_pairs)), None, None)
        from cube.textpairs import load_text_pairs

        pairs_ = load_text_pairs(path, fmt=fmt, min_pairs=settings.min_pairs)
        return Validated(len(pairs_.inputs), None, None)
    except PairFileError as exc:
        raise file_error(exc) from None


def check_teacher(kind: str, teacher: str | None, param: str = "teacher") -> str | None:
    if kind == "embedding_pairs":
        return teacher  # informational: which space the vectors are in
    from cube.teachers import DEFAULT_TEACHER, get_teacher

    name = teacher or DEFAULT_TEACHER
    try:
        get_teacher(name)
    except (KeyError, ValueError) as exc:
        raise InvalidRequest(f"unknown {param} {name!r}: {exc}", param=param, code="unknown_teacher") from None
    return name


def check_target_teacher(kind: str, teacher: str | None, target_teacher: str | None) -> str | None:
    """The targets' teacher(s): one for translation, installed and not the input teacher; or several,
    comma-separated, distinct and installed, for multi-teacher distillation (the input teacher may be
    one of them). Multi-teacher targets are text only: vectors cannot say which columns are whose."""
    names = teacher_names(target_teacher)
    if len(names) > 1:
        if kind == "embedding_pairs":
            raise InvalidRequest("several target teachers need kind text_pairs: the worker encodes each target with each "
                                 "teacher", param="target_teacher", code="invalid_target_teacher")
        if any(not name for name in names) or len(set(names)) != len(names):
            raise InvalidRequest(f"target_teacher must name distinct teachers separated by commas, got {target_teacher!r}",
                                 param="target_teacher", code="invalid_target_teacher")
        for name in names:
            check_teacher(kind, name, "target_teacher")
        return ",".join(names)
    if target_teacher is None or kind == "embedding_pairs":
        return target_teacher
    check_teacher(kind, target_teacher, "target_teacher")
    if target_teacher == teacher:
        raise InvalidRequest(f"target_teacher is the input teacher ({teacher}); translation needs two teachers "
                             "(several, comma-separated, train one model with a head per teacher)",
                             param="target_teacher", code="same_teacher")
    return target_teacher


def parse_metadata(raw: str | None) -> dict[str, Any] | None:
    if raw in (None, ""):
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"metadata must be a JSON object: {exc}", param="metadata") from None
    except RecursionError:
        raise InvalidRequest("metadata is nested too deeply to parse", param="metadata", code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object", param="metadata")
    return check_json(value, "metadata")


def create_dataset(session: Session, settings: Settings, storage: Storage, enqueue: Enqueue, source: IO[bytes], *,
                   filename: str, kind: str, name: str | None, teacher: str | None, metadata: str | None,
                   access: Access = EVERYONE, target_teacher: str | None = None) -> Dataset:
    if kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", param="kind", code="invalid_kind")
    for param, value, limit in (("name", name, 200), ("teacher", teacher, 200), ("target_teacher", target_teacher, 200)):
        if value is not None and not 1 <= len(check_text(value, param)) <= limit:
            raise InvalidRequest(f"{param} must be 1-{limit} characters", param=param)
    # Only informational (storage keys are server-made), but stored, so it must be storable text.
    filename = Path(check_text(filename, "file")).name[-300:] or "upload"
    meta = parse_metadata(metadata)
    teacher = check_teacher(kind, teacher)
    target_teacher = check_target_teacher(kind, teacher, target_teacher)
    tmp, size, sha = stream_to_temp(source, storage, settings.max_upload_bytes)
    stored_key = None
    try:
        if size == 0:
            raise InvalidContent("the file is empty", code="invalid_file", param="file", field="file")
        fmt = detect_format(tmp, filename)
        checked = validate_file(tmp, kind, fmt, settings, translation=len(teacher_names(target_teacher)) == 1)
        ds_id = new_id("dataset")
        stored_key = f"datasets/{ds_id}/data.{fmt}"
        storage.put_file(tmp, stored_key)
        ready = kind == "embedding_pairs"
        dataset = Dataset(
            id=ds_id, name=name or Path(filename).stem[:200] or ds_id, kind=kind, format=fmt, filename=filename, bytes=size,
            sha256=sha, num_pairs=checked.num_pairs, dim_in=checked.dim_in, dim_out=checked.dim_out, teacher=teacher,
            target_teacher=target_teacher,
            status=DatasetStatus.READY if ready else DatasetStatus.VALIDATING, error=None, storage_key=stored_key,
            pairs_key=stored_key if ready else None, metadata_=meta, created_at=time.time(), owner_key_id=access.key_id,
        )
        session.add(dataset)
        session.commit()
    except BaseException:
        session.rollback()
        tmp.unlink(missing_ok=True)
        if stored_key:
            storage.delete(stored_key.rsplit("/", 1)[0])
        raise
    if not ready:
        try:
            enqueue(ENCODE_TASK, dataset.id)  # after the commit: the worker must find the row
        except Exception as exc:  # kombu raises many kinds; all mean "not enqueued": undo the upload
            session.delete(dataset)
            session.commit()
            storage.delete(f"datasets/{dataset.id}")
            raise NotReady("the job queue is unreachable; the dataset was not stored", code="broker_unavailable") from exc
    return dataset


def get_dataset(session: Session, dataset_id: str, *, for_update: bool = False, access: Access = EVERYONE) -> Dataset:
    """The dataset, or 404 if it does not exist, is deleted or belongs to another key."""
    dataset = session.get(Dataset, dataset_id, with_for_update=for_update)
    if dataset is None or dataset.status == DatasetStatus.DELETED or not access.can_see(dataset.owner_key_id):
        raise NotFound(f"no dataset {dataset_id!r}", param="dataset_id")
    return dataset


def list_datasets(session: Session, after: str | None, limit: int, access: Access = EVERYONE) -> tuple[list[Dataset], bool]:
    if after is not None and not is_id(after, "dataset"):
        raise InvalidRequest(f"after must be a dataset id (ds_...), got {after!r}", param="after", code="invalid_cursor")
    query = (select(Dataset).where(Dataset.status != DatasetStatus.DELETED, access.where(Dataset.owner_key_id))
             .order_by(Dataset.id.desc()).limit(limit + 1))
    if after:
        query = query.where(Dataset.id < after)
    rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def delete_dataset(session: Session, storage: Storage, dataset: Dataset) -> None:
    """409 while an active job or a running sweep uses it; a dataset that finished jobs or sweeps point
    at keeps a tombstone row."""
    if dataset.status == DatasetStatus.VALIDATING:  # the worker is encoding it: deleting now would strand its result
        raise Conflict(f"dataset {dataset.id} is being encoded; delete it once it is ready or failed",
                       code="dataset_in_use")
    jobs = list(session.scalars(select(TrainingJob.status).where(TrainingJob.dataset_id == dataset.id)))
    if any(s in states.ACTIVE for s in jobs):
        raise Conflict(f"dataset {dataset.id} is used by an active training job", code="dataset_in_use")
    transforms = list(session.scalars(select(TransformJob.status).where(TransformJob.dataset_id == dataset.id)))
    if any(s in states.ACTIVE for s in transforms):
        raise Conflict(f"dataset {dataset.id} is read by an active transform job", code="dataset_in_use")
    sweeps = list(session.scalars(select(Sweep.status).where(Sweep.dataset_id == dataset.id)))
    if "running" in sweeps:  # between two trials no job may be active, yet the next one needs the data
        raise Conflict(f"dataset {dataset.id} is searched by a running sweep", code="dataset_in_use")
    jobs += transforms + sweeps
    if jobs:
        lifecycle.retire_dataset(dataset)
    else:
        session.delete(dataset)
    session.commit()
    storage.delete(f"datasets/{dataset.id}")
