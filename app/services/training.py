"""The training pipeline a worker runs for one job id: claim it, load the data, run the experiment,
and report every outcome to the lifecycle (`app.jobs.lifecycle`), which makes every status write.

Each attempt works in its own directories, `jobs/<id>/attempts/<n>/{checkpoints,run}`, so an old
attempt that is slow but alive never writes where a new one works; the new attempt resumes from the
newest checkpoint the lifecycle recorded, whichever attempt wrote it. All of it goes through the
storage (app.storage): each checkpoint is stored before the lifecycle records it, so a worker on
another host can resume from it, and the run directory is stored before the version is registered.
Celery is not imported here.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select

from app.db import session_scope
from app.jobs import lifecycle, states
from app.jobs.lifecycle import Claim
from app.models import Dataset, Sweep, TrainingJob, teacher_names
from app.services import auto_search, sweeps
from app.settings import Settings
from app.storage import Storage, get_storage

log = logging.getLogger("cube.worker")
Enqueue = Callable[..., None]


def attempt_key(job_id: str, attempt: int, part: str) -> str:
    """Where one attempt of a job keeps its `checkpoints` and its `run` (model, report)."""
    return f"jobs/{job_id}/attempts/{attempt}/{part}"


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
    """The trainer callback: after every epoch, hand progress, ETA, metrics and the checkpoints the
    trainer wrote and deleted to the lifecycle; stop (StopTraining) on a cancel request or when
    another attempt holds the job."""

    def __init__(self, settings: Settings, storage: Storage, job_id: str, attempt: int):
        self.settings, self.storage, self.job_id, self.attempt = settings, storage, job_id, attempt
        self.checkpoint_key = attempt_key(job_id, attempt, "checkpoints")
        self.epoch_seconds: list[float] = []
        self.lost_claim = False

    def on_epoch_end(self, report) -> None:
        from cube.trainer import StopTraining

        self.epoch_seconds.append(report.seconds)
        metrics = finite({"train_loss": report.train_loss, **{f"val_{k}": v for k, v in report.val.items()}})
        remaining = max(0, report.n_epochs - report.epoch)
        checkpoint_key = f"{self.checkpoint_key}/{report.checkpoint.name}" if report.checkpoint else None
        if checkpoint_key:  # stored before it is recorded: a recorded checkpoint is whole in the store
            self.storage.put_tree(report.checkpoint, checkpoint_key)
        removed_keys = [f"{self.checkpoint_key}/{p.name}" for p in report.removed_checkpoints]
        record = lifecycle.EpochRecord(
            epoch=report.epoch, n_epochs=report.n_epochs, step=report.step, total_steps=report.total_steps,
            metrics=metrics, estimated_finish=time.time() + remaining * sum(self.epoch_seconds) / len(self.epoch_seconds),
            message=f"epoch {report.epoch}/{report.n_epochs}: train loss {report.train_loss:.4f}, "
                    f"val mrr {report.val.get('mrr', float('nan')):.4f}",
            checkpoint_key=checkpoint_key, removed_keys=removed_keys)
        outcome = lifecycle.record_epoch(self.settings, self.job_id, self.attempt, record)
        for key in removed_keys:  # the trainer removed its local copies; no row names these any more
            self.storage.delete(key)
        if self._stop(outcome):
            raise StopTraining()

    def should_stop(self) -> bool:
        """Between the experiment's later stages: a cancel request, or the job lost to another attempt."""
        return self._stop(lifecycle.should_stop(self.settings, self.job_id, self.attempt))

    def _stop(self, outcome: str) -> bool:
        self.lost_claim = outcome == lifecycle.LOST
        return outcome != lifecycle.CONTINUE

    def log(self, message: str) -> None:
        log.info("%s: %s", self.job_id, message)


def resume_from(settings: Settings, storage: Storage, job_id: str, attempt: int, workspace: Path) -> Path | None:
    """The newest recorded checkpoint of the job (any earlier attempt's, from any host), staged into
    `workspace`, if its files are whole."""
    from cube.checkpoint import is_checkpoint

    row = lifecycle.resume_point(settings, job_id)
    if row is None:
        return None
    try:
        path = storage.stage_tree(row.storage_key, workspace)
    except FileNotFoundError:
        path = None
    if path is None or not is_checkpoint(path):
        log.warning("job %s: checkpoint %s is recorded but not stored; starting afresh", job_id, row.storage_key)
        return None
    lifecycle.note(settings, job_id, f"resumed from epoch {row.epoch}", resumed_from=row.epoch, attempt=attempt)
    return path


