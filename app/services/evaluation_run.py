"""The worker's side of an evaluation: claim it, score the version on the dataset's every pair beside
the baselines (`cube.held_out`), store the result. Celery is not imported here.

An evaluation moves queued -> running -> succeeded | failed, each move one atomic UPDATE. A message
delivered again (its worker died: Celery re-queues it) claims the evaluation afresh, up to
`max_attempts`; the final write is made only by the attempt that holds it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import update

from app.db import session_scope
from app.models import Dataset, ModelEvaluation, ModelVersion, TrainingJob
from app.services.training import finite, load_pairs, run_config
from app.settings import Settings
from app.storage import Storage, get_storage

log = logging.getLogger("cube.worker")

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


class EvaluationFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def claim(settings: Settings, evaluation_id: str) -> int | None:
    """The attempt number this delivery runs, or None if there is nothing (left) to do."""
    with session_scope(settings.database) as session:
        moved = session.execute(update(ModelEvaluation).where(
            ModelEvaluation.id == evaluation_id, ModelEvaluation.status.in_((QUEUED, RUNNING)),
            ModelEvaluation.attempt < settings.max_attempts,
        ).values(status=RUNNING, attempt=ModelEvaluation.attempt + 1, started_at=time.time())).rowcount == 1
        if moved:
            return session.get(ModelEvaluation, evaluation_id).attempt
        # Delivered again after its last allowed attempt: that attempt's worker stopped too.
        session.execute(update(ModelEvaluation).where(
            ModelEvaluation.id == evaluation_id, ModelEvaluation.status == RUNNING,
        ).values(status=FAILED, finished_at=time.time(), error_code="too_many_attempts",
                 error_message=f"gave up after {settings.max_attempts} attempt(s): its worker stopped each time"))
        return None


def finish(settings: Settings, evaluation_id: str, attempt: int, **values) -> bool:
    with session_scope(settings.database) as session:
        return session.execute(update(ModelEvaluation).where(
            ModelEvaluation.id == evaluation_id, ModelEvaluation.attempt == attempt, ModelEvaluation.status == RUNNING,
        ).values(finished_at=time.time(), **values)).rowcount == 1


def run_evaluation(settings: Settings, evaluation_id: str) -> str:
    """The whole evaluation for one delivery; returns its status afterwards (or "skipped")."""
    attempt = claim(settings, evaluation_id)
    if attempt is None:
        return "skipped"
    try:
        storage = get_storage(settings)
        with storage.workspace(f"evaluation-{evaluation_id}") as workspace:
            result = evaluate(settings, storage, evaluation_id, workspace)
    except EvaluationFailed as exc:
        finish(settings, evaluation_id, attempt, status=FAILED, error_code=exc.code, error_message=exc.message)
        return FAILED
    except Exception as exc:  # the evaluation fails with the reason; the worker lives on
        log.exception("evaluation %s failed", evaluation_id)
        finish(settings, evaluation_id, attempt, status=FAILED, error_code="evaluation_error",
               error_message=f"{type(exc).__name__}: {exc}")
        return FAILED
    finish(settings, evaluation_id, attempt, status=SUCCEEDED, result=finite(result))
    return SUCCEEDED


def evaluate(settings: Settings, storage: Storage, evaluation_id: str, workspace: Path) -> dict:
    """The held-out evaluation, with the model and the datasets staged into `workspace`."""
    from cube.artifacts import ArtifactError, load_model
    from cube.held_out import evaluate_held_out
    from cube.pairs import PairFileError, split_pairs
    from cube.trainer import predict

    with session_scope(settings.database) as session:
        ev = session.get(ModelEvaluation, evaluation_id)
        version = session.get(ModelVersion, ev.version_id)
        job = session.get(TrainingJob, version.source_job_id)
        dataset = session.get(Dataset, ev.dataset_id)
        trained_on = session.get(Dataset, job.dataset_id)
    if dataset is None or dataset.pairs_key is None or not storage.exists(dataset.pairs_key):
        raise EvaluationFailed("dataset_gone", f"dataset {ev.dataset_id} was deleted before it could be evaluated on")
    try:
        model, _ = load_model(storage.stage_tree(version.artifact_key, workspace))
    except (ArtifactError, OSError) as exc:
        raise EvaluationFailed("model_unavailable", f"model version {version.id} cannot be loaded: {exc}") from None
    try:
        held_out = load_pairs(dataset, storage, job.mode, workspace)
        train = val = None
        if trained_on is not None and trained_on.pairs_key and storage.exists(trained_on.pairs_key):
            data = load_pairs(trained_on, storage, job.mode, workspace)
            split = split_pairs(data, run_config(job).split)
            tr, va = data.subset(split.train), data.subset(split.val)
            train, val = (tr.input, tr.target), (va.input, va.target)
    except PairFileError as exc:
        raise EvaluationFailed("invalid_input", getattr(exc, "message", str(exc))) from None
    result = evaluate_held_out(lambda x: predict(model, x), version.arch, held_out, train, val,
                               code_size=job.model_config_.get("code_size"))
    return {**result, "model": version.model_name, "version": version.version, "dataset_id": dataset.id}
