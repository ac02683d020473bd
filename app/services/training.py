"""The training pipeline a worker runs for one job id: claim, train, register, finish.

    claim_job      atomic UPDATE ... WHERE id=? AND (queued, or running with a stale heartbeat) AND attempt < cap
    run_job        load the dataset, run cube.experiment.run_experiment with a ProgressRecorder, then
                   register exactly one model version and mark the job succeeded (or failed / cancelled)

At-least-once delivery, exactly-once effect: a duplicate message finds nothing to claim (or a live
heartbeat) and is dropped; a job whose worker died is re-sent by `recover_stale_jobs` once its lease
runs out, claimed again and resumed from its last checkpoint; `model_versions.source_job_id` is
unique. Celery is not imported here.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.jobs import states
from app.db import session_scope
from app.ids import new_id
from app.models import Dataset, JobCheckpoint, JobMetric, ModelVersion, TrainingJob
from app.jobs.lifecycle import add_event
from app.services.registry import register_version
from app.settings import Settings
from app.storage import LocalStorage, get_storage

log = logging.getLogger("cube.worker")


@dataclass
class Claim:
    outcome: str                 # claimed | gone | finished | busy (another worker holds a live lease) | exhausted
    attempt: int = 0


def claim_job(settings: Settings, job_id: str, worker: str) -> Claim:
    now = time.time()
    stale = now - settings.job_lease_seconds
    claimable = or_(
        TrainingJob.status == states.QUEUED,
        and_(TrainingJob.status == states.RUNNING, or_(TrainingJob.heartbeat_at.is_(None), TrainingJob.heartbeat_at < stale)),
    )
    with session_scope(settings.database) as session:
        result = session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, claimable, TrainingJob.attempt < settings.max_attempts)
            .values(status=states.RUNNING, attempt=TrainingJob.attempt + 1, worker=worker, heartbeat_at=now,
                    started_at=func.coalesce(TrainingJob.started_at, now))
            .execution_options(synchronize_session=False)
        )
        job = session.get(TrainingJob, job_id)
        if result.rowcount == 1:
            session.refresh(job)
            add_event(session, job_id, f"started on {worker} (attempt {job.attempt} of {settings.max_attempts})",
                      data={"attempt": job.attempt, "worker": worker})
            return Claim("claimed", job.attempt)
        if job is None:
            return Claim("gone")
        if job.status in states.TERMINAL or job.status == states.VALIDATING_FILES:
            return Claim("finished")
        if job.attempt >= settings.max_attempts and (job.status == states.QUEUED or
                                                     (job.heartbeat_at or 0) < stale):
            states.transition(job, states.FAILED)
            job.error_code = "too_many_attempts"
            job.error_message = f"gave up after {job.attempt} attempt(s): the worker running it stopped each time"
            add_event(session, job_id, job.error_message, level="error")
            return Claim("exhausted", job.attempt)
        return Claim("busy", job.attempt)


class Heartbeat:
    """Refreshes the job's heartbeat from a thread for as long as the pipeline runs (training,
    baselines, evaluation), so a live job is never presumed dead."""

    def __init__(self, settings: Settings, job_id: str, attempt: int):
        self.settings, self.job_id, self.attempt = settings, job_id, attempt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        period = max(0.2, self.settings.job_lease_seconds / 4)
        while not self._stop.wait(period):
            try:
                with session_scope(self.settings.database) as session:
                    session.execute(update(TrainingJob)
                                    .where(TrainingJob.id == self.job_id, TrainingJob.attempt == self.attempt,
                                           TrainingJob.status == states.RUNNING)
                                    .values(heartbeat_at=time.time()))
            except Exception:  # a missed beat is retried next period; the lease allows several
                log.warning("heartbeat for %s failed", self.job_id, exc_info=True)


def finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/Inf become None (PostgreSQL's JSON refuses them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return finite(obj.item())
    return obj


class ProgressRecorder:
    """The trainer callback: after every epoch, write progress, ETA, metrics, an event and the
    checkpoint list to SQL; then honour a cancel request by raising StopTraining."""

    def __init__(self, settings: Settings, storage: LocalStorage, job_id: str, attempt: int, checkpoint_key: str):
        self.settings, self.storage, self.job_id, self.attempt = settings, storage, job_id, attempt
        self.checkpoint_key = checkpoint_key
        self.epoch_seconds: list[float] = []
        self.lost_claim = False

    def on_epoch_end(self, report) -> None:
        from cube.trainer import StopTraining

        now = time.time()
        self.epoch_seconds.append(report.seconds)
        metrics = finite({"train_loss": report.train_loss, **{f"val_{k}": v for k, v in report.val.items()}})
        remaining = max(0, report.n_epochs - report.epoch)
        with session_scope(self.settings.database) as session:
            job = session.get(TrainingJob, self.job_id)
            if job is None or job.attempt != self.attempt or job.status != states.RUNNING:
                self.lost_claim = True  # another worker took the job over; stop without writing
                raise StopTraining()
            job.epoch, job.n_epochs, job.step, job.total_steps = report.epoch, report.n_epochs, report.step, report.total_steps
            job.metrics, job.heartbeat_at = metrics, now
            job.estimated_finish = now + remaining * sum(self.epoch_seconds) / len(self.epoch_seconds)
            for key, value in metrics.items():
                if value is not None:
                    session.add(JobMetric(job_id=job.id, key=key, value=value, step=report.step, epoch=report.epoch,
                                          timestamp=now))
            add_event(session, job.id, f"epoch {report.epoch}/{report.n_epochs}: train loss {report.train_loss:.4f}, "
                      f"val mrr {report.val.get('mrr', float('nan')):.4f}", type="metrics",
                      data={"epoch": report.epoch, "step": report.step, **metrics})
            self._sync_checkpoints(session, report.epoch, report.step, metrics)
            cancel = job.cancel_requested_at is not None
        if cancel:
            raise StopTraining()

    def should_stop(self) -> bool:
        """Between the experiment's later stages: a cancel request, or the claim lost to another worker."""
        with session_scope(self.settings.database) as session:
            job = session.get(TrainingJob, self.job_id)
            if job is None or job.attempt != self.attempt or job.status != states.RUNNING:
                self.lost_claim = True
                return True
            return job.cancel_requested_at is not None

    def _sync_checkpoints(self, session, epoch: int, step: int, metrics: dict) -> None:
        """One row per checkpoint directory that exists (the trainer keeps only the newest few)."""
        root = self.storage.local_path(self.checkpoint_key)
        on_disk = {int(p.name.split("-")[1]) for p in root.glob("epoch-*") if p.is_dir()}
        session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == self.job_id,
                                                    JobCheckpoint.epoch.not_in(on_disk or {-1})))
        known = set(session.scalars(select(JobCheckpoint.epoch).where(JobCheckpoint.job_id == self.job_id)))
        if epoch in on_disk and epoch not in known:
            session.add(JobCheckpoint(id=new_id("checkpoint"), job_id=self.job_id, epoch=epoch, step=step,
                                      storage_key=f"{self.checkpoint_key}/epoch-{epoch:04d}", metrics=metrics,
                                      created_at=time.time()))

    def log(self, message: str) -> None:
        log.info("%s: %s", self.job_id, message)


