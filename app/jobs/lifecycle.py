"""The job lifecycle: the only code that writes a job's or a dataset's status.

Training jobs and bulk transform jobs share it: every function that takes a `kind`
(app.jobs.kinds: TRAINING, the default, or TRANSFORM) works on that kind's table and events.

    send            enqueue a committed queued job on its device's queue (a refused send fails it)
    release_waiting queue (or fail) the jobs that wait for a text dataset's encoding
    cancel          at once before the job runs; a flag the running job honours after its epoch
    claim           queued -> running for one worker, attempt + 1
    heartbeat       the running attempt is alive (a thread beats every `heartbeat_seconds`)
    record_epoch    progress, metrics, the checkpoints the trainer reported; says stop on cancel
    record_rows     a transform job's progress (rows done); says stop on cancel
    finish          running -> failed | cancelled
    register        running -> succeeded with exactly one model version, judged by the job's promotion gate
    trial_done      a sweep's trial job: running -> succeeded with its validation score, no version
    complete        a transform job: running -> succeeded with its result file
    recover         the periodic sweep: re-queue jobs whose worker stopped, re-send lost messages

Every job move is one atomic `UPDATE ... WHERE id = ? AND status IN (...)` whose statuses come from
the transition table (`states.sources_of`), so two processes racing for the same move (two
deliveries of a message, the encoder and the API, two recovery sweeps) cannot both make it: the one
whose UPDATE matched a row does what follows (the event, the message), the other does nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import session_scope
from app.ids import new_id
from app.jobs import states, workers
from app.jobs.kinds import KINDS, TRAINING, TRANSFORM, JobKind, kind_of
from app.jobs.states import DatasetStatus
from app.models import Dataset, JobCheckpoint, JobMetric, ModelVersion, TrainingJob
from app.queue import device_queue
from app.services.registry import register_version
from app.settings import Settings
from app.storage import get_storage
from app.webhooks import outbox

log = logging.getLogger("cube.jobs")

Enqueue = Callable[..., None]  # enqueue(task_name, *args, device="cpu")


def add_event(session: Session, job_id: str, message: str, *, level: str = "info", type: str = "message",
              data: dict[str, Any] | None = None, kind: JobKind = TRAINING) -> None:
    session.add(kind.events(id=new_id("event"), job_id=job_id, level=level, type=type, message=message, data=data,
                            created_at=time.time()))


def move(session: Session, job_id: str, new: str, *, only_from: Iterable[str] | None = None, where: Iterable = (),
         kind: JobKind = TRAINING, **values: Any) -> bool:
    """Atomically move a job to `new` (plus `values`) if its status is one the table lets reach
    `new` (narrowed to `only_from`) and `where` holds. True if this call made the move."""
    sources = states.sources_of(new)
    if only_from is not None:
        illegal = set(only_from) - sources
        if illegal:
            raise states.IllegalTransition(sorted(illegal)[0], new)
        sources = frozenset(only_from)
    now = time.time()
    table = kind.table
    stamped: dict[str, Any] = {}
    if new == states.RUNNING:
        stamped["started_at"] = func.coalesce(table.started_at, now)
    if new in states.TERMINAL:
        stamped.update(finished_at=now, estimated_finish=None)
    result = session.execute(
        update(table)
        .where(table.id == job_id, table.status.in_(sorted(sources)), *where)
        .values(status=new, **stamped, **values)
        .execution_options(synchronize_session=False))
    moved = result.rowcount == 1
    if moved and new in states.TERMINAL:
        outbox.job_ended(session, job_id)
    return moved


# ---- from the API's side --------------------------------------------------------------------

def send(session: Session, enqueue: Enqueue, job_id: str, device: str, kind: JobKind = TRAINING) -> bool:
    """Enqueue a committed, queued job on its device's queue. If the broker refuses, the job fails
    at once (rather than waiting for a message that was never sent) and this returns False."""
    try:
        enqueue(kind.task, job_id, device=device)
        return True
    except Exception as exc:  # kombu raises many kinds; all mean "not enqueued"
        if move(session, job_id, states.FAILED, only_from=[states.QUEUED], kind=kind, error_code="broker_unavailable",
                error_message=f"could not enqueue the job: {exc}"):
            add_event(session, job_id, f"could not enqueue the job: {exc}", level="error", kind=kind)
        session.commit()
        return False


def note_if_unserved(session: Session, settings: Settings, job) -> None:
    """An event on a job whose device no live worker serves: it waits, and says why."""
    if workers.live_counts(session, settings).get(job.device, 0) == 0:
        add_event(session, job.id, f"no live worker serves device {job.device} (none seen in the last "
                  f"{settings.job_lease_seconds:g} s); the job waits in queue {device_queue(settings, job.device)} "
                  f"until one starts (`cube worker --device {job.device}`)", level="warning",
                  data={"reason": "no_worker", "device": job.device}, kind=kind_of(job))
        session.commit()


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
    waiting = list(session.execute(select(TrainingJob.id, TrainingJob.device).where(
        TrainingJob.dataset_id == dataset_id, TrainingJob.status == states.VALIDATING_FILES)))
    moved = []
    for job_id, device in waiting:
        if dataset.status == DatasetStatus.FAILED:
            if move(session, job_id, states.FAILED, only_from=[states.VALIDATING_FILES], error_code="dataset_failed",
                    error_message=dataset.error):
                add_event(session, job_id, dataset.error or f"dataset {dataset_id} failed", level="error")
                moved.append((job_id, device))
        elif move(session, job_id, states.QUEUED, only_from=[states.VALIDATING_FILES], sent_at=time.time()):
            add_event(session, job_id, f"dataset {dataset_id} is ready; queued")
            moved.append((job_id, device))
    session.commit()
    if dataset.status == DatasetStatus.READY:
        for job_id, device in moved:
            send(session, enqueue, job_id, device)
    return [job_id for job_id, _ in moved]


def cancel(session: Session, job):
    """Idempotent. A job not yet running is cancelled at once (its message, if delivered, finds
    nothing to claim); a running one gets `cancel_requested_at`, which its loop checks after each
    epoch (training) or batch (transform). Refuses (IllegalTransition) a job that already succeeded or failed."""
    kind = kind_of(job)
    if job.status == states.CANCELLED:
        return job
    if move(session, job.id, states.CANCELLED, only_from=[states.VALIDATING_FILES, states.QUEUED], kind=kind):
        add_event(session, job.id, "cancelled before it started", kind=kind)
    else:
        session.refresh(job)
        if job.status in (states.SUCCEEDED, states.FAILED):
            raise states.IllegalTransition(job.status, states.CANCELLED)
        if job.status == states.RUNNING and job.cancel_requested_at is None:
            job.cancel_requested_at = time.time()
            add_event(session, job.id, f"cancel requested; stopping after the current {kind.unit}", kind=kind)
    session.commit()
    session.refresh(job)
    return job


# ---- datasets -------------------------------------------------------------------------------

def dataset_encoded(dataset: Dataset, *, pairs_key: str, dim_in: int, dim_out: int, num_pairs: int) -> None:
    states.move_dataset(dataset, DatasetStatus.READY)
    dataset.pairs_key, dataset.dim_in, dataset.dim_out, dataset.num_pairs = pairs_key, dim_in, dim_out, num_pairs


def dataset_failed(dataset: Dataset, error: str) -> None:
    states.move_dataset(dataset, DatasetStatus.FAILED)
    dataset.error = error


def retire_dataset(dataset: Dataset) -> None:
    """A deleted dataset that finished jobs still point at: keep its row as a tombstone."""
    states.move_dataset(dataset, DatasetStatus.DELETED)


# ---- from the worker's side -----------------------------------------------------------------

@dataclass
class Claim:
    outcome: str                 # claimed | gone | finished | busy (another attempt holds it)
    attempt: int = 0


def claim(settings: Settings, job_id: str, worker: str, kind: JobKind = TRAINING) -> Claim:
    """Take a queued job for `worker`: one atomic move, so of two deliveries only one runs it."""
    with session_scope(settings.database) as session:
        if move(session, job_id, states.RUNNING, kind=kind, attempt=kind.table.attempt + 1, worker=worker,
                heartbeat_at=time.time()):
            job = session.get(kind.table, job_id)
            add_event(session, job_id, f"started on {worker} (attempt {job.attempt} of {settings.max_attempts})",
                      data={"attempt": job.attempt, "worker": worker}, kind=kind)
            return Claim("claimed", job.attempt)
        job = session.get(kind.table, job_id)
        if job is None:
            return Claim("gone")
        if job.status != states.RUNNING:
            return Claim("finished")  # terminal, or waiting for its dataset: this message has nothing to do
        return Claim("busy", job.attempt)  # if its worker died, recovery re-queues it and sends a fresh message


def _owns(job_id: str, attempt: int, table: type = TrainingJob) -> tuple:
    """The WHERE clause of every write a running attempt makes: it still holds the job."""
    return (table.id == job_id, table.attempt == attempt, table.status == states.RUNNING)


def heartbeat(settings: Settings, job_id: str, attempt: int, kind: JobKind = TRAINING) -> bool:
    """The attempt is alive. False once it no longer holds the job."""
    with session_scope(settings.database) as session:
        return session.execute(update(kind.table).where(*_owns(job_id, attempt, kind.table))
                               .values(heartbeat_at=time.time())).rowcount == 1


class Heartbeat:
    """Beats from a thread every `heartbeat_seconds` for as long as the pipeline runs (training,
    baselines, evaluation; a transform's batches), so a live job is never presumed dead."""

    def __init__(self, settings: Settings, job_id: str, attempt: int, kind: JobKind = TRAINING):
        self.settings, self.job_id, self.attempt, self.kind = settings, job_id, attempt, kind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                heartbeat(self.settings, self.job_id, self.attempt, self.kind)
            except Exception:  # a missed beat is retried next period; the lease allows several
                log.warning("heartbeat for %s failed", self.job_id, exc_info=True)


CONTINUE, CANCEL, LOST = "continue", "cancel", "lost"


@dataclass
class EpochRecord:
    """What one epoch reports: progress, metrics, and the checkpoints written and deleted."""

    epoch: int
    n_epochs: int
    step: int
    total_steps: int
    metrics: dict[str, float | None]
    message: str
    estimated_finish: float
    checkpoint_key: str | None = None          # the checkpoint written after this epoch
    removed_keys: list[str] = field(default_factory=list)  # checkpoints the trainer deleted


def record_epoch(settings: Settings, job_id: str, attempt: int, rec: EpochRecord) -> str:
    """Write an epoch's progress if this attempt still holds the job. Returns CONTINUE, CANCEL (a
    cancel was requested) or LOST (another attempt holds the job now: stop, write nothing more).

    The first checkpoint of a new attempt supersedes the ones of earlier attempts (one of which it
    resumed from): their rows and files go."""
    now = time.time()
    superseded: list[str] = []
    with session_scope(settings.database) as session:
        owned = session.execute(update(TrainingJob).where(*_owns(job_id, attempt)).values(
            epoch=rec.epoch, n_epochs=rec.n_epochs, step=rec.step, total_steps=rec.total_steps, metrics=rec.metrics,
            heartbeat_at=now, estimated_finish=rec.estimated_finish)).rowcount == 1
        if not owned:
            return LOST
        for key, value in rec.metrics.items():
            if value is not None:
                session.add(JobMetric(job_id=job_id, key=key, value=value, step=rec.step, epoch=rec.epoch, timestamp=now))
        add_event(session, job_id, rec.message, type="metrics", data={"epoch": rec.epoch, "step": rec.step, **rec.metrics})
        if rec.removed_keys:
            session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id,
                                                        JobCheckpoint.storage_key.in_(rec.removed_keys)))
        if rec.checkpoint_key:
            superseded = list(session.scalars(select(JobCheckpoint.storage_key).where(
                JobCheckpoint.job_id == job_id, JobCheckpoint.attempt < attempt)))
            session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id, JobCheckpoint.storage_key.in_(superseded)))
            session.add(JobCheckpoint(id=new_id("checkpoint"), job_id=job_id, attempt=attempt, epoch=rec.epoch,
                                      step=rec.step, storage_key=rec.checkpoint_key, metrics=rec.metrics, created_at=now))
        cancel_requested = session.scalar(select(TrainingJob.cancel_requested_at).where(TrainingJob.id == job_id))
    storage = get_storage(settings)
    for key in superseded:
        storage.delete(key)
    return CANCEL if cancel_requested is not None else CONTINUE


