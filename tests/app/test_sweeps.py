"""Sweeps through the API, their trial jobs run as the worker runs them (in this process), on SQLite
and PostgreSQL; tests/e2e/test_sweeps_e2e.py runs one on real workers."""
from __future__ import annotations

import io

import pytest

from app.queue import TRAIN_TASK
from app.services import training
from cube.pairs import PairData, save_pairs_npz
from tests.app.test_promotion import X, Y

SMALL = {"n_epochs": 3, "batch_size": 32, "early_stopping_patience": 0, "tuning_budget": 1}


@pytest.fixture
def dataset(client):
    """The promotion tests' 300 pairs (16d, a noisy rotation), uploaded."""
    c, _ = client
    buf = io.BytesIO()
    save_pairs_npz(buf, PairData(X, Y))
    r = c.post("/v1/datasets", files={"file": ("pairs.npz", buf.getvalue())}, data={"kind": "embedding_pairs", "name": "p"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def drain(settings, recorder) -> list[str]:
    """Run every training job the service queued, as a worker would, until none is left."""
    ran = []
    while recorder.sent:
        task, args = recorder.sent.pop(0)
        if task == TRAIN_TASK:
            training.run_job(settings, args[0], "w1", enqueue=recorder)
            ran.append(args[0])
    return ran


def create(c, dataset, **overrides):
    body = {"dataset_id": dataset, "model": "swept", "architecture": {"kind": "cube", "grid": [2, 2, 2]},
            "hyperparameters": SMALL, "search_space": {"channels": [2, 4], "learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}},
            "n_trials": 3, "max_parallel": 2, "pruner": {"kind": "none"}, **overrides}
    return c.post("/v1/sweeps", json=body)


def test_a_sweep_runs_its_trials_and_registers_the_best_settings_as_a_version(client, settings, dataset):
    c, recorder = client
    r = create(c, dataset)
    assert r.status_code == 202, r.text
    sweep = r.json()
    assert sweep["status"] == "running" and sweep["trials_created"] == 2  # max_parallel trials at once
    assert len([t for t, _ in recorder.sent if t == TRAIN_TASK]) == 2

    ran = drain(settings, recorder)
    assert len(ran) == 4  # three trials, then the final job
    sweep = c.get(f"/v1/sweeps/{sweep['id']}").json()
    assert sweep["status"] == "succeeded" and sweep["trials_created"] == 3, sweep
    trials = c.get(f"/v1/sweeps/{sweep['id']}/trials").json()["data"]
    assert [t["number"] for t in trials] == [0, 1, 2] and all(t["state"] == "complete" for t in trials)
    assert all(t["job_status"] == "succeeded" and len(t["intermediate"]) == 3 and t["params"]["channels"] in (2, 4)
               for t in trials)
    best = max(trials, key=lambda t: t["value"])
    assert sweep["best"]["number"] == best["number"] and sweep["best"]["value"] == pytest.approx(best["value"])
    assert sweep["best"]["job_id"] == best["job_id"]

    # Trials register nothing; the final job registers the one version, with the sweep's evidence.
    for t in trials:
        job = c.get(f"/v1/training-jobs/{t['job_id']}").json()
        assert job["model_version_id"] is None and job["sweep"] == {"id": sweep["id"], "role": "trial", "trial": t["number"]}
        assert job["hyperparameters"]["learning_rate"] == pytest.approx(t["params"]["learning_rate"])
    final = c.get(f"/v1/training-jobs/{sweep['final_job_id']}").json()
    assert final["sweep"]["role"] == "final" and final["model_version_id"] == sweep["model_version_id"]
    assert final["architecture"]["channels"] == best["params"]["channels"]
    versions = c.get("/v1/models/swept").json()["versions"]
    assert len(versions) == 1
    evaluation = c.get("/v1/models/swept/versions/1").json()["evaluation"]
    assert evaluation["sweep"]["sweep_id"] == sweep["id"] and len(evaluation["sweep"]["trials"]) == 3
    assert {"cube", "linear", "mlp", "ridge"} <= set(evaluation["methods"])
    listed = c.get("/v1/training-jobs", params={"metadata[sweep_id]": sweep["id"]}).json()["data"]
    assert len(listed) == 4
    events = [e["message"] for e in c.get(f"/v1/sweeps/{sweep['id']}/events").json()["data"]]
    assert events[0].startswith("sweep created") and events[-1].startswith("succeeded")
    assert c.get("/v1/sweeps").json()["data"][0]["id"] == sweep["id"]


def test_the_pruner_stops_a_hopeless_trial_which_ends_cancelled_without_a_version(client, settings, dataset):
    c, recorder = client
    # Seed 2 makes the sampler draw the good rate first (checked below), so the median of the
    # completed trials is a good one when the first hopeless trial runs.
    r = create(c, dataset, architecture={"kind": "linear"}, n_trials=4, max_parallel=1, seed=2,
               hyperparameters={**SMALL, "n_epochs": 4},
               search_space={"learning_rate": [0.05, 1e-9]}, pruner={"kind": "median", "startup_trials": 1, "warmup_epochs": 0})
    assert r.status_code == 202, r.text
    drain(settings, recorder)
    sweep = c.get(f"/v1/sweeps/{r.json()['id']}").json()
    assert sweep["status"] == "succeeded"
    trials = c.get(f"/v1/sweeps/{sweep['id']}/trials").json()["data"]
    assert trials[0]["params"]["learning_rate"] == 0.05 and trials[0]["state"] == "complete"
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned and all(t["state"] in ("complete", "pruned") for t in trials), trials
    for t in pruned:
        assert t["params"]["learning_rate"] == 1e-9 and t["job_status"] == "cancelled" and t["epochs"] < 4
        events = [e["message"] for e in c.get(f"/v1/training-jobs/{t['job_id']}/events").json()["data"]]
        assert any(m.startswith("pruned by the median pruner") for m in events)
        assert c.get(f"/v1/training-jobs/{t['job_id']}").json()["model_version_id"] is None
    assert sweep["best"]["params"]["learning_rate"] == 0.05
    assert len(c.get("/v1/models/swept").json()["versions"]) == 1


@pytest.mark.parametrize("space, param", [
    ({"steps": {"low": 6, "high": 2}}, "search_space.steps"),
    ({"stepz": [2, 4]}, "search_space.stepz"),
    ({"channels": []}, "search_space.channels"),
    ({"grid": [[4, 4, 4], [128, 128, 128]], "channels": [64]}, "search_space.grid"),
    ({}, "search_space"),
])
def test_a_bad_search_space_is_a_4xx_naming_the_setting(client, dataset, space, param):
    c, recorder = client
    r = create(c, dataset, search_space=space)
    assert r.status_code == 422 and r.json()["error"]["param"] == param, r.text
    assert not recorder.sent and c.get("/v1/sweeps").json()["data"] == []


def test_bad_sweep_settings_are_refused(client, dataset):
    c, _ = client
    r = create(c, dataset, objective="val_loss")  # the schema's own checks are 400s naming the field
    assert r.status_code == 400 and r.json()["error"]["param"] == "objective", r.text
    r = create(c, dataset, pruner={"kind": "median", "patience": 2})
    assert r.status_code == 422 and r.json()["error"]["param"] == "pruner", r.text
    assert create(c, dataset, n_trials=0).status_code == 400
    assert create(c, "ds_00000000000000000000000").status_code in (400, 404)
    assert c.get("/v1/sweeps/swp_nope").status_code == 404
    assert c.get("/v1/sweeps", params={"status": "sleeping"}).status_code == 400


def test_cancelling_a_sweep_cancels_its_queued_trials(client, settings, dataset):
    c, recorder = client
    sweep = create(c, dataset).json()
    r = c.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert c.post(f"/v1/sweeps/{sweep['id']}/cancel").json()["status"] == "cancelled"  # idempotent
    jobs = c.get("/v1/training-jobs", params={"metadata[sweep_id]": sweep["id"]}).json()["data"]
    assert len(jobs) == 2 and all(j["status"] == "cancelled" for j in jobs)
    drain(settings, recorder)  # the queued messages find nothing to run
    after = c.get(f"/v1/sweeps/{sweep['id']}").json()
    assert after["status"] == "cancelled" and after["final_job_id"] is None and after["trials_created"] == 2
    assert c.get("/v1/models/swept").status_code == 404


def test_a_dataset_a_running_sweep_searches_cannot_be_deleted(client, settings, dataset):
    c, recorder = client
    sweep = create(c, dataset).json()
    for job in c.get("/v1/training-jobs", params={"metadata[sweep_id]": sweep["id"]}).json()["data"]:
        c.post(f"/v1/training-jobs/{job['id']}/cancel")  # no job active: the sweep still needs the data
    r = c.delete(f"/v1/datasets/{dataset}")
    assert r.status_code == 409 and "running sweep" in r.json()["error"]["message"], r.text
    c.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert c.delete(f"/v1/datasets/{dataset}").status_code == 200
