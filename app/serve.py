"""Service processes: the API (uvicorn), a worker (Celery), migrations, and `cube up`, which runs
migrations, one worker process and the API together on the embedded default."""
from __future__ import annotations

import os
import signal
import subprocess  # nosec B404
import sys
from pathlib import Path

from app.settings import Settings, get_settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def migrate(settings: Settings) -> None:
    from app.migrate import upgrade

    if settings.database.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database)


def run_api(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """The API on host:port. With workers > 1, uvicorn runs that many processes on the one port (a
    supervisor restarts any that dies); each builds its app from the CUBE_* environment, with its own
    model cache and transform batcher, and alias moves reach every one within
    `transform_resolve_cache_seconds`."""
    import uvicorn

    from app.logging_config import log_config
    from app.main import create_app

    app = create_app(settings) if workers == 1 else "app.main:create_app"
    uvicorn.run(app, factory=workers > 1, workers=workers if workers > 1 else None, host=host, port=port,
                log_level=settings.log_level, log_config=log_config(settings.log_level), access_log=False)


def run_worker(concurrency: int, pool: str, max_tasks_per_child: int | None, loglevel: str, device: str = "cpu",
               parent_pid: int | None = None) -> None:
    """A Celery worker on the device's queue (training.cpu or training.cuda), named cube-<device>@host-pid.
    With `parent_pid` (`cube up`'s worker) it stops when that process is gone (`stop_with_parent`)."""
    from app.queue import device_queue
    from worker import celery_app

    settings = get_settings()
    argv = ["worker", "-Q", device_queue(settings, device), "-c", str(concurrency), "-P", pool, "-l", loglevel,
            "--without-gossip", "--without-mingle", "-n", f"cube-{device}@%h-{os.getpid()}"]
    if max_tasks_per_child:
        argv += ["--max-tasks-per-child", str(max_tasks_per_child)]
    if parent_pid is not None:
        stop_with_parent(parent_pid)
    celery_app.start(argv, device)


def banner(settings: Settings, host: str, port: int) -> str:
    # Bandit B104: "0.0.0.0" below picks the URL to print; nothing binds here.
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # nosec B104
    lines = [
        "cube service (embedded: SQLite, SQL broker, local storage)",
        f"  API       {base}/v1   docs {base}/docs   health {base}/readyz",
        f"  dashboard {base}/ui",
        f"  data dir  {settings.data_dir.resolve()}",
        f"  database  {settings.database}",
        f"  broker    {settings.broker}",
        "",
    ]
    if settings.require_auth:
        lines.append("  API keys required (Authorization: Bearer <key>): create one with `cube keys create --scope admin`")
    else:
        lines.append("  !!! AUTHENTICATION IS OFF: anyone who can reach this address can upload, train and transform. !!!")
        if host not in LOOPBACK:
            lines.append(f"  !!! and it listens on {host}, not only on this machine: use --host 127.0.0.1 unless you mean it !!!")
    return "\n".join(lines)


def quickstart_settings(settings: Settings, host: str) -> Settings:
    """`cube up` on a loopback host runs open (the embedded quickstart) unless CUBE_REQUIRE_AUTH was
    set explicitly; on any other host auth stays on."""
    if host in LOOPBACK and "require_auth" not in settings.model_fields_set:
        return settings.model_copy(update={"require_auth": False})
    return settings


def up(host: str, port: int, data_dir: str | None) -> int:
    """Migrations, one Celery worker process, then uvicorn in this process; Ctrl-C stops both."""
    if data_dir:
        os.environ["CUBE_DATA_DIR"] = str(Path(data_dir).resolve())  # the worker child reads it through Settings
        get_settings.cache_clear()
    settings = quickstart_settings(get_settings(), host)
    migrate(settings)
    print(banner(settings, host, port), flush=True)
    # Its own process group: the terminal's Ctrl-C reaches only `cube up`, which then stops the
    # worker and its pool children together (stop_worker), whatever state they are in.
    # Bandit B603/B404: our own worker, started from sys.executable with fixed arguments and no shell.
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--loglevel", "warning",  # nosec B603
                               "--parent-pid", str(os.getpid())], env=os.environ.copy(),
                              preexec_fn=die_with_parent if sys.platform == "linux" else None, start_new_session=True)
    # uvicorn shuts down on SIGTERM and then raises it again; by default that would end this
    # process before the `finally` below, leaving the worker behind. Exit cleanly instead.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        run_api(settings, host, port)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the worker's stop short
            signal.signal(sig, signal.SIG_IGN)
        stop_worker(worker)
    return 0


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)


def die_with_parent() -> None:
    """In the worker child (Linux): get SIGQUIT when `cube up` dies, even by SIGKILL, so no worker is
    left running without its API. SIGQUIT is Celery's cold shutdown: the pool children are stopped
    too, and the job they ran is resumed from its checkpoint by the next worker."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


def stop_with_parent(parent: int, every: float = 0.5, grace: float = 5.0) -> None:
    """In `cube up`'s worker: the parent-death signal comes once, and a worker still starting up can
    lose it (seen under load: an orphan that never stopped). So also watch: once this process is no
    longer `parent`'s child and has not ended within `grace` seconds (the time the signal's own cold
    shutdown gets), send Celery's cold shutdown (SIGQUIT; before Celery handles it, its default ends
    the process) again, every `grace` seconds until the process is gone."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        while True:
            time.sleep(grace)
            os.kill(os.getpid(), signal.SIGQUIT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def stop_worker(proc: subprocess.Popen, warm: float = 10.0, cold: float = 10.0) -> None:
    """Stop the worker and every process of its group, every time: SIGTERM (Celery's warm shutdown:
    an idle worker exits at once), then SIGQUIT (cold: running jobs are stopped and resume from
    their checkpoints later), then SIGKILL for whatever is left of the group (pool children too)."""
    for sig, grace in ((signal.SIGTERM, warm), (signal.SIGQUIT, cold)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group outlives its leader if a pool child was orphaned
    except ProcessLookupError:
        pass
    proc.wait()