def should_stop(settings: Settings, job_id: str, attempt: int, kind: JobKind = TRAINING) -> str:
    """Between the experiment's later stages: CANCEL, LOST or CONTINUE, as `record_epoch` says."""
    with session_scope(settings.database) as session:
        job = session.get(kind.table, job_id)
        if job is None or job.attempt != attempt or job.status != states.RUNNING:
            return LOST
        return CANCEL if job.cancel_requested_at is not None else CONTINUE


def resume_point(settings: Settings, job_id: str) -> JobCheckpoint | None:
    """The newest checkpoint recorded for the job, of any attempt (the caller checks its files)."""
    with session_scope(settings.database) as session:
        return session.scalar(select(JobCheckpoint).where(JobCheckpoint.job_id == job_id)
                              .order_by(JobCheckpoint.epoch.desc()).limit(1))


def note(settings: Settings, job_id: str, message: str, **data: Any) -> None:
    """An event from the pipeline (e.g. "resumed from epoch 3")."""
    with session_scope(settings.database) as session:
        add_event(session, job_id, message, data=data or None)


def finish(settings: Settings, job_id: str, attempt: int, status: str, *, code: str | None = None, message: str,
           kind: JobKind = TRAINING) -> bool:
    """Move our running attempt to failed or cancelled; a no-op (False) if another attempt holds it."""
    errors = {"error_code": code, "error_message": message} if code else {}
    with session_scope(settings.database) as session:
        if not move(session, job_id, status, only_from=[states.RUNNING], where=(kind.table.attempt == attempt,),
                    kind=kind, **errors):
            return False
        add_event(session, job_id, message, level="error" if status == states.FAILED else "info", kind=kind)
        return True


