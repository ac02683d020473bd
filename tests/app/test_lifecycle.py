"""The job lifecycle on SQLite and PostgreSQL: moves follow the transition table (the claim's WHERE
clause included), illegal ones are refused, an attempt that lost its job writes nothing, checkpoints
are the ones the trainer reported, and recovery re-queues dead workers' jobs and re-sends lost
messages, once each."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import select, update

from app.db import session_scope
from app.jobs import lifecycle, states, workers
from app.models import JobCheckpoint, JobEvent, JobMetric, TrainingJob, Worker
from app.storage import get_storage
from tests.conftest import TINY_CUBE


@pytest.fixture
def new_job(client, pairs_npz):
    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())},
                data={"kind": "embedding_pairs", "name": "life"}).json()["id"]

    def make(**extra) -> str:
        r = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE, **extra})
        assert r.status_code == 202, r.text
        return r.json()["id"]
    return make


def set_row(settings, job_id, **values):
    with session_scope(settings.database) as s:
        s.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(**values))


def row(settings, job_id) -> TrainingJob:
    with session_scope(settings.database) as s:
        return s.get(TrainingJob, job_id)


def events(settings, job_id) -> list[JobEvent]:
    with session_scope(settings.database) as s:
        return list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def nothing_sent(*_, **__):
    raise AssertionError("nothing should be sent")


def test_every_move_in_sql_follows_the_table(settings, new_job):
    job_id = new_job()
    for current in states.STATES:
        for new in states.STATES:
            set_row(settings, job_id, status=current)
            with session_scope(settings.database) as s:
                moved = lifecycle.move(s, job_id, new)
            assert moved == states.can_move(current, new), (current, new)
            assert row(settings, job_id).status == (new if moved else current)


def test_a_move_asked_from_an_illegal_state_is_refused(settings, new_job):
    job_id = new_job()
    with session_scope(settings.database) as s, pytest.raises(states.IllegalTransition):
        lifecycle.move(s, job_id, states.RUNNING, only_from=[states.SUCCEEDED])
    assert row(settings, job_id).status == states.QUEUED


def test_the_claim_takes_what_the_table_lets_into_running(settings, new_job, monkeypatch):
    assert states.sources_of(states.RUNNING) == {states.QUEUED}
    job_id = new_job()
    set_row(settings, job_id, status=states.VALIDATING_FILES)
    assert lifecycle.claim(settings, job_id, "w1").outcome == "finished"
    # The claim's WHERE clause is the table's: widen the table and the claim follows.
    monkeypatch.setitem(states.TRANSITIONS, states.VALIDATING_FILES,
                        states.TRANSITIONS[states.VALIDATING_FILES] | {states.RUNNING})
    claim = lifecycle.claim(settings, job_id, "w1")
    assert (claim.outcome, claim.attempt) == ("claimed", 1)
    job = row(settings, job_id)
    assert (job.status, job.worker) == (states.RUNNING, "w1") and job.started_at is not None


def test_moves_stamp_the_first_start_and_the_finish(settings, new_job):
    job_id = new_job()
    lifecycle.claim(settings, job_id, "w1")
    first_start = row(settings, job_id).started_at
    assert first_start is not None and row(settings, job_id).finished_at is None
    stale(settings, job_id)
    lifecycle.recover(settings, lambda *a, **k: None)
    time.sleep(0.01)
    attempt = lifecycle.claim(settings, job_id, "w2").attempt
    assert row(settings, job_id).started_at == first_start  # a resumed job keeps its first start
    set_row(settings, job_id, estimated_finish=time.time() + 100)
    assert lifecycle.finish(settings, job_id, attempt, states.FAILED, code="training_error", message="boom")
    job = row(settings, job_id)
    assert job.finished_at >= first_start and job.estimated_finish is None


def test_terminal_jobs_stay_terminal(settings, new_job, client):
    c, _ = client
    job_id = new_job()
    attempt = lifecycle.claim(settings, job_id, "w1").attempt
    assert lifecycle.finish(settings, job_id, attempt, states.FAILED, code="training_error", message="boom")
    assert not lifecycle.finish(settings, job_id, attempt, states.CANCELLED, message="again")
    assert lifecycle.claim(settings, job_id, "w2").outcome == "finished"
    assert lifecycle.recover(settings, nothing_sent) == lifecycle.Recovery()
    assert c.post(f"/v1/training-jobs/{job_id}/cancel").status_code == 409
    assert row(settings, job_id).status == states.FAILED


def epoch(n, checkpoint=None, removed=()):
    return lifecycle.EpochRecord(epoch=n, n_epochs=10, step=10 * n, total_steps=100, metrics={"train_loss": 1.0 / n},
                                 message=f"epoch {n}", estimated_finish=time.time() + 60, checkpoint_key=checkpoint,
                                 removed_keys=list(removed))


def stale(settings, job_id):
    set_row(settings, job_id, heartbeat_at=time.time() - settings.job_lease_seconds - 1)


def test_an_attempt_that_lost_its_job_writes_nothing(settings, new_job):
    """A slow-but-alive old attempt: its job was re-queued and claimed again meanwhile."""
    job_id = new_job()
    old = lifecycle.claim(settings, job_id, "w1").attempt
    stale(settings, job_id)
    assert lifecycle.recover(settings, lambda *a, **k: None).requeued == [job_id]
    new = lifecycle.claim(settings, job_id, "w2").attempt
    assert new == old + 1
    assert lifecycle.record_epoch(settings, job_id, old, epoch(1, "x/epoch-0001")) == lifecycle.LOST
    assert lifecycle.should_stop(settings, job_id, old) == lifecycle.LOST
    assert not lifecycle.heartbeat(settings, job_id, old)
    assert not lifecycle.finish(settings, job_id, old, states.FAILED, code="training_error", message="late")
    assert lifecycle.register(settings, job_id, old, arch="cube", dim_in=16, dim_out=16, teacher=None, parameters=1,
                              evaluation={}, artifact_key="x", epochs_run=1) == lifecycle.LOST
    job = row(settings, job_id)
    assert (job.status, job.attempt, job.worker, job.epoch) == (states.RUNNING, new, "w2", 0)
    with session_scope(settings.database) as s:
        assert s.scalars(select(JobMetric).where(JobMetric.job_id == job_id)).first() is None
        assert s.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job_id)).first() is None
    assert lifecycle.heartbeat(settings, job_id, new)


def test_checkpoint_rows_are_what_the_trainer_reported(settings, new_job):
    job_id = new_job()
    storage = get_storage(settings)
    first = lifecycle.claim(settings, job_id, "w1").attempt
    keys = {n: f"jobs/{job_id}/attempts/{first}/checkpoints/epoch-{n:04d}" for n in (1, 2, 3)}
    for key in keys.values():
        storage.local_path(key).mkdir(parents=True)
    assert lifecycle.record_epoch(settings, job_id, first, epoch(1, keys[1])) == lifecycle.CONTINUE
    assert lifecycle.record_epoch(settings, job_id, first, epoch(2, keys[2])) == lifecycle.CONTINUE
    assert lifecycle.record_epoch(settings, job_id, first, epoch(3, keys[3], removed=[keys[1]])) == lifecycle.CONTINUE

    def kept():
        with session_scope(settings.database) as s:
            return [(r.attempt, r.epoch, r.storage_key) for r in
                    s.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job_id).order_by(JobCheckpoint.epoch))]

    assert kept() == [(first, 2, keys[2]), (first, 3, keys[3])]
    # A new attempt resumes from epoch 3; its first checkpoint supersedes the old attempt's.
    stale(settings, job_id)
    lifecycle.recover(settings, lambda *a, **k: None)
    second = lifecycle.claim(settings, job_id, "w2").attempt
    assert lifecycle.resume_point(settings, job_id).storage_key == keys[3]
    key4 = f"jobs/{job_id}/attempts/{second}/checkpoints/epoch-0004"
    storage.local_path(key4).mkdir(parents=True)
    assert lifecycle.record_epoch(settings, job_id, second, epoch(4, key4)) == lifecycle.CONTINUE
    assert kept() == [(second, 4, key4)]
    assert not storage.exists(keys[2]) and not storage.exists(keys[3]) and storage.exists(key4)


def test_a_cancel_request_reaches_the_running_attempt(settings, new_job, client):
    c, _ = client
    job_id = new_job()
    attempt = lifecycle.claim(settings, job_id, "w1").attempt
    assert lifecycle.should_stop(settings, job_id, attempt) == lifecycle.CONTINUE
    assert c.post(f"/v1/training-jobs/{job_id}/cancel").json()["status"] == states.RUNNING
    assert lifecycle.record_epoch(settings, job_id, attempt, epoch(1)) == lifecycle.CANCEL
    # Registration after the request honours it: cancelled, no version.
    assert lifecycle.register(settings, job_id, attempt, arch="cube", dim_in=16, dim_out=16, teacher=None, parameters=1,
                              evaluation={}, artifact_key="x", epochs_run=1) == states.CANCELLED
    assert row(settings, job_id).model_version_id is None


# ---- recovery ------------------------------------------------------------------------------

class Sent(list):
    def __call__(self, task, *args, device="cpu"):
        self.append((task, args, device))


def test_recovery_requeues_a_stopped_workers_job_once(settings, new_job):
    job_id = new_job()
    lifecycle.claim(settings, job_id, "w1")
    sent = Sent()
    assert lifecycle.recover(settings, sent) == lifecycle.Recovery()  # the heartbeat is fresh
    stale(settings, job_id)
    assert lifecycle.recover(settings, sent).requeued == [job_id]
    assert lifecycle.recover(settings, sent) == lifecycle.Recovery()  # a second sweep finds nothing to do
    assert sent == [("cube.train_job", (job_id,), "cpu")]
    job = row(settings, job_id)
    assert job.status == states.QUEUED and job.attempt == 1
    lost = [e for e in events(settings, job_id) if (e.data or {}).get("reason") == "worker_lost"]
    assert len(lost) == 1 and "w1" in lost[0].message and lost[0].level == "warning"
    assert lifecycle.claim(settings, job_id, "w2").attempt == 2


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_worker_on_this_host_is_found_without_waiting_for_the_lease(settings, new_job):
    job_id = new_job()
    workers.beat(settings, "cube-cpu@gone", "cpu", "training.cpu", pid=dead_pid())
    workers.beat(settings, "cube-cpu@here", "cpu", "training.cpu")  # this process: alive
    lifecycle.claim(settings, job_id, "cube-cpu@gone")
    assert lifecycle.recover(settings, Sent()) == lifecycle.Recovery()  # its heartbeat is fresh
    dead = workers.dead_on_this_host(settings)
    assert dead == ["cube-cpu@gone"]
    assert lifecycle.recover(settings, Sent(), dead_workers=dead).requeued == [job_id]
    with session_scope(settings.database) as s:
        assert workers.live_counts(s, settings) == {"cpu": 1}  # the dead one left the registry


def test_recovery_resends_a_queued_job_whose_message_was_lost(settings, new_job):
    job_id = new_job()
    sent = Sent()
    workers.beat(settings, "cube-cpu@here", "cpu", "training.cpu")
    assert lifecycle.recover(settings, sent, queue_depth=lambda d: 0) == lifecycle.Recovery()  # just sent
    set_row(settings, job_id, created_at=time.time() - settings.resend_after_seconds - 1)
    assert lifecycle.recover(settings, sent, queue_depth=lambda d: 3) == lifecycle.Recovery()  # messages wait
    assert lifecycle.recover(settings, sent, queue_depth=lambda d: 0).resent == [job_id]
    assert lifecycle.recover(settings, sent, queue_depth=lambda d: 0) == lifecycle.Recovery()  # once per period
    assert sent == [("cube.train_job", (job_id,), "cpu")]
    assert [e for e in events(settings, job_id) if (e.data or {}).get("reason") == "message_lost"]
    assert row(settings, job_id).status == states.QUEUED


def test_no_resend_while_no_worker_serves_the_device(settings, new_job):
    job_id = new_job(device="cuda")
    workers.beat(settings, "cube-cpu@here", "cpu", "training.cpu")
    set_row(settings, job_id, created_at=time.time() - settings.resend_after_seconds - 1)
    assert lifecycle.recover(settings, nothing_sent, queue_depth=lambda d: 0) == lifecycle.Recovery()


def test_recovery_keeps_a_job_queued_when_the_broker_is_down(settings, new_job):
    job_id = new_job()
    lifecycle.claim(settings, job_id, "w1")
    stale(settings, job_id)

    def broker_down(*_, **__):
        raise ConnectionError("redis restarting")

    assert lifecycle.recover(settings, broker_down).requeued == [job_id]
    assert row(settings, job_id).status == states.QUEUED  # the next sweeps send it once the broker is back


# ---- devices and workers -------------------------------------------------------------------

def test_a_job_for_a_device_no_live_worker_serves_says_so(settings, new_job, client):
    c, sent = client
    workers.beat(settings, "cube-cpu@here", "cpu", "training.cpu")
    cpu_job, cuda_job = new_job(), new_job(device="cuda")
    assert sent.devices[-2:] == ["cpu", "cuda"]
    job = c.get(f"/v1/training-jobs/{cuda_job}").json()
    assert (job["status"], job["device"], job["hyperparameters"]["device"]) == ("queued", "cuda", "cuda")
    waiting = [e for e in c.get(f"/v1/training-jobs/{cuda_job}/events").json()["data"]
               if (e["data"] or {}).get("reason") == "no_worker"]
    assert len(waiting) == 1 and "training.cuda" in waiting[0]["message"] and waiting[0]["level"] == "warning"
    assert not [e for e in events(settings, cpu_job) if (e.data or {}).get("reason") == "no_worker"]
    assert c.get(f"/v1/training-jobs/{cpu_job}").json()["hyperparameters"]["device"] == "cpu"


def test_info_lists_the_worker_kinds_seen(settings, client):
    c, _ = client
    assert c.get("/info").json()["workers"] == {}
    workers.beat(settings, "cube-cpu@a", "cpu", "training.cpu")
    workers.beat(settings, "cube-cuda@b", "cuda", "training.cuda")
    with session_scope(settings.database) as s:
        s.execute(update(Worker).where(Worker.name == "cube-cuda@b")
                  .values(last_seen=time.time() - settings.job_lease_seconds - 1))
    seen = c.get("/info").json()["workers"]
    assert seen["cpu"]["live_workers"] == 1 and seen["cuda"]["live_workers"] == 0
    assert seen["cuda"]["last_seen"] < seen["cpu"]["last_seen"]
    workers.unregister(settings, "cube-cpu@a")
    assert "cpu" not in c.get("/info").json()["workers"]


def test_a_lease_shorter_than_three_heartbeats_is_refused():
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="at least 3 heartbeats"):
        Settings(heartbeat_seconds=5, job_lease_seconds=10)
