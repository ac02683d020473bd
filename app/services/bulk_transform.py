"""The bulk transform a worker runs for one transform job id: claim it, map its input through the
pinned model version batch by batch into a memory-mapped .npy, and hand the outcome to the lifecycle.

Memory stays bounded whatever the input's size: one batch of input and output at a time (the result
is written through a memory map). Each attempt works in `transform-jobs/<id>/attempts/<n>` (with an
object store: in its local workspace, with the model and the input staged beside it); a new
attempt (after its worker died, found by the recovery sweep) starts again from the first row. The
finished file is stored as `transform-jobs/<id>/result-<n>.npy` (the job records which) and the
attempts' directories go.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from app.db import session_scope
from app.jobs import lifecycle, states
from app.jobs.kinds import TRANSFORM
from app.jobs.lifecycle import Claim
from app.models import ModelVersion, TransformJob
from app.services.row_sources import TEXTS, SourceError, batches
from app.settings import Settings
from app.storage import get_storage

log = logging.getLogger("cube.worker")
PROGRESS_EVERY_SECONDS = 0.5  # progress (and the cancel check) at most this often: one small UPDATE each


class InputError(ValueError):
    """The input holds something the model cannot take (found only while reading it)."""


def job_dir(job_id: str) -> str:
    return f"transform-jobs/{job_id}"


def result_key(job_id: str, attempt: int) -> str:
    """Each attempt renames its own result into place: an attempt that lost the job (presumed dead,
    yet alive) can then remove what it wrote without touching the winner's file."""
    return f"{job_dir(job_id)}/result-{attempt}.npy"


def run_transform_job(settings: Settings, job_id: str, worker: str) -> Claim:
    """The whole job for one delivery. Returns the claim (anything but `claimed`: drop the message)."""
    claim = lifecycle.claim(settings, job_id, worker, kind=TRANSFORM)
    if claim.outcome != "claimed":
        log.info("transform job %s not claimed: %s", job_id, claim.outcome)
        return claim
    storage = get_storage(settings)
    with session_scope(settings.database) as session:
        job = session.get(TransformJob, job_id)
        version = session.get(ModelVersion, job.model_version_id)
        session.expunge_all()
    code, message = "transform_error", ""
    try:
        with storage.workspace(f"transform-{job_id}") as workspace:
            with lifecycle.Heartbeat(settings, job_id, claim.attempt, kind=TRANSFORM):
                written = transform_file(settings, job, version, storage.stage_tree(version.artifact_key, workspace),
                                         storage.stage(job.input_key, workspace),
                                         storage.workdir(f"{job_dir(job_id)}/attempts/{claim.attempt}", workspace),
                                         claim.attempt)
                if written is not None:
                    key, size = result_key(job_id, claim.attempt), written.stat().st_size
                    storage.put_file(written, key)
        if written is not None:
            status = lifecycle.complete(settings, job_id, claim.attempt, result_key=key, result_bytes=size,
                                        rows=job.num_rows)
            if status != states.SUCCEEDED:
                storage.delete(key)
            storage.delete(f"{job_dir(job_id)}/attempts" + ("" if status != lifecycle.LOST else f"/{claim.attempt}"))
            return claim
        code = None  # cancelled, or another attempt holds the job (then finishing is a no-op)
    except (SourceError, InputError) as exc:
        code, message = "invalid_input", getattr(exc, "message", str(exc))
    except Exception as exc:  # the job fails with the reason; the worker lives on
        log.exception("transform job %s failed", job_id)
        if type(exc).__name__ == "SoftTimeLimitExceeded":  # Celery's soft limit (not imported here)
            code, message = "time_limit", f"stopped at the time limit of {settings.job_soft_time_limit} s"
        else:
            message = f"{type(exc).__name__}: {exc}"
    if code is None:
        ended = lifecycle.finish(settings, job_id, claim.attempt, states.CANCELLED, message="cancelled while running",
                                 kind=TRANSFORM)
    else:
        ended = lifecycle.finish(settings, job_id, claim.attempt, states.FAILED, code=code, message=message,
                                 kind=TRANSFORM)
    # Ours ended the job: no attempt works any more. Else another attempt holds it: remove only ours.
    storage.delete(f"{job_dir(job_id)}/attempts" + ("" if ended else f"/{claim.attempt}"))
    return claim


def transform_file(settings: Settings, job: TransformJob, version: ModelVersion, model_dir: Path, source: Path,
                   workdir: Path, attempt: int) -> Path | None:
    """Write the job's result into `workdir`; the file's path, or None if the job was cancelled or
    lost to another attempt (the caller tells which by the lifecycle's answer)."""
    import torch

    from cube.artifacts import load_model
    from cube.multiteacher import served

    model, desc = load_model(model_dir)
    model = served(model, desc.get("metadata") or {})  # a multi-head model: its default head, dim_out wide
    encoder = text_encoder(version) if job.input_kind == TEXTS else None
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / "result.npy"
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32, shape=(job.num_rows, job.dim_out))
    done, started, reported = 0, time.monotonic(), 0.0
    with torch.inference_mode():
        for batch in batches(source, job.input_format, settings.transform_job_batch_rows, workdir):
            x = encoder(batch) if encoder is not None else batch
            check_batch(x, done, job)
            y = model(torch.from_numpy(np.ascontiguousarray(x))).numpy()
            if job.normalize:
                y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
            out[done:done + len(y)] = y
            done += len(y)
            now = time.monotonic()
            if now - reported >= PROGRESS_EVERY_SECONDS or done == job.num_rows:
                reported = now
                eta = time.time() + (now - started) * (job.num_rows - done) / done
                if lifecycle.record_rows(settings, job.id, attempt, done, eta) != lifecycle.CONTINUE:
                    del out
                    return None
    if done != job.num_rows:
        raise InputError(f"the input held {done} rows; {job.num_rows} were counted when the job was created")
    out.flush()
    del out
    return out_path


def check_batch(x: np.ndarray, first_row: int, job: TransformJob) -> None:
    if x.ndim != 2 or x.shape[1] != job.dim_in:
        raise InputError(f"row {first_row}: vectors of {x.shape[-1]} values; the model takes {job.dim_in}")
    if first_row + len(x) > job.num_rows:
        raise InputError(f"the input holds more than the {job.num_rows} rows counted when the job was created")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InputError(f"row {first_row + int(np.argmax(bad))} contains NaN or Inf (or overflows float32)")


def text_encoder(version: ModelVersion):
    """Texts -> the teacher's float32 vectors (the space the version was trained in)."""
    from cube.teachers import get_teacher

    teacher = get_teacher(version.teacher)
    return lambda texts: np.asarray(teacher.encode(list(texts)), dtype=np.float32)
