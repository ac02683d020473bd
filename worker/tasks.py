"""Celery tasks: thin envelopes that pass an id to one pipeline function in app.services."""
from __future__ import annotations

from app.queue import ENCODE_TASK, EVALUATE_TASK, TRAIN_TASK, TRANSFORM_TASK, enqueue
from app.settings import get_settings
from worker.celery_app import celery_app


@celery_app.task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> str:
    from app.services.training import run_job

    # A duplicate delivery ("busy", "finished") is simply acknowledged: if the worker holding the
    # job dies, the recovery sweep re-queues it and sends a fresh message. The job records this
    # worker's node name (the registry's key), so a dead worker's jobs can be found.
    return run_job(get_settings(), job_id, self.request.hostname).outcome


@celery_app.task(name=ENCODE_TASK)
def encode_dataset(dataset_id: str) -> str:
    from app.services.encoding import encode_dataset as encode

    settings = get_settings()
    return encode(settings, dataset_id, lambda task, *args, device="cpu": enqueue(settings, task, *args, device=device))


@celery_app.task(name=EVALUATE_TASK)
def evaluate_version(evaluation_id: str) -> str:
    from app.services.evaluation_run import run_evaluation

    return run_evaluation(get_settings(), evaluation_id)


@celery_app.task(name=TRANSFORM_TASK, bind=True)
def transform_job(self, job_id: str) -> str:
    from app.services.bulk_transform import run_transform_job

    return run_transform_job(get_settings(), job_id, self.request.hostname).outcome
