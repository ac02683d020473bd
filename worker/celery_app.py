"""The Celery application the workers run (`cube worker`, or `celery -A worker.celery_app worker`).

Configuration comes from `app.queue.celery_config` (the same the API sends with). The worker's main
process (no CUDA; torch only once it moves a sweep on) runs the one periodic place of the service: every `heartbeat_seconds` it
refreshes its row in the worker registry and runs the lifecycle's recovery sweep, which re-queues
jobs whose worker stopped and re-sends queued jobs whose message was lost; a second thread sends
due webhook deliveries (app/webhooks/delivery.py).
"""
from __future__ import annotations

import logging
import os
import threading

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from app.queue import celery_config, device_queue, enqueue, queue_depth
from app.settings import get_settings

log = logging.getLogger("cube.worker")

celery_app = Celery("cube-worker", include=["worker.tasks"])
celery_app.conf.update(celery_config(get_settings()))

_device = "cpu"  # what this worker process serves; `start` sets it
_stop = threading.Event()


def start(argv: list[str], device: str) -> None:
    """Run a worker that takes the `device` queue (argv as for `celery worker`)."""
    global _device
    from cube.teachers import configured_registry

    configured_registry()  # a broken CUBE_TEACHERS_FILE stops the worker now, not its first text job
    _device = device
    celery_app.worker_main(argv)


@worker_process_init.connect
def prepare_pool_process(**_) -> None:
    """In each pool child, before its first job: limit torch's threads and import the training code,
    so the first job does not pay for the imports. (CUDA and thread pools are never touched in the parent.)"""
    threads = get_settings().torch_threads
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    import app.services.bulk_transform  # noqa: F401
    import app.services.training  # noqa: F401
    import cube.experiment  # noqa: F401


@worker_ready.connect
def start_sweeper(sender, **_) -> None:
    """Register this worker and run the periodic sweep from a thread of the main process."""
    settings, name = get_settings(), sender.hostname
    queue = device_queue(settings, _device)
    from app.storage import get_storage

    for path in get_storage(settings).remove_abandoned_temp_files():
        log.warning("removed %s, left by a worker process of this host that died", path.name)

    def sweep_forever() -> None:
        from app.jobs import lifecycle, workers
        from app.services import sweeps

        send = lambda task, *args, device="cpu": enqueue(settings, task, *args, device=device)  # noqa: E731
        while True:
            try:
                workers.beat(settings, name, _device, queue, pid=os.getpid())
                recovery = lifecycle.recover(settings, send, dead_workers=workers.dead_on_this_host(settings),
                                             queue_depth=lambda device: queue_depth(settings, device))
                if recovery:
                    log.warning("recovery: re-queued %s, failed %s, re-sent %s", recovery.requeued, recovery.failed,
                                recovery.resent)
                sweeps.advance_open(settings, send)  # a sweep whose job ended unreported (cancelled, given up)
            except Exception:  # the database or broker may be down for a moment; try again next period
                log.exception("worker heartbeat / recovery sweep failed")
            if _stop.wait(settings.heartbeat_seconds):
                return

    def deliver_forever() -> None:
        from app.webhooks.delivery import deliver_due

        while True:
            try:
                deliver_due(settings)
            except Exception:  # as above: the next round tries again; each try is recorded
                log.exception("webhook delivery round failed")
            if _stop.wait(settings.webhook_poll_seconds):
                return

    threading.Thread(target=sweep_forever, name="recovery-sweep", daemon=True).start()
    # Its own thread: a slow endpoint (up to webhook_timeout_seconds a try) never delays the sweep.
    threading.Thread(target=deliver_forever, name="webhook-delivery", daemon=True).start()


@worker_shutdown.connect
def hand_back_and_leave(sender=None, **_) -> None:
    """After the pool has stopped (a cold shutdown stops running jobs): send this worker's jobs back
    to the queue at once, to resume from their checkpoints elsewhere, and leave the registry. (A
    killed worker is found by its host's next worker, or by the lease.)"""
    _stop.set()
    if sender is None:
        return
    from app.jobs import lifecycle, workers

    settings = get_settings()
    send = lambda task, *args, device="cpu": enqueue(settings, task, *args, device=device)  # noqa: E731
    try:
        handed = lifecycle.recover(settings, send, dead_workers=[sender.hostname])
        if handed:
            log.warning("stopping: handed back %s", handed.requeued + handed.failed)
        workers.unregister(settings, sender.hostname)
    except Exception:  # the database may be gone: the lease and the registry's age cover it
        log.warning("could not hand back jobs or leave the worker registry", exc_info=True)


app = celery_app  # `celery -A worker.celery_app` finds `app`