def record_rows(settings: Settings, job_id: str, attempt: int, rows_done: int, estimated_finish: float) -> str:
    """A transform job's progress, if this attempt still holds it: CONTINUE, CANCEL or LOST (as `record_epoch`)."""
    table = TRANSFORM.table
    with session_scope(settings.database) as session:
        owned = session.execute(update(table).where(*_owns(job_id, attempt, table)).values(
            rows_done=rows_done, heartbeat_at=time.time(), estimated_finish=estimated_finish)).rowcount == 1
        if not owned:
            return LOST
        cancel_requested = session.scalar(select(table.cancel_requested_at).where(table.id == job_id))
    return CANCEL if cancel_requested is not None else CONTINUE


def complete(settings: Settings, job_id: str, attempt: int, *, result_key: str, result_bytes: int, rows: int) -> str:
    """A transform job's result is in place: running -> succeeded, unless a cancel was requested first
    (then cancelled). Returns the new status, or LOST if another attempt holds the job (the caller
    then removes its file)."""
    table = TRANSFORM.table
    with session_scope(settings.database) as session:
        if move(session, job_id, states.SUCCEEDED, only_from=[states.RUNNING], kind=TRANSFORM,
                where=(table.attempt == attempt, table.cancel_requested_at.is_(None)),
                result_key=result_key, result_bytes=result_bytes, rows_done=rows):
            add_event(session, job_id, f"succeeded: {rows} rows written", kind=TRANSFORM,
                      data={"rows": rows, "bytes": result_bytes})
            return states.SUCCEEDED
        if move(session, job_id, states.CANCELLED, only_from=[states.RUNNING], kind=TRANSFORM,
                where=(table.attempt == attempt,)):
            add_event(session, job_id, "cancelled after the last batch; no result kept", kind=TRANSFORM)
            return states.CANCELLED
    return LOST


