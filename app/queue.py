"""The queue boundary: task names, Celery configuration, and enqueueing by name.

The API enqueues a job id by task *name*, so the API process never imports training code; the
worker (`worker.celery_app`) registers functions under these names with the same configuration.
"""
from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES

from app.settings import Settings

TRAIN_TASK = "cube.train_job"
ENCODE_TASK = "cube.encode_dataset"
EVALUATE_TASK = "cube.evaluate_version"
TRANSFORM_TASK = "cube.transform_job"
DEVICES = ("cpu", "cuda")  # a job's device picks its queue; `cube worker --device` picks what a worker takes

TRANSPORT_ALIASES.setdefault("cubesqla", "app.sql_broker:Transport")


def broker_url(settings: Settings) -> str:
    url = settings.broker
    return "cubesqla+" + url.removeprefix("sqla+") if url.startswith("sqla+") else url


def device_queue(settings: Settings, device: str) -> str:
    """The queue of one device kind: training.cpu, training.cuda. Text encoding and evaluations run on CPU workers."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return f"{settings.training_queue}.{device}"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long training tasks; the reasons are in design/architecture.md."""
    transport: dict[str, Any] = {}
    url = broker_url(settings)
    if url.startswith(("redis://", "rediss://")):
        transport["visibility_timeout"] = settings.visibility_timeout
        if settings.broker_key_prefix:
            transport["global_keyprefix"] = settings.broker_key_prefix
    else:
        transport["polling_interval"] = settings.broker_polling_interval
    return {
        "broker_url": url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_ignore_result": True,  # state lives in SQL, never in a result backend
        "task_default_queue": device_queue(settings, "cpu"),
        "task_routes": {task: {"queue": device_queue(settings, "cpu")} for task in (ENCODE_TASK, EVALUATE_TASK)},
        "task_soft_time_limit": settings.job_soft_time_limit,
        "task_time_limit": settings.job_soft_time_limit + settings.job_time_limit_grace,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
    }


_clients: dict[tuple[str, str, str], Any] = {}


def producer(settings: Settings):
    """One producer app per broker URL/queue/prefix (Celery apps keep a connection pool)."""
    from celery import Celery

    key = (broker_url(settings), settings.training_queue, settings.broker_key_prefix)
    if key not in _clients:
        client = Celery("cube-api")
        client.conf.update(celery_config(settings))
        _clients[key] = client
    return _clients[key]


def enqueue(settings: Settings, task: str, *args: Any, device: str = "cpu") -> None:
    """Send `task(*args)` to the device's queue. Call only after the row it names is committed."""
    producer(settings).send_task(task, args=list(args), queue=device_queue(settings, device))


def queue_depth(settings: Settings, device: str, timeout: float = 2.0) -> int | None:
    """Messages waiting in the device's queue (not those a worker holds); None if the broker cannot say."""
    from kombu import Connection

    try:
        with Connection(broker_url(settings), transport_options=celery_config(settings)["broker_transport_options"],
                        connect_timeout=timeout) as conn:
            return conn.default_channel.queue_declare(device_queue(settings, device)).message_count
    except Exception:  # unreachable or unknown: recovery then treats the queue as empty
        return None


def broker_reachable(settings: Settings, timeout: float = 2.0) -> bool:
    from kombu import Connection

    try:
        with Connection(broker_url(settings), transport_options=celery_config(settings)["broker_transport_options"],
                        connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # any failure means "not ready"; /readyz reports it
        return False