def load_pairs(dataset: Dataset, storage: LocalStorage, mode: str):
    """The dataset's embedding pairs as cube.PairData (autoencoder: the inputs are also the targets)."""
    from cube.pairs import PairData, load_pairs_npz

    path = storage.local_path(dataset.pairs_key)
    if dataset.pairs_key.endswith(".npz"):
        data = load_pairs_npz(path)
    else:
        from cube.pairs import load_pairs_file  # Parquet / JSONL embedding pairs (text-support work)

        data = load_pairs_file(path, fmt=dataset.format)
    if mode == "autoencoder":
        data = PairData(data.input, data.input.copy(), data.groups, data.difficulty)
    return data


def run_config(job: TrainingJob):
    from cube.config import RunConfig, SplitConfig, TrainConfig

    split = {k: v for k, v in job.split.items() if k != "split_by"}
    return RunConfig(arch=job.arch, model=dict(job.model_config_), train=TrainConfig.from_dict(dict(job.hyperparameters)),
                     split=SplitConfig.from_dict(split))


def run_job(settings: Settings, job_id: str, worker: str) -> Claim:
    """The whole job for one delivery. Returns the claim (anything but `claimed` means: drop the message)."""
    from cube.checkpoint import latest_checkpoint
    from cube.config import ConfigError
    from cube.experiment import ExperimentCancelled, run_experiment
    from cube.pairs import PairFileError

    claim = claim_job(settings, job_id, worker)
    if claim.outcome != "claimed":
        log.info("job %s not claimed: %s", job_id, claim.outcome)
        return claim
    storage = get_storage(settings)
    with session_scope(settings.database) as session:
        job = session.get(TrainingJob, job_id)
        dataset = session.get(Dataset, job.dataset_id)
        ckpt_key, run_key = f"jobs/{job_id}/checkpoints", f"jobs/{job_id}/run"
        ckpt = latest_checkpoint(storage.local_path(ckpt_key))
        if ckpt is not None and job.cancel_requested_at is None:
            epoch = int(ckpt.name.split("-")[1])
            add_event(session, job_id, f"resumed from epoch {epoch}", data={"resumed_from": epoch, "attempt": claim.attempt})
    if job.cancel_requested_at is not None:
        finish(settings, job_id, claim.attempt, states.CANCELLED, message="cancelled before training started")
        return claim
    recorder = ProgressRecorder(settings, storage, job_id, claim.attempt, ckpt_key)
    try:
        with Heartbeat(settings, job_id, claim.attempt):
            data = load_pairs(dataset, storage, job.mode)
            result = run_experiment(data, run_config(job), storage.local_path(run_key), callbacks=[recorder],
                                    checkpoint_dir=storage.local_path(ckpt_key), log=recorder.log,
                                    should_stop=recorder.should_stop)
    except ExperimentCancelled as exc:
        if not recorder.lost_claim:
            finish(settings, job_id, claim.attempt, states.CANCELLED, message=f"cancelled after {exc.epochs_run} epoch(s)")
        return claim
    except (PairFileError, ConfigError) as exc:
        finish(settings, job_id, claim.attempt, states.FAILED, code="invalid_input", message=getattr(exc, "message", str(exc)))
        return claim
    except Exception as exc:  # the job fails with the reason; the worker lives on
        log.exception("job %s failed", job_id)
        if type(exc).__name__ == "SoftTimeLimitExceeded":  # Celery's soft limit (not imported here)
            code, message = "time_limit", f"stopped at the time limit of {settings.job_soft_time_limit} s"
        else:
            code, message = "training_error", f"{type(exc).__name__}: {exc}"
        finish(settings, job_id, claim.attempt, states.FAILED, code=code, message=message)
        return claim
    register(settings, job_id, claim.attempt, result, f"{run_key}/model", dataset.teacher)
    return claim


