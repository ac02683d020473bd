"""Text datasets: upload (validating) -> a job waits (validating_files) -> the worker encodes with the
teacher -> dataset ready, job queued -> trained model accepts text in /transform. The teacher is a
small deterministic stand-in so no model weights are loaded."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import cube.teachers as teachers
from app.services import training
from app.services.encoding import encode_dataset
from tests.conftest import TINY_CUBE


class HashTeacher:
    name, dim = "hash", 8
    cache_name = name

    def __init__(self, fail: bool = False):
        self.fail = fail

    def encode(self, texts, batch_size=64):
        if self.fail:
            raise RuntimeError("teacher weights missing")
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:32], dtype=np.uint8)[:8].astype(np.float32) for t in texts]
        x = np.stack(rows) - 127.5
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def count_tokens(self, texts):  # the usage /v1/transform reports for text
        return sum(len(t.split()) for t in texts)


@pytest.fixture
def fake_teacher(monkeypatch):
    from app.services import inference

    teacher = HashTeacher()
    monkeypatch.setattr(teachers, "get_teacher", lambda name, *a, **k: teacher)
    monkeypatch.setattr(inference, "_teachers", {})
    return teacher


def text_file(n=60) -> bytes:
    return "\n".join(json.dumps({"input": f"question {i}?", "target": f"answer {i} is here", "group": f"c{i % 12}"})
                     for i in range(n)).encode()


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_text_dataset_is_encoded_then_trained_and_served(client, settings, fake_teacher):
    c, sent = client
    ds = c.post("/v1/datasets", files={"file": ("qa.jsonl", text_file())},
                data={"kind": "text_pairs", "teacher": "hash", "name": "qa"}).json()
    assert ds["status"] == "validating" and sent.sent == [("cube.encode_dataset", (ds["id"],))]
    job = c.post("/v1/training-jobs", json={"dataset_id": ds["id"], "architecture": TINY_CUBE,
                                            "hyperparameters": {"n_epochs": 1}}).json()
    assert job["status"] == "validating_files"
    released = []
    assert encode_dataset(settings, ds["id"], lambda task, *a, device="cpu": released.append((task, a))) == "ready"
    ready = c.get(f"/v1/datasets/{ds['id']}").json()
    assert (ready["status"], ready["dim_in"], ready["dim_out"], ready["num_pairs"]) == ("ready", 8, 8, 60)
    assert released == [("cube.train_job", (job["id"],))]
    assert c.get(f"/v1/training-jobs/{job['id']}").json()["status"] == "queued"
    training.run_job(settings, job["id"], "w1")
    assert c.get(f"/v1/training-jobs/{job['id']}").json()["status"] == "succeeded"
    assert c.get("/v1/models/qa/versions/1").json()["teacher"] == "hash"
    r = c.post("/v1/transform", json={"model": "qa", "version": 1, "input": ["how are you?", "what time is it?"]})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2 and len(r.json()["data"][0]["embedding"]) == 8


def test_failed_encoding_fails_the_dataset_and_its_jobs(client, settings, fake_teacher):
    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("qa.jsonl", text_file())}, data={"kind": "text_pairs"}).json()
    job = c.post("/v1/training-jobs", json={"dataset_id": ds["id"], "architecture": TINY_CUBE}).json()
    fake_teacher.fail = True
    assert encode_dataset(settings, ds["id"], lambda *a, **k: None) == "failed"
    failed = c.get(f"/v1/datasets/{ds['id']}").json()
    assert failed["status"] == "failed" and "teacher weights missing" in failed["error"]
    j = c.get(f"/v1/training-jobs/{job['id']}").json()
    assert j["status"] == "failed" and j["error"]["code"] == "dataset_failed"
    r = c.post("/v1/training-jobs", json={"dataset_id": ds["id"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "dataset_not_ready"
