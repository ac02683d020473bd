"""The Celery application the workers run (`cube worker`, or `celery -A worker.celery_app worker`).

Configuration comes from `app.queue.celery_config` (the same the API sends with). At start the
worker re-enqueues jobs left `running` by a worker that died, due when their lease runs out.
"""
from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from app.queue import celery_config, enqueue
from app.settings import get_settings

log = logging.getLogger("cube.worker")

celery_app = Celery("cube-worker", include=["worker.tasks"])
celery_app.conf.update(celery_config(get_settings()))


@worker_process_init.connect
def limit_torch_threads(**_) -> None:
    # In the pool child, before any training: CUDA and thread pools are never touched in the parent.
    threads = get_settings().torch_threads
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


@worker_ready.connect
def recover_jobs_of_dead_workers(**_) -> None:
    from app.services.training import recover_stale_jobs

    settings = get_settings()
    try:
        found = recover_stale_jobs(settings, lambda task, *args, countdown=None: enqueue(settings, task, *args, countdown=countdown))
    except Exception:  # the database may be down at start; jobs are then recovered by the next worker start
        log.exception("could not look for jobs of dead workers")
        return
    if found:
        log.warning("re-enqueued %d job(s) left running by a worker that stopped: %s", len(found), ", ".join(found))


app = celery_app  # `celery -A worker.celery_app` finds `app`
