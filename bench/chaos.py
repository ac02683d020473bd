"""Chaos: 100 small jobs on PostgreSQL + Redis with 2 workers, while Redis is restarted twice and
one worker is killed -9 once (and started again at once, as a supervisor would).

    .venv/bin/python bench/chaos.py [--jobs 100] [--deadline 480]

Runs on a private `redis-server` and a private PostgreSQL cluster on free ports
(tests/e2e/private_servers.py), never on the shared servers, since it restarts them. The API runs in
this process; the workers are real `cube worker` processes with the service's default settings
(lease, attempts), so the recovery time measured is the one a deployment gets.

Prints: jobs succeeded, model versions, duplicates (jobs with more than one version), stuck jobs
(not finished at the deadline), and the seconds from the kill to the killed worker's job running
again (its next claim; also to its first recovery event), from the job's event times in SQL.
Targets (issue 8): 100, 100, 0, 0, < 60 s.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import TINY_CUBE  # noqa: E402
from tests.e2e.private_servers import PrivatePostgres, PrivateRedis  # noqa: E402


def jobs_by_id(db_url: str, ids) -> dict:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import TrainingJob

    with session_scope(db_url) as session:
        rows = session.execute(select(TrainingJob.id, TrainingJob.status, TrainingJob.attempt, TrainingJob.worker,
                                      TrainingJob.error_message).where(TrainingJob.id.in_(list(ids))))
        return {r.id: r for r in rows}


def versions_per_job(db_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import ModelVersion

    with session_scope(db_url) as session:
        return dict(session.execute(select(ModelVersion.source_job_id, func.count()).group_by(ModelVersion.source_job_id)).all())


def recovery_times(db_url: str, job_id: str, attempt: int, killed_at: float) -> tuple[float | None, float | None]:
    """Seconds from the kill to the job's first event after it (its recovery noticed the dead worker)
    and to its next claim (an event whose data carries a later attempt), from the events' SQL times."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import JobEvent

    with session_scope(db_url) as session:
        events = list(session.execute(select(JobEvent.created_at, JobEvent.data).where(
            JobEvent.job_id == job_id, JobEvent.created_at > killed_at).order_by(JobEvent.created_at)))
    noticed = events[0].created_at - killed_at if events else None
    claimed = next((e.created_at - killed_at for e in events if (e.data or {}).get("attempt", 0) > attempt), None)
    return noticed, claimed


