"""Bulk transform jobs end to end: real `cube worker` processes on the embedded default (SQLite and
the SQL broker) and on PostgreSQL + Redis. A trained version maps a stored dataset; the downloaded
result equals /v1/transform's answers (both pinned to version 1: the default alias is the
promotion gate's to give); a running job is cancelled and the worker takes the next one."""
from __future__ import annotations

import io

import numpy as np
import pytest

from tests.e2e.test_service_e2e import embedded_service, pairs, service, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def transform_job(svc, **body) -> str:
    r = svc.client.post("/v1/transform-jobs", **body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_transform(svc, job_id: str, statuses, timeout: float) -> dict:
    get = lambda: svc.client.get(f"/v1/transform-jobs/{job_id}").json()  # noqa: E731
    try:
        return wait_for(lambda: (j := get())["status"] in statuses and j, timeout, f"{job_id} to be {statuses}")
    except AssertionError:
        print(svc.logs())
        raise


def served(svc, x: np.ndarray) -> np.ndarray:
    r = svc.client.post("/v1/transform", json={"model": "e2e", "version": 1, "input": x.tolist()})
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


@pytest.mark.parametrize("which", ["embedded", "postgresql+redis"])
def test_a_dataset_through_a_trained_version_on_a_worker(which, request, pairs):  # noqa: F811
    svc = request.getfixturevalue("embedded_service" if which == "embedded" else "service")
    svc.start_worker()
    ds = svc.upload(pairs)
    assert svc.wait_status(svc.submit(ds), {"succeeded", "failed"}, 90)["status"] == "succeeded"
    job_id = transform_job(svc, json={"model": "e2e", "version": 1, "dataset_id": ds})
    job = wait_transform(svc, job_id, {"succeeded", "failed", "cancelled"}, 60)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 1 and job["progress"]["rows_done"] == len(pairs)
    r = svc.client.get(f"/v1/transform-jobs/{job_id}/result")
    assert r.status_code == 200 and int(r.headers["content-length"]) == job["result"]["bytes"]
    result = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert result.dtype == np.float32 and result.shape == (len(pairs), 16)
    assert np.abs(result - served(svc, pairs.input.astype(np.float32))).max() <= 1e-5


def test_cancel_a_running_bulk_transform(embedded_service, pairs):  # noqa: F811
    svc = embedded_service
    svc.env["CUBE_TRANSFORM_JOB_BATCH_ROWS"] = "8"  # many small batches: the job runs long enough to cancel
    svc.start_worker()
    ds = svc.upload(pairs)
    assert svc.wait_status(svc.submit(ds), {"succeeded", "failed"}, 90)["status"] == "succeeded"
    big = np.random.default_rng(0).standard_normal((100_000, 16)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, big)
    job_id = transform_job(svc, files={"file": ("big.npy", buf.getvalue())}, data={"model": "e2e", "version": "1"})
    wait_for(lambda: svc.client.get(f"/v1/transform-jobs/{job_id}").json()["progress"]["rows_done"] > 0, 60,
             "the first rows")
    assert svc.client.post(f"/v1/transform-jobs/{job_id}/cancel").json()["cancel_requested_at"] is not None
    job = wait_transform(svc, job_id, {"cancelled", "succeeded", "failed"}, 30)
    assert job["status"] == "cancelled" and job["progress"]["rows_done"] < len(big) and job["result"] is None
    assert svc.client.get(f"/v1/transform-jobs/{job_id}/result").json()["error"]["code"] == "result_not_ready"
    # The worker is free again: the next job runs to the end.
    small = transform_job(svc, json={"model": "e2e", "version": 1, "dataset_id": ds})
    assert wait_transform(svc, small, {"succeeded", "failed"}, 60)["status"] == "succeeded"