def load_pairs(dataset: Dataset, storage: Storage, mode: str, workspace: Path):
    """The dataset's embedding pairs as cube.PairData (autoencoder: the inputs are also the targets)."""
    from cube.pairs import PairData, load_pairs_file, load_pairs_npz

    path = storage.stage(dataset.pairs_key, workspace)
    data = load_pairs_npz(path) if dataset.pairs_key.endswith(".npz") else load_pairs_file(path, fmt=dataset.format)
    if mode == "autoencoder":
        data = PairData(data.input, data.input.copy(), data.groups, data.difficulty)
    return data


def run_config(job: TrainingJob):
    from cube.config import RunConfig, SplitConfig, TrainConfig

    split = {k: v for k, v in job.split.items() if k != "split_by"}
    return RunConfig(arch=job.arch, mode=job.mode, model=dict(job.model_config_), train=TrainConfig.from_dict(dict(job.hyperparameters)),
                     split=SplitConfig.from_dict(split))


def run_job(settings: Settings, job_id: str, worker: str, enqueue: Enqueue | None = None) -> Claim:
    """The whole job for one delivery. Returns the claim (anything but `claimed` means: drop the message).
    A sweep's job then moves its sweep on (`enqueue` sends the jobs that queues; default: the broker)."""
    claim = _run_job(settings, job_id, worker)
    if claim.outcome == "claimed":
        with session_scope(settings.database) as session:
            sweep_id = session.scalar(select(TrainingJob.sweep_id).where(TrainingJob.id == job_id))
        if sweep_id is not None:
            sweeps.advance(settings, sweep_id, enqueue or broker_enqueue(settings))
    return claim


def broker_enqueue(settings: Settings) -> Enqueue:
    from app.queue import enqueue

    return lambda task, *args, device="cpu": enqueue(settings, task, *args, device=device)


def _run_job(settings: Settings, job_id: str, worker: str) -> Claim:
    from cube.config import ConfigError
    from cube.experiment import ExperimentCancelled
    from cube.pairs import PairFileError

    claim = lifecycle.claim(settings, job_id, worker)
    if claim.outcome != "claimed":
        log.info("job %s not claimed: %s", job_id, claim.outcome)
        return claim
    storage = get_storage(settings)
    with session_scope(settings.database) as session:
        job = session.get(TrainingJob, job_id)
        dataset = session.get(Dataset, job.dataset_id)
        sweep = session.get(Sweep, job.sweep_id) if job.sweep_id else None
    if job.cancel_requested_at is not None:
        lifecycle.finish(settings, job_id, claim.attempt, states.CANCELLED, message="cancelled before training started")
        return claim
    if sweep is not None and sweep.status != sweeps.RUNNING:  # e.g. cancelled while this trial was being queued
        lifecycle.finish(settings, job_id, claim.attempt, states.CANCELLED, message=f"its sweep {sweep.id} is {sweep.status}")
        return claim
    run_key, checkpoint_key = attempt_key(job_id, claim.attempt, "run"), attempt_key(job_id, claim.attempt, "checkpoints")
    recorder = ProgressRecorder(settings, storage, job_id, claim.attempt)
    try:
        with lifecycle.Heartbeat(settings, job_id, claim.attempt), storage.workspace(f"job-{job_id}") as workspace:
            data = load_pairs(dataset, storage, job.mode, workspace)
            checkpoint_dir = storage.workdir(checkpoint_key, workspace)
            resume = resume_from(settings, storage, job_id, claim.attempt, workspace)
            if job.sweep_role == "trial":
                run_trial(settings, job, sweep, data, recorder, checkpoint_dir, resume, claim.attempt)
                return claim
            run, searched = run_config(job), None
            if job.auto_search:  # "auto" values: a built-in search picks them first (app.services.auto_search)
                run, searched = auto_search.search(settings, job, data, run, should_stop=recorder.should_stop,
                                                   note=lambda message: lifecycle.note(settings, job_id, message))
            run_dir = storage.workdir(run_key, workspace)
            result = experiment(dataset, data, run, run_dir, callbacks=[recorder], checkpoint_dir=checkpoint_dir,
                                resume_from=resume, log=recorder.log, should_stop=recorder.should_stop)
            storage.put_tree(run_dir, run_key)
    except ExperimentCancelled as exc:
        if not recorder.lost_claim:
            lifecycle.finish(settings, job_id, claim.attempt, states.CANCELLED,
                             message=f"cancelled after {exc.epochs_run} epoch(s)")
        return claim
    except (PairFileError, ConfigError) as exc:
        lifecycle.finish(settings, job_id, claim.attempt, states.FAILED, code="invalid_input",
                         message=getattr(exc, "message", str(exc)))
        return claim
    except Exception as exc:  # the job fails with the reason; the worker lives on
        log.exception("job %s failed", job_id)
        if type(exc).__name__ == "SoftTimeLimitExceeded":  # Celery's soft limit (not imported here)
            code, message = "time_limit", f"stopped at the time limit of {settings.job_soft_time_limit} s"
        else:
            code, message = "training_error", f"{type(exc).__name__}: {exc}"
        lifecycle.finish(settings, job_id, claim.attempt, states.FAILED, code=code, message=message)
        return claim
    if job.sweep_role == "final":  # the version records the search that chose it
        result.report["sweep"] = sweeps.evidence(settings, job.sweep_id)
    if searched:
        result.report["auto_search"] = searched
    register(settings, job_id, claim.attempt, result, f"{run_key}/model", dataset.teacher)
    return claim


