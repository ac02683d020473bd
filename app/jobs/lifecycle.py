"""The job lifecycle: the only code that writes a job's or a dataset's status.

    send            enqueue a committed queued job (a broker that refuses it fails the job)
    release_waiting queue (or fail) the jobs that wait for a text dataset's encoding
    cancel          at once before the job runs; a flag the running job honours after its epoch

Every job move is one atomic `UPDATE ... WHERE id = ? AND status IN (...)` whose statuses come from
the transition table (`states.sources_of`), so two processes racing for the same move (two
deliveries of a message, the encoder and the API, two recovery sweeps) cannot both make it: the one
whose UPDATE matched a row does what follows (the event, the message), the other does nothing.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.ids import new_id
from app.jobs import states
from app.jobs.states import DatasetStatus
from app.models import Dataset, JobEvent, TrainingJob
from app.queue import TRAIN_TASK

Enqueue = Callable[..., None]  # enqueue(task_name, *args)


def add_event(session: Session, job_id: str, message: str, *, level: str = "info", type: str = "message",
              data: dict[str, Any] | None = None) -> None:
    session.add(JobEvent(id=new_id("event"), job_id=job_id, level=level, type=type, message=message, data=data,
                         created_at=time.time()))


def move(session: Session, job_id: str, new: str, *, only_from: Iterable[str] | None = None, where: Iterable = (),
         **values: Any) -> bool:
    """Atomically move a job to `new` (plus `values`) if its status is one the table lets reach
    `new` (narrowed to `only_from`) and `where` holds. True if this call made the move."""
    sources = states.sources_of(new)
    if only_from is not None:
        illegal = set(only_from) - sources
        if illegal:
            raise states.IllegalTransition(sorted(illegal)[0], new)
        sources = frozenset(only_from)
    now = time.time()
    stamped: dict[str, Any] = {}
    if new == states.RUNNING:
        stamped["started_at"] = func.coalesce(TrainingJob.started_at, now)
    if new in states.TERMINAL:
        stamped.update(finished_at=now, estimated_finish=None)
    result = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status.in_(sorted(sources)), *where)
        .values(status=new, **stamped, **values)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def send(session: Session, enqueue: Enqueue, job_id: str) -> bool:
    """Enqueue a committed, queued job. If the broker refuses, the job fails at once (rather than
    waiting for a message that was never sent) and this returns False."""
    try:
        enqueue(TRAIN_TASK, job_id)
        return True
    except Exception as exc:  # kombu raises many kinds; all mean "not enqueued"
        if move(session, job_id, states.FAILED, error_code="broker_unavailable",
                error_message=f"could not enqueue the job: {exc}"):
            add_event(session, job_id, f"could not enqueue the job: {exc}", level="error")
        session.commit()
        return False


def release_waiting(session: Session, enqueue: Enqueue, dataset_id: str) -> list[str]:
    """Queue (dataset ready) or fail (dataset failed) every job waiting in `validating_files` for
    the dataset; returns the ids this call moved.

    The encoder calls it when it finishes, and job creation after its commit: on SQLite, which has
    no row lock, a job created while the encoder finished is seen by at least one of the two, and
    the atomic move hands each job to exactly one of them."""
    dataset = session.get(Dataset, dataset_id)
    session.refresh(dataset)
    if dataset.status not in (DatasetStatus.READY, DatasetStatus.FAILED):
        session.commit()
        return []
    waiting = list(session.scalars(select(TrainingJob.id).where(TrainingJob.dataset_id == dataset_id,
                                                                TrainingJob.status == states.VALIDATING_FILES)))
    moved = []
    for job_id in waiting:
        if dataset.status == DatasetStatus.FAILED:
            if move(session, job_id, states.FAILED, only_from=[states.VALIDATING_FILES], error_code="dataset_failed",
                    error_message=dataset.error):
                add_event(session, job_id, dataset.error or f"dataset {dataset_id} failed", level="error")
                moved.append(job_id)
        elif move(session, job_id, states.QUEUED, only_from=[states.VALIDATING_FILES]):
            add_event(session, job_id, f"dataset {dataset_id} is ready; queued")
            moved.append(job_id)
    session.commit()
    if dataset.status == DatasetStatus.READY:
        for job_id in moved:
            send(session, enqueue, job_id)
    return moved


def cancel(session: Session, job: TrainingJob) -> TrainingJob:
    """Idempotent. A job not yet running is cancelled at once (its message, if delivered, finds
    nothing to claim); a running one gets `cancel_requested_at`, which its training loop checks
    after each epoch. Refuses (IllegalTransition) a job that already succeeded or failed."""
    if job.status == states.CANCELLED:
        return job
    if move(session, job.id, states.CANCELLED, only_from=[states.VALIDATING_FILES, states.QUEUED]):
        add_event(session, job.id, "cancelled before it started")
    else:
        session.refresh(job)
        if job.status in (states.SUCCEEDED, states.FAILED):
            raise states.IllegalTransition(job.status, states.CANCELLED)
        if job.status == states.RUNNING and job.cancel_requested_at is None:
            job.cancel_requested_at = time.time()
            add_event(session, job.id, "cancel requested; stopping after the current epoch")
    session.commit()
    session.refresh(job)
    return job


def dataset_encoded(dataset: Dataset, *, pairs_key: str, dim_in: int, dim_out: int,
                    num_pairs: int) -> None:
    states.move_dataset(dataset, DatasetStatus.READY)
    dataset.pairs_key, dataset.dim_in, dataset.dim_out, dataset.num_pairs = pairs_key, dim_in, dim_out, num_pairs


def dataset_failed(dataset: Dataset, error: str) -> None:
    states.move_dataset(dataset, DatasetStatus.FAILED)
    dataset.error = error


def retire_dataset(dataset: Dataset) -> None:
    """A deleted dataset that finished jobs still point at: keep its row as a tombstone."""
    states.move_dataset(dataset, DatasetStatus.DELETED)
