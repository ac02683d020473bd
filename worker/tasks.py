"""Celery tasks: thin envelopes that pass an id to one pipeline function in app.services."""
from __future__ import annotations

import os
import socket

from app.queue import ENCODE_TASK, TRAIN_TASK, enqueue
from app.settings import get_settings
from worker.celery_app import celery_app


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@celery_app.task(name=TRAIN_TASK)
def train_job(job_id: str) -> str:
    from app.services.training import run_job

    # A duplicate delivery ("busy", "finished") is simply acknowledged: if the worker holding the
    # job dies, the stale-job sweep sends a fresh message once its lease runs out.
    return run_job(get_settings(), job_id, worker_name()).outcome


@celery_app.task(name=ENCODE_TASK)
def encode_dataset(dataset_id: str) -> str:
    from app.services.encoding import encode_dataset as encode

    settings = get_settings()
    return encode(settings, dataset_id, lambda task, *args, countdown=None: enqueue(settings, task, *args, countdown=countdown))