def register(settings: Settings, job_id: str, attempt: int, *, arch: str, dim_in: int, dim_out: int,
             teacher: str | None, parameters: int, evaluation: dict[str, Any], artifact_key: str, epochs_run: int) -> str:
    """Register the version and mark the job succeeded in one transaction: exactly once per job.
    A cancel requested before this point wins (cancelled, no version). Returns the job's new
    status, or LOST if another attempt holds it."""
    not_cancelled = TrainingJob.cancel_requested_at.is_(None)
    for _ in range(5):  # a concurrent job of the same model may take our version number: try the next
        try:
            with session_scope(settings.database) as session:
                if not move(session, job_id, states.SUCCEEDED, only_from=[states.RUNNING],
                            where=(TrainingJob.attempt == attempt, not_cancelled)):
                    if move(session, job_id, states.CANCELLED, only_from=[states.RUNNING],
                            where=(TrainingJob.attempt == attempt,)):
                        add_event(session, job_id, "cancelled after training finished; no version registered")
                        return states.CANCELLED
                    return LOST
                job = session.get(TrainingJob, job_id)
                existing = session.scalar(select(ModelVersion).where(ModelVersion.source_job_id == job_id))
                version = existing or register_version(
                    session, job, arch=arch, dim_in=dim_in, dim_out=dim_out, teacher=teacher, parameters=parameters,
                    evaluation=evaluation, artifact_key=artifact_key)
                job.model_version_id = version.id
                job.epoch = max(job.epoch, epochs_run)
                add_event(session, job_id, f"succeeded: model {version.model_name} version {version.version}",
                          data={"model_version_id": version.id, "version": version.version})
                if existing is None:  # the gate's verdict, made by this registration
                    add_event(session, job_id, version.promotion["summary"],
                              level="info" if version.promotion["passed"] else "warning",
                              data={"promotion": version.promotion})
                if settings.test_hook_pause_before_register_commit:
                    session.flush()
                    log.warning("test hook: %s pausing before the registration commit", job_id)
                    time.sleep(settings.test_hook_pause_before_register_commit)
            return states.SUCCEEDED
        except IntegrityError:
            continue
    raise RuntimeError(f"could not register a version for job {job_id}")


