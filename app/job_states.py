"""The training job state machine: every status and every legal move, in one place.

    validating_files -> queued -> running -> succeeded | failed | cancelled
    validating_files -> failed | cancelled;  queued -> failed | cancelled
    running -> queued   (a presumed-dead worker's job goes back to the queue; a new claim resumes it)

Terminal states are final. `transition` is the only function that changes `TrainingJob.status`;
the worker's atomic claim (`app.services.training.claim_job`) is the SQL form of queued|running -> running.
"""
from __future__ import annotations

import time

VALIDATING_FILES = "validating_files"
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

STATES = (VALIDATING_FILES, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE = frozenset({VALIDATING_FILES, QUEUED, RUNNING})

TRANSITIONS: dict[str, frozenset[str]] = {
    VALIDATING_FILES: frozenset({QUEUED, FAILED, CANCELLED}),
    QUEUED: frozenset({RUNNING, FAILED, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, QUEUED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

# A claim may take a queued job, or a running one whose worker stopped sending heartbeats.
CLAIMABLE = frozenset({QUEUED, RUNNING})


class IllegalTransition(Exception):
    def __init__(self, current: str, new: str):
        super().__init__(f"a {current} job cannot become {new}")
        self.current, self.new = current, new


def can_move(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def transition(job, new: str, *, now: float | None = None) -> None:
    """Move `job` (a TrainingJob row) to `new`, stamping start/finish times; refuse illegal moves."""
    if not can_move(job.status, new):
        raise IllegalTransition(job.status, new)
    now = time.time() if now is None else now
    job.status = new
    if new == RUNNING and job.started_at is None:
        job.started_at = now
    if new in TERMINAL:
        job.finished_at = now
        job.estimated_finish = None
