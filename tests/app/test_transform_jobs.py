"""Bulk transform jobs through the API, with the worker's pipeline called directly (no queue): the
result equals /v1/transform's for every input format, progress and events, cancel, recovery of a
job whose worker died, and clear 4xx answers for bad input with nothing left behind."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from app.db import session_scope
from app.jobs import lifecycle
from app.models import TransformJob
from app.queue import TRANSFORM_TASK
from app.services.bulk_transform import run_transform_job
from app.storage import get_storage
from tests.conftest import make_version

X = np.random.default_rng(5).standard_normal((300, 16)).astype(np.float32)


@pytest.fixture
def served(client, settings, pairs_npz):
    """A client, its enqueue recorder, and model "m" v1 (a 16d -> 16d cube) with its dataset's id."""
    c, sent = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    make_version(c, settings, ds)
    return c, sent, ds


def served_transform(c, x: np.ndarray, normalize: bool = False) -> np.ndarray:
    out = []
    for start in range(0, len(x), 4096):
        r = c.post("/v1/transform", json={"model": "m", "input": x[start:start + 4096].tolist(), "normalize": normalize})
        assert r.status_code == 200, r.text
        out.append(np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32))
    return np.concatenate(out)


def run(c, settings, job_id: str) -> dict:
    assert run_transform_job(settings, job_id, "w1").outcome == "claimed"
    return c.get(f"/v1/transform-jobs/{job_id}").json()


