"""Sweeps on real `cube worker` processes: on PostgreSQL + Redis a sweep runs to one version, survives
a worker killed -9 in the middle of a trial, and stops when cancelled; the embedded default (SQLite
study storage, the SQL broker) runs one too."""
from __future__ import annotations

import pytest

from tests.e2e.test_service_e2e import embedded_service, pairs, service, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e

SMALL = {"n_epochs": 3, "batch_size": 64, "early_stopping_patience": 0, "tuning_budget": 1}


def start(service, ds, **overrides) -> dict:
    body = {"dataset_id": ds, "model": "swept", "architecture": {"kind": "cube", "grid": [2, 2, 2], "hidden": 8},
            "hyperparameters": SMALL, "search_space": {"channels": [2, 4], "learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}},
            "n_trials": 3, "max_parallel": 2, "pruner": {"kind": "none"}, **overrides}
    r = service.client.post("/v1/sweeps", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def wait_sweep(service, sweep_id: str, timeout: float) -> dict:
    try:
        return wait_for(lambda: (s := service.client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "running" and s,
                        timeout, f"sweep {sweep_id} to end", interval=0.3)
    except AssertionError:
        print(service.logs())
        raise


@pytest.mark.parametrize("which", ["postgresql+redis", "embedded"])
def test_a_sweep_runs_on_real_workers_to_one_version(which, request, pairs):
    service = request.getfixturevalue("service" if which == "postgresql+redis" else "embedded_service")
    service.start_worker()
    sweep = wait_sweep(service, start(service, service.upload(pairs))["id"], 240)
    assert sweep["status"] == "succeeded", sweep
    trials = service.client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["data"]
    assert len(trials) == 3 and all(t["state"] == "complete" and t["job_status"] == "succeeded" for t in trials)
    versions = service.client.get("/v1/models/swept").json()["versions"]
    assert len(versions) == 1 and versions[0]["id"] == sweep["model_version_id"]


def test_a_worker_killed_mid_trial_leaves_the_sweep_consistent(service, pairs):
    first = service.start_worker()
    sweep = start(service, service.upload(pairs), n_trials=2, max_parallel=1,
                  hyperparameters={**SMALL, "n_epochs": 30})
    trial_job = wait_for(lambda: (d := service.client.get("/v1/training-jobs", params={"metadata[sweep_id]": sweep["id"]})
                                  .json()["data"]) and d[-1], 30, "the first trial job")["id"]
    wait_for(lambda: service.job(trial_job)["progress"]["epoch"] >= 2, 90, "epoch 2 of the first trial")
    service.kill_worker(first)
    service.start_worker()  # finds its dead predecessor and queues the trial again: it resumes
    done = wait_sweep(service, sweep["id"], 300)
    assert done["status"] == "succeeded", done
    job = service.job(trial_job)
    assert job["status"] == "succeeded" and job["attempt"] == 2
    trials = service.client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["data"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    assert trials[0]["epochs"] == 30  # every epoch reported once to the study, across both attempts
    assert len(service.client.get("/v1/models/swept").json()["versions"]) == 1


def test_cancelling_a_sweep_stops_its_running_trials(service, pairs):
    service.start_worker()
    sweep = start(service, service.upload(pairs), n_trials=4, max_parallel=2, hyperparameters={**SMALL, "n_epochs": 200})
    wait_for(lambda: any(j["status"] == "running" for j in service.client.get(
        "/v1/training-jobs", params={"metadata[sweep_id]": sweep["id"]}).json()["data"]), 60, "a running trial")
    r = service.client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    wait_for(lambda: all(j["status"] == "cancelled" for j in service.client.get(
        "/v1/training-jobs", params={"metadata[sweep_id]": sweep["id"]}).json()["data"]), 60, "every trial cancelled")
    final = service.client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert final["status"] == "cancelled" and final["final_job_id"] is None and final["trials_created"] == 2
    assert service.client.get("/v1/models/swept").status_code == 404
