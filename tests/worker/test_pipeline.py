"""The training pipeline called directly (no queue): claim, progress, cancel, failure, resume,
exactly one model version."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, update

from app.db import session_scope
from app.jobs import lifecycle, states
from app.models import JobCheckpoint, ModelVersion, TrainingJob
from app.services import training
from app.storage import get_storage
from tests.conftest import TINY_CUBE


@pytest.fixture
def new_job(client, pairs_npz):
    c, _ = client

    def make(n_epochs=3, **extra):
        ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())},
                    data={"kind": "embedding_pairs", "name": "pipe"}).json()["id"]
        body = {"dataset_id": ds, "architecture": TINY_CUBE,
                "hyperparameters": {"n_epochs": n_epochs, "early_stopping_patience": 0, "tuning_budget": 1}, **extra}
        r = c.post("/v1/training-jobs", json=body)
        assert r.status_code == 202, r.text
        return r.json()["id"]
    return make


def versions(settings, job_id):
    with session_scope(settings.database) as s:
        return s.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.source_job_id == job_id))


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_job_runs_to_a_model_version(client, settings, new_job):
    c, _ = client
    job_id = new_job(n_epochs=3)
    assert training.run_job(settings, job_id, "w1").outcome == "claimed"
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["progress"]["epoch"] == 3 and job["progress"]["fraction"] == 1.0
    assert job["attempt"] == 1 and job["started_at"] <= job["finished_at"] and job["metrics"]["val_mrr"] >= 0
    metrics = c.get(f"/v1/training-jobs/{job_id}/metrics?key=train_loss").json()["data"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert [cp["epoch"] for cp in c.get(f"/v1/training-jobs/{job_id}/checkpoints").json()["data"]] == [2, 3]
    kinds = [e["type"] for e in c.get(f"/v1/training-jobs/{job_id}/events").json()["data"]]
    assert kinds.count("metrics") == 3
    v = c.get("/v1/models/pipe/versions/1").json()
    assert v["source_job_id"] == job_id and v["id"] == job["model_version_id"] and (v["dim_in"], v["dim_out"]) == (16, 16)
    assert {"cube", "ridge", "mean", "linear", "mlp", "resmlp", "identity", "procrustes"} <= set(v["evaluation"]["methods"])
    # A duplicate delivery after success changes nothing.
    assert training.run_job(settings, job_id, "w2").outcome == "finished"
    assert versions(settings, job_id) == 1


def test_second_claim_of_a_live_job_is_refused(settings, new_job):
    job_id = new_job()
    assert lifecycle.claim(settings, job_id, "w1").outcome == "claimed"
    assert lifecycle.claim(settings, job_id, "w2").outcome == "busy"


def stop_heartbeat(settings, job_id):
    with session_scope(settings.database) as s:
        s.execute(update(TrainingJob).where(TrainingJob.id == job_id)
                  .values(heartbeat_at=time.time() - settings.job_lease_seconds - 1))


def test_a_dead_workers_job_is_requeued_until_the_cap(settings, new_job):
    job_id = new_job()
    sent = []
    for attempt in range(1, settings.max_attempts + 1):
        claim = lifecycle.claim(settings, job_id, f"w{attempt}")
        assert (claim.outcome, claim.attempt) == ("claimed", attempt)
        stop_heartbeat(settings, job_id)
        recovery = lifecycle.recover(settings, lambda task, *a, device="cpu": sent.append(a))
        assert recovery.requeued == ([job_id] if attempt < settings.max_attempts else [])
    assert recovery.failed == [job_id] and sent == [(job_id,)] * (settings.max_attempts - 1)
    with session_scope(settings.database) as s:
        job = s.get(TrainingJob, job_id)
        assert job.status == states.FAILED and job.error_code == "too_many_attempts"


def test_training_that_raises_fails_the_job(client, settings, new_job, monkeypatch):
    import cube.experiment

    def explode(*args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(cube.experiment, "run_experiment", explode)
    c, _ = client
    job_id = new_job()
    training.run_job(settings, job_id, "w1")
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"] == {"code": "training_error", "message": "RuntimeError: the GPU caught fire"}
    assert versions(settings, job_id) == 0


def test_cancel_request_stops_after_the_epoch(client, settings, new_job, monkeypatch):
    c, _ = client
    job_id = new_job(n_epochs=50)
    original = training.ProgressRecorder.on_epoch_end

    def cancel_at_epoch_2(self, report):
        if report.epoch == 2:
            c.post(f"/v1/training-jobs/{job_id}/cancel")
        original(self, report)

    monkeypatch.setattr(training.ProgressRecorder, "on_epoch_end", cancel_at_epoch_2)
    training.run_job(settings, job_id, "w1")
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["progress"]["epoch"] == 2
    assert job["model_version_id"] is None and versions(settings, job_id) == 0


def test_a_cancel_during_the_baselines_registers_no_version(client, settings, new_job, monkeypatch):
    """The baselines train without epoch callbacks; the cancel is honoured between stages."""
    c, _ = client
    job_id = new_job(n_epochs=2)
    original = training.ProgressRecorder.log

    def cancel_when_baselines_start(self, message):
        if message.startswith("training baseline"):
            c.post(f"/v1/training-jobs/{job_id}/cancel")
        original(self, message)

    monkeypatch.setattr(training.ProgressRecorder, "log", cancel_when_baselines_start)
    training.run_job(settings, job_id, "w1")
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "cancelled" and versions(settings, job_id) == 0


def test_a_cancel_after_the_last_check_still_registers_no_version(client, settings, new_job, monkeypatch):
    c, _ = client
    job_id = new_job(n_epochs=2)
    original = training.register

    def cancel_then_register(*args, **kwargs):
        c.post(f"/v1/training-jobs/{job_id}/cancel")
        original(*args, **kwargs)

    monkeypatch.setattr(training, "register", cancel_then_register)
    training.run_job(settings, job_id, "w1")
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["model_version_id"] is None and versions(settings, job_id) == 0


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_a_killed_job_resumes_from_its_checkpoint(client, settings, new_job, monkeypatch):
    c, _ = client
    job_id = new_job(n_epochs=4)
    original = training.ProgressRecorder.on_epoch_end

    class WorkerKilled(BaseException):
        """Stands in for SIGKILL: nothing after it runs (BaseException passes every handler)."""

    def die_at_epoch_2(self, report):
        original(self, report)
        if report.epoch == 2:
            raise WorkerKilled()

    monkeypatch.setattr(training.ProgressRecorder, "on_epoch_end", die_at_epoch_2)
    with pytest.raises(WorkerKilled):
        training.run_job(settings, job_id, "w1")
    monkeypatch.setattr(training.ProgressRecorder, "on_epoch_end", original)
    assert c.get(f"/v1/training-jobs/{job_id}").json()["status"] == "running"
    # The lease has not run out: a new delivery must wait, not train twice.
    assert training.run_job(settings, job_id, "w2").outcome == "busy"
    stop_heartbeat(settings, job_id)
    assert lifecycle.recover(settings, lambda *a, **k: None).requeued == [job_id]
    assert training.run_job(settings, job_id, "w2").outcome == "claimed"
    job = c.get(f"/v1/training-jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["attempt"] == 2
    messages = [e["message"] for e in c.get(f"/v1/training-jobs/{job_id}/events").json()["data"]]
    assert "resumed from epoch 2" in messages
    epochs = [m["epoch"] for m in c.get(f"/v1/training-jobs/{job_id}/metrics?key=train_loss").json()["data"]]
    assert epochs == [1, 2, 3, 4]  # epochs 1-2 once, before the kill; 3-4 after the resume
    assert versions(settings, job_id) == 1
    # The second attempt worked in its own directories; the first attempt's checkpoints went once
    # the second had its own, and the version's files are the second attempt's.
    with session_scope(settings.database) as s:
        rows = list(s.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job_id).order_by(JobCheckpoint.epoch)))
        artifact = s.scalar(select(ModelVersion.artifact_key).where(ModelVersion.source_job_id == job_id))
    assert [(r.attempt, r.epoch) for r in rows] == [(2, 3), (2, 4)]
    assert [r.storage_key for r in rows] == [f"{training.attempt_key(job_id, 2, 'checkpoints')}/{name}"
                                             for name in ("epoch-0003", "epoch-0004")]
    assert artifact == f"{training.attempt_key(job_id, 2, 'run')}/model"
    storage = get_storage(settings)
    assert not storage.exists(training.attempt_key(job_id, 1, "checkpoints") + "/epoch-0002")
    assert all(storage.exists(r.storage_key) for r in rows)


def test_recovery_requeues_only_jobs_whose_heartbeat_stopped(settings, new_job):
    live, dead = new_job(), new_job()
    lifecycle.claim(settings, live, "w1")
    lifecycle.claim(settings, dead, "w2")
    stop_heartbeat(settings, dead)
    sent = []
    assert lifecycle.recover(settings, lambda task, *a, device="cpu": sent.append((task, a, device))).requeued == [dead]
    assert sent == [("cube.train_job", (dead,), "cpu")]