def result_of(c, job_id: str) -> np.ndarray:
    r = c.get(f"/v1/transform-jobs/{job_id}/result")
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == f'attachment; filename="{job_id}-result.npy"'
    return np.load(io.BytesIO(r.content), allow_pickle=False)


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_a_dataset_through_a_version_equals_transform(served, settings, pairs_npz):
    c, sent, ds = served
    r = c.post("/v1/transform-jobs", json={"model": "m", "dataset_id": ds, "metadata": {"run": 1}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["version"] == 1 and job["input"]["rows"] == 400
    assert sent.sent[-1] == (TRANSFORM_TASK, (job["id"],))
    assert c.get(f"/v1/transform-jobs/{job['id']}/result").json()["error"]["code"] == "result_not_ready"
    done = run(c, settings, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == {"rows_done": 400, "rows": 400, "fraction": 1.0}
    assert done["result"] == {"format": "npy", "dtype": "float32", "shape": [400, 16], "bytes": done["result"]["bytes"]}
    inputs = np.load(pairs_npz)["input"].astype(np.float32)
    assert np.abs(result_of(c, job["id"]) - served_transform(c, inputs)).max() <= 1e-5
    events = [e["message"] for e in c.get(f"/v1/transform-jobs/{job['id']}/events").json()["data"]]
    assert events[0].startswith("transform job created: 400 vectors") and events[-1] == "succeeded: 400 rows written"
    assert [j["id"] for j in c.get("/v1/transform-jobs?status=succeeded").json()["data"]] == [job["id"]]
    # A duplicate delivery after success changes nothing.
    assert run_transform_job(settings, job["id"], "w2").outcome == "finished"


def npy(x):
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def npz(x):
    buf = io.BytesIO()
    np.savez_compressed(buf, input=x, other=np.zeros(3))
    return buf.getvalue()


def parquet(x):
    buf = io.BytesIO()
    pq.write_table(pa.table({"input": list(x.astype(np.float64))}), buf, row_group_size=70)
    return buf.getvalue()


def jsonl(x):
    return "\n".join(json.dumps({"input": row.tolist()}) for row in x).encode()


@pytest.mark.parametrize("name,encode", [("x.npy", npy), ("x.npz", npz), ("x.parquet", parquet), ("x.jsonl", jsonl)])
def test_uploaded_files_of_each_format(served, settings, name, encode):
    c, _, _ = served
    r = c.post("/v1/transform-jobs", files={"file": (name, encode(X))}, data={"model": "m", "version": "1", "normalize": "true"})
    assert r.status_code == 202, r.text
    assert r.json()["input"]["format"] == name.split(".")[1] and r.json()["normalize"] is True
    assert run(c, settings, r.json()["id"])["status"] == "succeeded"
    assert np.abs(result_of(c, r.json()["id"]) - served_transform(c, X, normalize=True)).max() <= 1e-5


def test_bad_input_is_a_clear_4xx_and_leaves_nothing(served, settings):
    c, sent, ds = served
    before = len(sent.sent)  # the version's training job
    post = lambda **kw: c.post("/v1/transform-jobs", **kw)  # noqa: E731
    cases = [
        (post(files={"file": ("x.npy", npy(X[:, :8]))}, data={"model": "m"}), 422, "dimension_mismatch", "file"),
        (post(files={"file": ("t.jsonl", b'"a text"\n"another"\n')}, data={"model": "m"}), 422, "text_not_supported", "file"),
        (post(files={"file": ("x.npz", b"PK\x03\x04 not a zip")}, data={"model": "m"}), 422, "invalid_file", "file"),
        (post(files={"file": ("x.jsonl", b"[1, 2]\n{oops\n")}, data={"model": "m"}), 422, "invalid_file", "file"),
        (post(files={"file": ("x.npy", npy(X.astype(np.int32)))}, data={"model": "m"}), 422, "invalid_file", "file"),
        (post(files={"file": ("x.npy", b"")}, data={"model": "m"}), 422, "invalid_file", "file"),
        (post(data={"model": "m", "dataset_id": ds}), 400, "invalid_request", "file"),
        (post(json={"model": "m"}), 400, "invalid_request", "dataset_id"),
        (post(json={"model": "m", "dataset_id": "ds_nope"}), 404, "not_found", "dataset_id"),
        (post(json={"model": "nope", "dataset_id": ds}), 404, "not_found", "model"),
        (post(json={"model": "m", "version": 4, "dataset_id": ds}), 404, "not_found", "version"),
        (post(json={"model": "m", "dataset_id": ds, "extra": 1}), 400, "invalid_request", "extra"),
        (post(content=b"model=m", headers={"content-type": "text/plain"}), 400, "unsupported_media_type", "content-type"),
    ]
    for r, status, code, param in cases:
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == (code, param), error
        assert error["message"]
    assert "line 2 is not valid JSON" in cases[3][0].json()["error"]["message"] and cases[3][0].json()["error"]["row"] == 1
    assert len(sent.sent) == before and c.get("/v1/transform-jobs").json()["data"] == []
    root = get_storage(settings).root
    assert not (root / "transform-jobs").exists() and not any((root / ".tmp").iterdir())


def test_non_finite_rows_fail_the_job_naming_the_row(served, settings):
    c, _, _ = served
    x = X.copy()
    x[123, 4] = np.nan
    job = c.post("/v1/transform-jobs", files={"file": ("x.npy", npy(x))}, data={"model": "m"}).json()
    done = run(c, settings, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_input"
    assert "row 123 contains NaN" in done["error"]["message"]
    assert c.get(f"/v1/transform-jobs/{job['id']}/result").status_code == 409
    assert not (get_storage(settings).root / "transform-jobs" / job["id"] / "attempts").exists()


def test_cancel_before_and_while_running(served, settings):
    c, _, ds = served
    queued = c.post("/v1/transform-jobs", json={"model": "m", "dataset_id": ds}).json()["id"]
    assert c.post(f"/v1/transform-jobs/{queued}/cancel").json()["status"] == "cancelled"
    assert run_transform_job(settings, queued, "w1").outcome == "finished"  # its message finds nothing to do
    running = c.post("/v1/transform-jobs", json={"model": "m", "dataset_id": ds}).json()["id"]
    assert lifecycle.claim(settings, running, "w1", kind=lifecycle.TRANSFORM).outcome == "claimed"
    r = c.post(f"/v1/transform-jobs/{running}/cancel").json()
    assert r["status"] == "running" and r["cancel_requested_at"] is not None
    # The attempt that holds it sees the request at its first progress report and stops.
    assert lifecycle.record_rows(settings, running, 1, 10, time.time()) == lifecycle.CANCEL
    assert lifecycle.finish(settings, running, 1, "cancelled", message="cancelled while running", kind=lifecycle.TRANSFORM)
    assert c.post(f"/v1/transform-jobs/{running}/cancel").json()["status"] == "cancelled"  # idempotent
    done = c.post("/v1/transform-jobs", json={"model": "m", "dataset_id": ds}).json()["id"]
    run(c, settings, done)
    assert c.post(f"/v1/transform-jobs/{done}/cancel").json()["error"]["code"] == "illegal_state"


def test_a_dead_workers_transform_job_is_recovered_and_rerun(served, settings):
    c, _, ds = served
    job_id = c.post("/v1/transform-jobs", json={"model": "m", "dataset_id": ds}).json()["id"]
    assert lifecycle.claim(settings, job_id, "w-dead", kind=lifecycle.TRANSFORM).outcome == "claimed"
    with session_scope(settings.database) as s:
        s.execute(update(TransformJob).where(TransformJob.id == job_id)
                  .values(heartbeat_at=time.time() - settings.job_lease_seconds - 1))
    sent = []
    recovery = lifecycle.recover(settings, lambda task, *a, device="cpu": sent.append((task, a)))
    assert recovery.requeued == [job_id] and sent == [(TRANSFORM_TASK, (job_id,))]
    done = run(c, settings, job_id)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert result_of(c, job_id).shape == (400, 16)
    # The presumed-dead attempt finishing late cannot take the job back.
    assert lifecycle.complete(settings, job_id, 1, result_key="elsewhere", result_bytes=1, rows=400) == lifecycle.LOST
    assert c.get(f"/v1/transform-jobs/{job_id}").json()["result"]["bytes"] == done["result"]["bytes"]
    assert any("stopped (no heartbeat" in e["message"] for e in c.get(f"/v1/transform-jobs/{job_id}/events").json()["data"])


def test_a_dataset_read_by_an_active_transform_job_cannot_be_deleted(served, settings):
    c, _, ds = served
    job_id = c.post("/v1/transform-jobs", json={"model": "m", "dataset_id": ds}).json()["id"]
    r = c.delete(f"/v1/datasets/{ds}")
    assert r.status_code == 409 and "transform job" in r.json()["error"]["message"]
    run(c, settings, job_id)
    assert c.delete(f"/v1/datasets/{ds}").status_code == 200
    assert c.get(f"/v1/transform-jobs/{job_id}").json()["dataset_id"] == ds


def test_texts_through_a_text_trained_version_equal_transform(sqlite_settings, client_for):
    """JSONL texts are encoded on the worker by the version's teacher (the real minilm), then mapped."""
    from app.models import ModelVersion
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    c, _ = client_for(sqlite_settings)
    buf = io.BytesIO()
    save_pairs_npz(buf, nonlinear_pairs(n=60, d_in=384, d_out=384))
    ds = c.post("/v1/datasets", files={"file": ("p.npz", buf.getvalue())}, data={"kind": "embedding_pairs"}).json()["id"]
    version, _ = make_version(c, sqlite_settings, ds, architecture={"kind": "linear"})
    with session_scope(sqlite_settings.database) as s:  # as if trained on text pairs encoded by minilm
        s.execute(update(ModelVersion).where(ModelVersion.id == version["id"]).values(teacher="minilm"))
    texts = ["how are you?", "the weather is nice", "a third line", "and \"quoted\" words"]
    lines = "\n".join(json.dumps(t) if i % 2 else json.dumps({"text": t}) for i, t in enumerate(texts * 5))
    r = c.post("/v1/transform-jobs", files={"file": ("t.jsonl", lines.encode())}, data={"model": "m"})
    assert r.status_code == 202, r.text
    assert r.json()["input"] == {"kind": "texts", "format": "jsonl", "rows": 20, "dim": 384, "bytes": len(lines)}
    assert run(c, sqlite_settings, r.json()["id"])["status"] == "succeeded"
    served = c.post("/v1/transform", json={"model": "m", "input": texts * 5}).json()["data"]
    assert np.abs(result_of(c, r.json()["id"]) - np.array([d["embedding"] for d in served])).max() <= 1e-5