def finish(settings: Settings, job_id: str, attempt: int, status: str, *, code: str | None = None, message: str) -> bool:
    """Move our claimed job to a terminal state; a no-op if another attempt owns it now."""
    with session_scope(settings.database) as session:
        job = session.get(TrainingJob, job_id, with_for_update=True)
        if job is None or job.attempt != attempt or not states.can_move(job.status, status):
            return False
        states.transition(job, status)
        if code:
            job.error_code, job.error_message = code, message
        add_event(session, job_id, message, level="error" if status == states.FAILED else "info")
        return True


def register(settings: Settings, job_id: str, attempt: int, result, artifact_key: str, teacher: str | None) -> None:
    """Register the version and mark the job succeeded in one transaction (exactly once per job)."""
    from cube.models import parameter_count

    evaluation = finite({k: v for k, v in result.report.items() if k != "history"})
    cfg = result.model_config
    for _ in range(5):  # a concurrent job of the same model may take our version number: try the next
        try:
            with session_scope(settings.database) as session:
                job = session.get(TrainingJob, job_id, with_for_update=True)
                if job is None or job.attempt != attempt or job.status != states.RUNNING:
                    return
                if job.cancel_requested_at is not None:  # asked to stop after the last check: honour it
                    states.transition(job, states.CANCELLED)
                    add_event(session, job_id, "cancelled after training finished; no version registered")
                    return
                existing = session.scalar(select(ModelVersion).where(ModelVersion.source_job_id == job_id))
                version = existing or register_version(
                    session, job, arch=result.report["main"], dim_in=cfg["d_in"], dim_out=cfg["d_out"], teacher=teacher,
                    parameters=parameter_count(result.model), evaluation=evaluation, artifact_key=artifact_key)
                states.transition(job, states.SUCCEEDED)
                job.model_version_id = version.id
                job.epoch = max(job.epoch, result.train_result.epochs_run)
                add_event(session, job_id, f"succeeded: model {version.model_name} version {version.version}",
                          data={"model_version_id": version.id, "version": version.version})
                if settings.test_hook_pause_before_register_commit:
                    session.flush()
                    log.warning("test hook: %s pausing before the registration commit", job_id)
                    time.sleep(settings.test_hook_pause_before_register_commit)
            return
        except IntegrityError:
            continue
    raise RuntimeError(f"could not register a version for job {job_id}")


def recover_stale_jobs(settings: Settings, enqueue: Callable[..., None]) -> list[str]:
    """Send another message for every running job whose heartbeat has stopped. Every worker runs
    this at start and then every half lease (`worker.celery_app`): it covers a worker killed outright
    (its message may be gone, e.g. with the SQL broker, or held by Redis until the visibility
    timeout). The claim makes the duplicates harmless: one wins, the rest find a live heartbeat."""
    from app.queue import TRAIN_TASK

    stale = time.time() - settings.job_lease_seconds
    with session_scope(settings.database) as session:
        ids = list(session.scalars(select(TrainingJob.id).where(
            TrainingJob.status == states.RUNNING,
            or_(TrainingJob.heartbeat_at.is_(None), TrainingJob.heartbeat_at < stale))))
    for job_id in ids:
        enqueue(TRAIN_TASK, job_id)
    return ids
