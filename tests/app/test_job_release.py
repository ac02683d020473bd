"""A job created while its text dataset is being encoded is never stranded in validating_files."""
from __future__ import annotations

from app import job_states
from app.db import session_scope
from app.models import Dataset, TrainingJob
from app.services import jobs
from tests.conftest import TINY_CUBE

LINES = "".join(f'{{"input": "question {i}?", "target": "the answer number {i}"}}\n' for i in range(30)).encode()


def waiting_job(c):
    ds = c.post("/v1/datasets", files={"file": ("t.jsonl", LINES)}, data={"kind": "text_pairs"}).json()["id"]
    job = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE}).json()
    assert job["status"] == "validating_files"
    return ds, job["id"]


def finish_encoding_without_seeing(settings, ds, status, error=None):
    """The encoder's commit, as if it had looked for waiting jobs before this one was created."""
    with session_scope(settings.database) as s:
        d = s.get(Dataset, ds)
        d.status, d.error = status, error
        if status == "ready":
            d.dim_in = d.dim_out = 384


def test_a_job_the_encoder_missed_is_queued_once(client, settings):
    c, sent = client
    ds, job_id = waiting_job(c)
    finish_encoding_without_seeing(settings, ds, "ready")
    with session_scope(settings.database) as s:
        jobs.release_if_encoded(s, sent, s.get(TrainingJob, job_id))
        jobs.release_if_encoded(s, sent, s.get(TrainingJob, job_id))  # a second look changes nothing
    assert c.get(f"/v1/training-jobs/{job_id}").json()["status"] == job_states.QUEUED
    assert [a for t, a in sent.sent if t == "cube.train_job"] == [(job_id,)]


def test_a_job_on_a_dataset_that_failed_meanwhile_fails(client, settings):
    c, sent = client
    ds, job_id = waiting_job(c)
    finish_encoding_without_seeing(settings, ds, "failed", "encoding failed: teacher missing")
    with session_scope(settings.database) as s:
        jobs.release_if_encoded(s, sent, s.get(TrainingJob, job_id))
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "dataset_failed"
