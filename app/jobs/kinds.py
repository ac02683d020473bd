"""The kinds of job the lifecycle runs: training jobs and bulk transform jobs. Both have the same
lifecycle columns (status, attempt, worker, heartbeat, cancel request, times, error) and the same
statuses (app.jobs.states); each has its own table, events table and worker task."""
from __future__ import annotations

from dataclasses import dataclass

from app.models import JobEvent, TrainingJob, TransformJob, TransformJobEvent
from app.queue import TRAIN_TASK, TRANSFORM_TASK


@dataclass(frozen=True)
class JobKind:
    noun: str          # in messages: "training job"
    table: type        # the ORM class of its rows
    events: type       # the ORM class of its events
    task: str          # the task name a worker runs it by
    unit: str          # what a cancel waits for: the current epoch, the current batch


TRAINING = JobKind("training job", TrainingJob, JobEvent, TRAIN_TASK, "epoch")
TRANSFORM = JobKind("transform job", TransformJob, TransformJobEvent, TRANSFORM_TASK, "batch")
KINDS = (TRAINING, TRANSFORM)


def kind_of(job) -> JobKind:
    return TRANSFORM if isinstance(job, TransformJob) else TRAINING