def worker_of(svc, job) -> int | None:
    """Index in svc.workers of the live worker that runs `job`. The job records a worker name ending
    in a pid: the worker's own (its Celery node name) or its pool process's (whose process group is
    the worker's)."""
    found = re.search(r"(\d+)$", job.worker or "")
    if not found:
        return None
    pid = int(found.group(1))
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return next((i for i, (proc, _) in enumerate(svc.workers) if proc.poll() is None and proc.pid in (pid, group)), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--submit-seconds", type=float, default=60.0, help="spread the submissions over this long")
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds after the first submission")
    args = parser.parse_args()

    from app.migrate import upgrade
    from cube.synthetic import nonlinear_pairs
    from tests.e2e.test_service_e2e import Service

    redis_server, pg = PrivateRedis().start(), PrivatePostgres().start()
    work = Path(tempfile.mkdtemp(prefix="cube-chaos-"))
    svc = None
    try:
        db_url = pg.create_database("cube_chaos")
        upgrade(db_url)
        svc = Service(db_url, redis_server.url, work / "data")
        for tuned_for_tests in ("CUBE_JOB_LEASE_SECONDS", "CUBE_HEARTBEAT_SECONDS", "CUBE_RESEND_AFTER_SECONDS"):
            svc.env.pop(tuned_for_tests, None)  # the service's defaults, not the tests' short lease
        for _ in range(2):
            svc.start_worker()
        dataset = svc.upload(nonlinear_pairs(n=200, d_in=8, d_out=8))

        submitted: list[str] = []
        refused = [0]

        def submit_all():
            for i in range(args.jobs):
                while True:  # a client retries a 503 (broker down for a moment)
                    r = svc.client.post("/v1/training-jobs", json={
                        "dataset_id": dataset, "model": "chaos", "architecture": TINY_CUBE, "seed": i,
                        "hyperparameters": {"n_epochs": args.epochs, "early_stopping_patience": 0}})
                    if r.status_code == 202:
                        submitted.append(r.json()["id"])
                        break
                    assert r.status_code == 503, r.text
                    refused[0] += 1
                    time.sleep(0.5)
                time.sleep(args.submit_seconds / args.jobs)

        start = time.monotonic()
        submitter = threading.Thread(target=submit_all, daemon=True)
        submitter.start()
        log: list[str] = []

        def note(what: str) -> None:
            log.append(f"{time.monotonic() - start:6.1f} s  {what}")
            print(log[-1], flush=True)

        # Chaos at fixed moments: Redis at 15 s, a worker killed -9 at ~30 s (when one runs a job),
        # Redis again at 50 s.
        kill = None  # (job id, attempt at the kill, time.time() of the kill)
        redis_restarts = 0
        while True:
            now = time.monotonic() - start
            if redis_restarts == 0 and now >= 15 or redis_restarts == 1 and now >= 50:
                redis_server.restart(down_for=1.0)
                redis_restarts += 1
                note(f"Redis restarted ({redis_restarts})")
            if kill is None and now >= 30:
                running = [j for j in jobs_by_id(db_url, list(submitted)).values() if j.status == "running"]
                for job in running:
                    index = worker_of(svc, job)
                    if index is not None:
                        proc, _ = svc.workers[index]
                        killed_at = time.time()
                        svc.kill_worker(proc, signal.SIGKILL)
                        kill = (job.id, job.attempt, killed_at)
                        note(f"worker {index} killed -9 while running {job.id} (attempt {job.attempt})")
                        svc.start_worker()
                        note("a new worker started in its place")
                        break
            jobs = jobs_by_id(db_url, list(submitted))
            finished = sum(j.status in ("succeeded", "failed", "cancelled") for j in jobs.values())
            if (not submitter.is_alive() and finished == args.jobs and redis_restarts == 2 and kill is not None) \
                    or now > args.deadline:
                break
            time.sleep(0.25)
        wall = time.monotonic() - start

        jobs = jobs_by_id(db_url, list(submitted))
        versions = versions_per_job(db_url)
        noticed, kill_to_running = recovery_times(db_url, *kill) if kill else (None, None)
        statuses = [j.status for j in jobs.values()]
        result = {
            "jobs_submitted": len(submitted),
            "succeeded": statuses.count("succeeded"),
            "failed": statuses.count("failed"),
            "versions": sum(versions.get(j, 0) for j in jobs),
            "duplicates": sum(versions.get(j, 0) > 1 for j in jobs),
            "stuck": sum(s not in ("succeeded", "failed", "cancelled") for s in statuses),
            "stuck_by_status": {s: statuses.count(s) for s in sorted(set(statuses)) if s not in ("succeeded", "failed", "cancelled")},
            "kill_to_recovery_event_s": None if noticed is None else round(noticed, 1),
            "kill_to_running_s": None if kill_to_running is None else round(kill_to_running, 1),
            "jobs_run_more_than_once": sum(j.attempt > 1 for j in jobs.values()),
            "submits_refused_503": refused[0],
            "redis_restarts": redis_restarts,
            "worker_kills": int(kill is not None),
            "wall_s": round(wall, 1),
        }
        errors = sorted({(j.error_message or "")[:120] for j in jobs.values() if j.status == "failed"})
        if errors:
            result["failure_reasons"] = errors
        print(json.dumps(result, indent=2))
        ok = (result["succeeded"] == args.jobs and result["versions"] == args.jobs and result["duplicates"] == 0
              and result["stuck"] == 0 and kill_to_running is not None and kill_to_running < 60)
        print("targets met" if ok else "targets NOT met")
        return 0 if ok else 1
    finally:
        if svc is not None:
            if redis_server.proc is None:
                redis_server.start()
            svc.close()
        redis_server.close()
        pg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
