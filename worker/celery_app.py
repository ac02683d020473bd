"""The Celery application the workers run (`cube worker`, or `celery -A worker.celery_app worker`).

Configuration comes from `app.queue.celery_config` (the same the API sends with). At start the
worker re-sends, then every half lease, the jobs left `running` by a worker that stopped.
"""
from __future__ import annotations

import logging
import threading
import time

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from app.queue import celery_config, enqueue
from app.settings import get_settings

log = logging.getLogger("cube.worker")

celery_app = Celery("cube-worker", include=["worker.tasks"])
celery_app.conf.update(celery_config(get_settings()))


@worker_process_init.connect
def prepare_pool_process(**_) -> None:
    """In each pool child, before its first job: limit torch's threads and import the training code,
    so the first job does not pay for the imports. (CUDA and thread pools are never touched in the parent.)"""
    threads = get_settings().torch_threads
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    import app.services.training  # noqa: F401
    import cube.experiment  # noqa: F401


@worker_ready.connect
def start_stale_job_sweeper(**_) -> None:
    """In the worker's main process (no torch, no CUDA): at start and every half lease, re-send jobs
    whose worker stopped sending heartbeats."""
    settings = get_settings()

    def sweep_forever() -> None:
        from app.services.training import recover_stale_jobs

        period = max(1.0, settings.job_lease_seconds / 2)
        while True:
            try:
                found = recover_stale_jobs(settings, lambda task, *args: enqueue(settings, task, *args))
                if found:
                    log.warning("re-enqueued %d job(s) whose worker stopped: %s", len(found), ", ".join(found))
            except Exception:  # the database or broker may be down for a moment; try again next period
                log.exception("stale-job sweep failed")
            time.sleep(period)

    threading.Thread(target=sweep_forever, name="stale-job-sweeper", daemon=True).start()


app = celery_app  # `celery -A worker.celery_app` finds `app`
