"""The worker's Celery configuration, its task names, and the import direction (worker -> app -> cube)."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from app.queue import ENCODE_TASK, EVALUATE_TASK, TRAIN_TASK, broker_url, celery_config
from app.settings import Settings


def test_long_task_settings():
    conf = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0", visibility_timeout=1234, broker_key_prefix="p:"))
    assert conf["task_acks_late"] is True and conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is True
    assert conf["task_ignore_result"] is True
    assert conf["broker_transport_options"] == {"visibility_timeout": 1234, "global_keyprefix": "p:"}
    assert conf["task_time_limit"] > conf["task_soft_time_limit"]


def test_embedded_broker_polls_quickly(tmp_path):
    s = Settings(data_dir=tmp_path, broker_polling_interval=0.1)
    assert broker_url(s).startswith("cubesqla+sqlite:///")
    assert celery_config(s)["broker_transport_options"] == {"polling_interval": 0.1}


def test_tasks_are_registered_under_the_shared_names():
    import worker.tasks  # noqa: F401  (the worker imports it at start through `include`)
    from worker.celery_app import celery_app

    assert {TRAIN_TASK, ENCODE_TASK, EVALUATE_TASK} <= set(celery_app.tasks)
    assert celery_app.conf.task_acks_late is True


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_api_never_imports_the_worker():
    out = run_python("import sys, app.main; app.main.create_app(); print(any(m == 'worker' or m.startswith('worker.') for m in sys.modules))")
    assert out == "False"


def test_cube_imports_nothing_from_the_service():
    out = run_python("import sys, cube, cube.commands; "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'worker', 'fastapi', 'celery', 'sqlalchemy')))")
    assert out == "[]"


def test_offline_cli_does_not_load_the_web_stack():
    out = run_python("import sys, app.cli; app.cli.build_parser(); "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'celery', 'sqlalchemy', 'uvicorn')))")
    assert out == "[]"


@pytest.mark.parametrize("broker", ["sql", "redis"])
def test_jobs_go_to_their_device_queue_and_its_depth_is_counted(broker, tmp_path, request):
    """What recovery asks before re-sending a queued job: how many messages wait in its queue."""
    from app.queue import enqueue, queue_depth

    tag = uuid.uuid4().hex[:10]
    if broker == "redis":
        s = Settings(data_dir=tmp_path, broker_url=request.getfixturevalue("redis_available"),
                     broker_key_prefix=f"cube-test-{tag}:", training_queue=f"training-{tag}")
    else:
        s = Settings(data_dir=tmp_path)
    try:
        assert queue_depth(s, "cuda") == 0
        enqueue(s, TRAIN_TASK, "job_a", device="cuda")
        enqueue(s, TRAIN_TASK, "job_b", device="cuda")
        assert (queue_depth(s, "cuda"), queue_depth(s, "cpu")) == (2, 0)
    finally:
        if broker == "redis":
            import redis

            r = redis.Redis.from_url(s.broker)
            keys = list(r.scan_iter(match=f"cube-test-{tag}:*"))
            if keys:
                r.delete(*keys)
    assert queue_depth(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0"), "cpu") is None  # unreachable


def test_cube_worker_takes_its_devices_queue(monkeypatch):
    from app.cli import main
    from worker import celery_app

    seen = {}
    monkeypatch.setattr(celery_app, "start", lambda argv, device: seen.update(argv=argv, device=device))
    assert main(["worker", "--device", "cuda"]) == 0
    argv = seen["argv"]
    assert seen["device"] == "cuda" and argv[argv.index("-Q") + 1] == "training.cuda"
    assert argv[argv.index("-n") + 1].startswith("cube-cuda@")
