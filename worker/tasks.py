"""Celery tasks: thin envelopes that pass an id to one pipeline function in app.services."""
from __future__ import annotations

import os
import socket

from app.queue import ENCODE_TASK, TRAIN_TASK, enqueue
from app.settings import get_settings
from worker.celery_app import celery_app


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@celery_app.task(name=TRAIN_TASK, bind=True, max_retries=None)
def train_job(self, job_id: str) -> str:
    from app.services.training import run_job

    claim = run_job(get_settings(), job_id, worker_name())
    if claim.outcome == "busy":
        # Another worker holds a live lease on this job (a duplicate delivery): look again when it may have died.
        raise self.retry(countdown=claim.retry_in)
    return claim.outcome


@celery_app.task(name=ENCODE_TASK)
def encode_dataset(dataset_id: str) -> str:
    from app.services.encoding import encode_dataset as encode

    settings = get_settings()
    return encode(settings, dataset_id, lambda task, *args, countdown=None: enqueue(settings, task, *args, countdown=countdown))