def trial_done(settings: Settings, job_id: str, attempt: int, *, message: str, data: dict[str, Any]) -> bool:
    """A sweep's trial trained to its end: running -> succeeded (it registers no version). A cancel
    requested first wins. False if another attempt holds the job or it was cancelled."""
    with session_scope(settings.database) as session:
        if move(session, job_id, states.SUCCEEDED, only_from=[states.RUNNING],
                where=(TrainingJob.attempt == attempt, TrainingJob.cancel_requested_at.is_(None))):
            add_event(session, job_id, message, data=data)
            return True
        if move(session, job_id, states.CANCELLED, only_from=[states.RUNNING], where=(TrainingJob.attempt == attempt,)):
            add_event(session, job_id, "cancelled after its last epoch")
    return False


# ---- the periodic sweep ---------------------------------------------------------------------

@dataclass
class Recovery:
    requeued: list[str] = field(default_factory=list)   # running jobs whose worker stopped
    failed: list[str] = field(default_factory=list)     # ... that had used up their attempts
    resent: list[str] = field(default_factory=list)     # queued jobs whose message was lost

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.resent)


def recover(settings: Settings, enqueue: Enqueue, *, dead_workers: Iterable[str] = (),
            queue_depth: Callable[[str], int | None] = lambda device: None) -> Recovery:
    """One sweep over every kind of job; any number of workers may run it at once (each move is
    atomic, so a job is re-queued and re-sent by one of them).

    - A running job whose heartbeat is older than the lease, or whose worker is known dead
      (`dead_workers`: a previous incarnation on this host), goes back to `queued` and is sent
      again; the next claim resumes it (a training job from its last checkpoint, a transform job
      from its first row). After `max_attempts` it fails.
    - A queued job sent more than `resend_after_seconds` ago whose device queue holds no message
      (`queue_depth` 0, or unknown) lost its message (a broker restart, a worker killed between
      receiving and claiming): it is sent again. While messages wait, none is added."""
    out = Recovery()
    to_send: list[tuple[str, str, JobKind]] = []
    for kind in KINDS:
        _recover_kind(settings, kind, set(dead_workers), queue_depth, out, to_send)
    for job_id, device, kind in to_send:
        try:
            enqueue(kind.task, job_id, device=device)
        except Exception:  # the broker is down: the job stays queued and the next sweeps send it again
            log.warning("recovery could not send job %s; it stays queued", job_id, exc_info=True)
    return out