def experiment(dataset: Dataset, data, run, run_dir: Path, **options):
    """The experiment a dataset calls for: one model with a read-out head per target teacher when it
    has several (cube.distillation, inputs in the dataset's teacher's space), else the ordinary one."""
    from cube.config import ConfigError
    from cube.experiment import run_experiment

    names = teacher_names(dataset.target_teacher)
    if len(names) < 2:
        return run_experiment(data, run, run_dir, **options)
    from cube.distillation import run_multi_teacher
    from cube.multiteacher import make_heads
    from cube.teachers import configured_registry

    specs = {name: configured_registry().get(name) for name in names}
    missing = [name for name, spec in specs.items() if spec is None]
    if missing:
        raise ConfigError(f"target teacher(s) {', '.join(missing)} of dataset {dataset.id} are no longer configured")
    heads = make_heads([(name, spec.dim) for name, spec in specs.items()])
    return run_multi_teacher(data, heads, run, run_dir, input_space=dataset.teacher, **options)


def run_trial(settings: Settings, job: TrainingJob, sweep: Sweep, data, recorder: ProgressRecorder,
              checkpoint_dir: Path, resume: Path | None, attempt: int) -> None:
    """One trial of a sweep: train on the training split, report each epoch's validation score to
    the study's pruner, and tell the study how it ended (complete with its best score, pruned, or
    failed on a cancel). The job succeeds without a version, or ends cancelled when pruned."""
    from cube.pairs import split_pairs
    from cube.sweep import PruningReporter, train_trial

    run = run_config(job)
    pruning = PruningReporter(sweeps.optuna_trial(settings, job, sweep), run.train.monitor)
    _, result = train_trial(data, split_pairs(data, run.split), run, callbacks=[recorder, pruning],
                            checkpoint_dir=checkpoint_dir, resume_from=resume)
    if recorder.lost_claim:
        return
    number, objective = job.trial_number, sweep.objective
    if pruning.pruned:
        sweeps.tell(settings, sweep, number, state="pruned")
        lifecycle.finish(settings, job.id, attempt, states.CANCELLED,
                         message=f"pruned by the {sweep.pruner['kind']} pruner after epoch {result.epochs_run} "
                                 f"({objective} {result.history[-1][f'val_{run.train.monitor}']:.4f})")
    elif result.cancelled:
        sweeps.tell(settings, sweep, number, state="fail")
        lifecycle.finish(settings, job.id, attempt, states.CANCELLED, message=f"cancelled after {result.epochs_run} epoch(s)")
    else:
        sweeps.tell(settings, sweep, number, value=float(result.best_score))
        lifecycle.trial_done(settings, job.id, attempt, data={"value": result.best_score, "best_epoch": result.best_epoch},
                             message=f"trial {number} finished: {objective} {result.best_score:.4f} at epoch "
                                     f"{result.best_epoch}")


def register(settings: Settings, job_id: str, attempt: int, result, artifact_key: str, teacher: str | None) -> str:
    """Hand the finished experiment to the lifecycle: one model version, the job succeeded."""
    from cube.models import parameter_count

    cfg, heads = result.model_config, result.report.get("heads")
    # A multi-head model serves its first head's space unless a request names another (target_space).
    dim_out = heads[0]["dim"] if heads else cfg["d_out"]
    return lifecycle.register(
        settings, job_id, attempt, arch=result.report["model"]["arch"], dim_in=cfg["d_in"], dim_out=dim_out, teacher=teacher,
        parameters=parameter_count(result.model), evaluation=finite({k: v for k, v in result.report.items() if k != "history"}),
        artifact_key=artifact_key, epochs_run=result.train_result.epochs_run)
