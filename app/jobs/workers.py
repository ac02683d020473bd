"""The worker registry: one row per running worker (its device kind and queue), refreshed by the
worker's main process every `heartbeat_seconds`. `/info` lists the kinds seen; job creation warns
when no live worker serves a job's device; recovery learns from it which workers on this host have
died (their process is gone), so their jobs are taken back at once instead of after the lease."""
from __future__ import annotations

import os
import socket
import time

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import Worker
from app.settings import Settings

FORGET_AFTER_SECONDS = 7 * 24 * 3600  # rows of workers gone this long are dropped


def host_id() -> str:
    """This machine and pid namespace: containers that share a hostname have separate pid spaces,
    so a pid means the same process only within one of them."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:  # a killed process its parent has not reaped yet is a zombie: gone all the same
        return ") Z " not in open(f"/proc/{pid}/stat").read()
    except OSError:
        return True


def beat(settings: Settings, name: str, device: str, queue: str, pid: int | None = None) -> None:
    """Insert or refresh this worker's row."""
    now = time.time()
    with session_scope(settings.database) as session:
        row = session.get(Worker, name)
        if row is None:
            session.add(Worker(name=name, device=device, queue=queue, host=host_id(), pid=pid or os.getpid(),
                               started_at=now, last_seen=now))
        else:
            row.last_seen = now


def unregister(settings: Settings, name: str) -> None:
    with session_scope(settings.database) as session:
        session.execute(delete(Worker).where(Worker.name == name))


def dead_on_this_host(settings: Settings) -> list[str]:
    """Workers registered from this host whose process is gone (killed, crashed): their rows are
    removed and their names returned, so recovery takes their jobs back now."""
    with session_scope(settings.database) as session:
        rows = list(session.execute(select(Worker.name, Worker.pid).where(Worker.host == host_id())))
        dead = [name for name, pid in rows if not process_alive(pid)]
        if dead:
            session.execute(delete(Worker).where(Worker.name.in_(dead)))
        session.execute(delete(Worker).where(Worker.last_seen < time.time() - FORGET_AFTER_SECONDS))
    return dead


def live_counts(session: Session, settings: Settings) -> dict[str, int]:
    """Workers per device kind seen within the lease."""
    since = time.time() - settings.job_lease_seconds
    return dict(session.execute(select(Worker.device, func.count()).where(Worker.last_seen >= since)
                                .group_by(Worker.device)).all())


def kinds_seen(session: Session, settings: Settings) -> dict[str, dict[str, float | int]]:
    """Per device kind: live workers now and when one was last seen (for /info)."""
    live = live_counts(session, settings)
    return {device: {"live_workers": live.get(device, 0), "last_seen": last}
            for device, last in session.execute(select(Worker.device, func.max(Worker.last_seen)).group_by(Worker.device))}