def _recover_kind(settings: Settings, kind: JobKind, dead_workers: set[str], queue_depth: Callable[[str], int | None],
                  out: Recovery, to_send: list[tuple[str, str, JobKind]]) -> None:
    job = kind.table
    now = time.time()
    dead = sorted(dead_workers)
    silent = [job.heartbeat_at.is_(None), job.heartbeat_at < now - settings.job_lease_seconds]
    stopped = or_(*silent, job.worker.in_(dead)) if dead else or_(*silent)
    with session_scope(settings.database) as session:
        running = list(session.execute(select(job.id, job.attempt, job.worker, job.heartbeat_at, job.device)
                                       .where(job.status == states.RUNNING, stopped)))
    for job_id, attempt, worker, beat, device in running:
        if worker in dead:
            why = f"its worker {worker} stopped (its process is gone)"
        else:
            why = f"its worker {worker} stopped (no heartbeat for {f'{now - beat:.0f} s' if beat else 'ever'})"
        with session_scope(settings.database) as session:
            if attempt >= settings.max_attempts:
                message = f"gave up after {attempt} attempt(s): {why}"
                if move(session, job_id, states.FAILED, only_from=[states.RUNNING], where=(stopped,), kind=kind,
                        error_code="too_many_attempts", error_message=message):
                    add_event(session, job_id, message, level="error", data={"reason": "worker_lost", "worker": worker},
                              kind=kind)
                    out.failed.append(job_id)
            elif move(session, job_id, states.QUEUED, only_from=[states.RUNNING], where=(stopped,), kind=kind, sent_at=now):
                add_event(session, job_id, f"{why}; queued again for attempt {attempt + 1}", level="warning",
                          data={"reason": "worker_lost", "worker": worker, "attempt": attempt}, kind=kind)
                out.requeued.append(job_id)
                to_send.append((job_id, device, kind))

    overdue = func.coalesce(job.sent_at, job.created_at) < now - settings.resend_after_seconds
    with session_scope(settings.database) as session:
        queued = list(session.execute(select(job.id, job.device).where(job.status == states.QUEUED, overdue)))
        live = workers.live_counts(session, settings)
    depths = {device: queue_depth(device) for device in {d for _, d in queued}}
    for job_id, device in queued:
        if depths[device] or not live.get(device):
            continue  # messages wait (or nobody serves the device yet): another would only pile up
        with session_scope(settings.database) as session:
            if session.execute(update(job).where(job.id == job_id, job.status == states.QUEUED,
                                                 overdue).values(sent_at=now)).rowcount == 1:
                add_event(session, job_id, f"no worker took the job within {settings.resend_after_seconds:g} s and its "
                          "queue is empty (the message was lost); sent again", level="warning",
                          data={"reason": "message_lost"}, kind=kind)
                out.resent.append(job_id)
                to_send.append((job_id, device, kind))
