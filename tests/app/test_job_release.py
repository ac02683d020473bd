"""A job created while its text dataset is being encoded is never stranded in validating_files, and
each waiting job is released once however many times release_waiting runs."""
from __future__ import annotations

from app.db import session_scope
from app.jobs import lifecycle, states
from app.jobs.states import DatasetStatus
from app.models import Dataset
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
        if status == DatasetStatus.READY:
            d.dim_in = d.dim_out = 384


def test_a_job_the_encoder_missed_is_queued_once(client, settings):
    c, sent = client
    ds, job_id = waiting_job(c)
    other = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE}).json()["id"]
    finish_encoding_without_seeing(settings, ds, DatasetStatus.READY)
    with session_scope(settings.database) as s:
        assert sorted(lifecycle.release_waiting(s, sent, ds)) == sorted([job_id, other])
        assert lifecycle.release_waiting(s, sent, ds) == []  # a second look (the encoder's or the API's) moves nothing
    assert c.get(f"/v1/training-jobs/{job_id}").json()["status"] == states.QUEUED
    assert sorted(a for t, a in sent.sent if t == "cube.train_job") == sorted([(job_id,), (other,)])


def test_a_job_on_a_dataset_that_failed_meanwhile_fails(client, settings):
    c, sent = client
    ds, job_id = waiting_job(c)
    finish_encoding_without_seeing(settings, ds, DatasetStatus.FAILED, "encoding failed: teacher missing")
    with session_scope(settings.database) as s:
        assert lifecycle.release_waiting(s, sent, ds) == [job_id]
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "dataset_failed"
    assert [t for t, _ in sent.sent if t == "cube.train_job"] == []


def test_nothing_is_released_while_the_dataset_is_still_encoding(client, settings):
    c, sent = client
    ds, job_id = waiting_job(c)
    with session_scope(settings.database) as s:
        assert lifecycle.release_waiting(s, sent, ds) == []
    assert c.get(f"/v1/training-jobs/{job_id}").json()["status"] == states.VALIDATING_FILES
