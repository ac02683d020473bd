"""A job whose architecture or learning rate says "auto": a built-in search on its worker picks them,
says so in its events, and the version's report records the search; explicit values run as given."""
from __future__ import annotations

import pytest

from app.services import training
from tests.app.test_sweeps import dataset  # noqa: F401  (a fixture: the promotion tests' pairs, uploaded)


def test_auto_values_are_searched_on_the_worker_and_recorded_in_the_version(client, settings, dataset):
    c, _ = client
    r = c.post("/v1/training-jobs", json={
        "dataset_id": dataset, "model": "auto", "architecture": {"kind": "cube", "grid": [2, 2, 2], "channels": "auto"},
        "hyperparameters": {"learning_rate": "auto", "n_epochs": 3, "batch_size": 32, "tuning_budget": 1}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["auto_search"] == {"channels": [8, 16, 32], "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}}
    assert job["architecture"] == {"kind": "cube", "grid": [2, 2, 2]}  # the searched value is not fixed here
    assert training.run_job(settings, job["id"], "w1").outcome == "claimed"
    done = c.get(f"/v1/training-jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done
    events = [e["message"] for e in c.get(f"/v1/training-jobs/{job['id']}/events").json()["data"]]
    assert "\"auto\" searches channels, learning_rate" in events[0]
    assert any(m.startswith("\"auto\": searching channels, learning_rate over 10 trial(s)") for m in events)
    assert any(m.startswith("\"auto\" chose") for m in events)
    evaluation = c.get("/v1/models/auto/versions/1").json()["evaluation"]
    searched = evaluation["auto_search"]
    assert len(searched["trials"]) == 10 and searched["objective"] == "val_mrr"
    chosen = searched["best"]["params"]
    assert evaluation["model"]["config"]["channels"] == chosen["channels"]
    assert evaluation["model"]["config"]["grid"] == [2, 2, 2]  # the explicit value ran as given
    # The chosen learning rate is the centre of the final experiment's grid, as for any job.
    assert evaluation["tuning"]["learning_rates"][0] == pytest.approx(chosen["learning_rate"])
    assert {"cube", "linear", "mlp", "ridge"} <= set(evaluation["methods"])


def test_an_auto_architecture_searches_the_family(client, dataset):
    c, _ = client
    r = c.post("/v1/training-jobs", json={"dataset_id": dataset, "architecture": {"kind": "auto"}})
    assert r.status_code == 202, r.text
    assert r.json()["auto_search"] == {"arch": ["cube", "mlp", "resmlp", "linear"]}
    assert r.json()["architecture"]["kind"] == "cube"


def test_an_auto_search_whose_largest_model_is_too_big_is_refused(client, dataset):
    c, sent = client
    r = c.post("/v1/training-jobs", json={"dataset_id": dataset, "architecture": {"kind": "cube", "grid": "auto",
                                                                                  "channels": 8000}})
    assert r.status_code == 422 and r.json()["error"]["param"] == "architecture.grid", r.text
    assert not sent.sent
