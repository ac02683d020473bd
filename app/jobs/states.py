"""Every status of a training job and of a dataset, and every legal move, in one place.

Jobs:
    validating_files -> queued -> running -> succeeded | failed | cancelled
    validating_files -> failed | cancelled;  queued -> failed | cancelled
    running -> queued   (recovery: a job whose worker stopped goes back to the queue; the next
                         claim resumes it from its last checkpoint)

Datasets:
    validating -> ready | failed     (text datasets wait for the worker's encoding)
    ready | failed -> deleted        (a tombstone kept while finished jobs point at it)

Terminal states are final. `app.jobs.lifecycle` is the only writer of either status; its atomic
SQL updates take their `WHERE status IN (...)` from `sources_of` (and stamp the start and finish
times), so the table here is the rule.
"""
from __future__ import annotations

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


class DatasetStatus:
    """A dataset's statuses (plain strings, as stored)."""

    VALIDATING = "validating"
    READY = "ready"
    FAILED = "failed"
    DELETED = "deleted"
    ALL = (VALIDATING, READY, FAILED, DELETED)


DATASET_TRANSITIONS: dict[str, frozenset[str]] = {
    DatasetStatus.VALIDATING: frozenset({DatasetStatus.READY, DatasetStatus.FAILED}),
    DatasetStatus.READY: frozenset({DatasetStatus.DELETED}),
    DatasetStatus.FAILED: frozenset({DatasetStatus.DELETED}),
    DatasetStatus.DELETED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, current: str, new: str, what: str = "job"):
        super().__init__(f"a {current} {what} cannot become {new}")
        self.current, self.new = current, new


def can_move(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def sources_of(new: str) -> frozenset[str]:
    """The job statuses from which `new` may be reached: the WHERE clause of every atomic move."""
    return frozenset(s for s, targets in TRANSITIONS.items() if new in targets)


def move_dataset(dataset, new: str) -> None:
    """Move a Dataset row to `new`; refuse illegal moves."""
    if new not in DATASET_TRANSITIONS.get(dataset.status, frozenset()):
        raise IllegalTransition(dataset.status, new, "dataset")
    dataset.status = new
