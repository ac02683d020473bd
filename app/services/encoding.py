"""Text datasets: the worker encodes validated text pairs with the dataset's teacher, stores the
embedding pairs, marks the dataset ready, and releases the jobs that waited for it."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from app import job_states
from app.db import session_scope
from app.models import Dataset, TrainingJob
from app.queue import TRAIN_TASK
from app.services.datasets import FAILED, READY, VALIDATING, optional_module
from app.services.jobs import add_event
from app.settings import Settings
from app.storage import get_storage

log = logging.getLogger("cube.worker")


def encode_dataset(settings: Settings, dataset_id: str, enqueue: Callable[..., None]) -> str:
    storage = get_storage(settings)
    with session_scope(settings.database) as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None or dataset.status != VALIDATING:
            return "skipped"  # a duplicate message, or deleted meanwhile
        source, fmt, teacher_name = storage.local_path(dataset.storage_key), dataset.format, dataset.teacher
    pairs_key = f"datasets/{dataset_id}/pairs.npz"
    try:
        textpairs, teachers, encoding = (optional_module(m) for m in ("cube.textpairs", "cube.teachers", "cube.encoding"))
        if None in (textpairs, teachers, encoding):
            raise RuntimeError("this build has no text support (cube.textpairs, cube.teachers, cube.encoding)")
        from cube.pairs import save_pairs_npz

        text_pairs = textpairs.load_text_pairs(source, fmt=fmt, min_pairs=settings.min_pairs)
        teacher = teachers.get_teacher(teacher_name)
        data = encoding.encode_text_pairs(text_pairs, teacher, settings.teacher_cache)
        with tempfile.NamedTemporaryFile(dir=storage.temp_dir(), suffix=".npz", delete=False) as tmp:
            save_pairs_npz(tmp.name, data)
        storage.put_file(Path(tmp.name), pairs_key)
    except Exception as exc:
        log.exception("encoding dataset %s failed", dataset_id)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        with session_scope(settings.database) as session:
            dataset = session.get(Dataset, dataset_id)
            dataset.status, dataset.error = FAILED, f"encoding failed: {message}"
            for job in session.scalars(select(TrainingJob).where(TrainingJob.dataset_id == dataset_id,
                                                                 TrainingJob.status == job_states.VALIDATING_FILES)):
                job_states.transition(job, job_states.FAILED)
                job.error_code, job.error_message = "dataset_failed", dataset.error
                add_event(session, job.id, dataset.error, level="error")
        return "failed"
    with session_scope(settings.database) as session:
        dataset = session.get(Dataset, dataset_id)
        dataset.status, dataset.pairs_key = READY, pairs_key
        dataset.dim_in, dataset.dim_out, dataset.num_pairs = data.dim_in, data.dim_out, len(data)
        waiting = list(session.scalars(select(TrainingJob).where(TrainingJob.dataset_id == dataset_id,
                                                                 TrainingJob.status == job_states.VALIDATING_FILES)))
        for job in waiting:
            job_states.transition(job, job_states.QUEUED)
            add_event(session, job.id, f"dataset {dataset_id} encoded with {teacher_name}; queued")
    for job in waiting:
        enqueue(TRAIN_TASK, job.id)
    return "ready"
