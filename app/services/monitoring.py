"""Scrape-time gauges for /metrics: what SQL and the model cache say now (jobs by status, the age
of each running job's heartbeat, vectors waiting per model), so no process has to keep them."""
from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs import states
from app.models import TrainingJob
from app.services.inference import ModelCache
from app.telemetry import Telemetry


def refresh(session: Session, telemetry: Telemetry, cache: ModelCache) -> None:
    counts = dict(session.execute(select(TrainingJob.status, func.count()).group_by(TrainingJob.status)).all())
    for status in states.STATES:
        telemetry.jobs.labels(status).set(counts.get(status, 0))
    now = time.time()
    telemetry.worker_heartbeat_age.clear()  # finished jobs drop out
    for job_id, beat in session.execute(select(TrainingJob.id, TrainingJob.heartbeat_at)
                                        .where(TrainingJob.status == states.RUNNING)):
        if beat is not None:
            telemetry.worker_heartbeat_age.labels(job_id).set(max(0.0, now - beat))
    telemetry.queue_rows.clear()
    for label, rows in cache.queue_depths().items():
        telemetry.queue_rows.labels(label).set(rows)
