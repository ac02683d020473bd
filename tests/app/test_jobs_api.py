"""Training jobs over HTTP (the queue replaced by a recorder; the pipeline is tested in tests/worker)."""
from __future__ import annotations

import pytest

from cube.config import TrainConfig

from tests.conftest import TINY_CUBE


@pytest.fixture
def dataset(client, pairs_npz):
    c, _ = client
    r = c.post("/v1/datasets", files={"file": ("pairs.npz", pairs_npz.read_bytes())},
               data={"kind": "embedding_pairs", "name": "synthetic pairs"})
    return r.json()["id"]


def job_body(dataset_id, **extra):
    return {"dataset_id": dataset_id, "architecture": TINY_CUBE, "hyperparameters": {"n_epochs": 2}, **extra}


def test_create_commits_then_enqueues_by_name(client, dataset):
    c, sent = client
    r = c.post("/v1/training-jobs", json=job_body(dataset, hyperparameters={"n_epochs": 2, "weight_decay": "auto"}))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["id"].startswith("job_") and job["object"] == "training_job" and job["status"] == "queued"
    assert job["model"] == "synthetic-pairs"  # from the dataset's name
    assert job["hyperparameters"]["weight_decay"] == TrainConfig().weight_decay  # "auto": the default
    assert job["auto_search"] is None  # nothing searched: weight decay's "auto" is its default
    assert job["hyperparameters"]["n_epochs"] == 2
    assert job["progress"] == {"epoch": 0, "n_epochs": 2, "step": 0, "total_steps": None, "fraction": 0.0}
    assert sent.sent == [("cube.train_job", (job["id"],))]
    assert c.get(f"/v1/training-jobs/{job['id']}").json()["status"] == "queued"
    events = c.get(f"/v1/training-jobs/{job['id']}/events").json()["data"]
    assert events[0]["message"] == "job created (queued)"


@pytest.mark.parametrize("body_update, status, param", [
    ({"hyperparameters": {"n_epochs": 0}}, 422, "hyperparameters"),
    ({"hyperparameters": {"epochs": 3}}, 400, "hyperparameters.epochs"),
    ({"architecture": {"kind": "cube", "grid": [2, 2]}}, 422, "architecture"),
    ({"architecture": {"kind": "transformer"}}, 400, "architecture.kind"),
    ({"validation": {"fraction": 0.7}}, 422, "validation.fraction"),
    ({"mode": "telepathy"}, 400, "mode"),
    ({"model": "bad name!"}, 400, "model"),
    ({"surprise": 1}, 400, "surprise"),
    ({"seed": 10**30}, 400, "seed"),
    ({"architecture": {"kind": "cube", "d_in": 5}}, 400, "architecture.d_in"),
    ({"hyperparameters": {"n_epochs": "abc"}}, 422, "hyperparameters"),
    ({"hyperparameters": {"device": "tpu"}}, 400, "hyperparameters.device"),
    ({"hyperparameters": {"device": "cuda"}}, 400, "hyperparameters.device"),  # the job's device is "cpu"
    ({"device": "tpu"}, 400, "device"),
    ({"architecture": {"kind": "mlp", "hidden": -1}}, 422, "architecture"),
    ({"architecture": {"kind": "resmlp", "input_norm": True}}, 422, "architecture"),
    ({"validation": {"eval_filter": "answers"}}, 400, "validation.eval_filter"),
    ({"hyperparameters": {"tuning_budget": 0}}, 422, "hyperparameters"),
    ({"hyperparameters": {"source_weights": [-1.0]}}, 422, "hyperparameters"),
])
def test_invalid_jobs_are_refused_before_anything_is_queued(client, dataset, body_update, status, param):
    c, sent = client
    r = c.post("/v1/training-jobs", json={**job_body(dataset), **body_update})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    assert sent.sent == [] and c.get("/v1/training-jobs").json()["data"] == []


def test_tuning_budget_residual_mlp_and_question_scoring_are_job_settings(client, dataset):
    c, _ = client
    body = job_body(dataset, architecture={"kind": "resmlp", "hidden": 16}, validation={"eval_filter": "question"},
                    hyperparameters={"n_epochs": 2, "tuning_budget": 1})
    r = c.post("/v1/training-jobs", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["architecture"]["kind"] == "resmlp" and job["hyperparameters"]["tuning_budget"] == 1
    assert job["validation"]["eval_filter"] == "question"
    assert c.post("/v1/training-jobs", json=job_body(dataset)).json()["hyperparameters"]["tuning_budget"] == 3


def test_unknown_dataset_is_404(client):
    c, _ = client
    r = c.post("/v1/training-jobs", json=job_body("ds_nope"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert c.get("/v1/training-jobs/job_nope").status_code == 404


def test_malformed_json_is_400(client):
    c, _ = client
    r = c.post("/v1/training-jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()


def test_list_filters_and_paginates(client, dataset):
    c, _ = client
    ids = [c.post("/v1/training-jobs", json=job_body(dataset)).json()["id"] for _ in range(3)]
    c.post(f"/v1/training-jobs/{ids[0]}/cancel")
    page = c.get("/v1/training-jobs?limit=1&status=queued").json()
    assert [j["id"] for j in page["data"]] == [ids[2]] and page["has_more"]
    page2 = c.get(f"/v1/training-jobs?limit=5&status=queued&after={ids[2]}").json()
    assert [j["id"] for j in page2["data"]] == [ids[1]] and not page2["has_more"]
    assert [j["id"] for j in c.get("/v1/training-jobs?status=cancelled").json()["data"]] == [ids[0]]
    assert c.get("/v1/training-jobs?status=sleeping").status_code == 400
    assert c.get("/v1/training-jobs?limit=1000").status_code == 400


def test_cancel_is_idempotent_and_terminal(client, dataset, settings):
    c, _ = client
    job = c.post("/v1/training-jobs", json=job_body(dataset)).json()
    first = c.post(f"/v1/training-jobs/{job['id']}/cancel")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert c.post(f"/v1/training-jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    # A cancelled job's message, if a worker gets it, finds nothing to claim.
    from app.jobs.lifecycle import claim

    assert claim(settings, job["id"], "w1").outcome == "finished"


def test_cancel_of_a_running_job_sets_the_flag(client, dataset, settings):
    c, _ = client
    job = c.post("/v1/training-jobs", json=job_body(dataset)).json()
    from app.jobs.lifecycle import claim

    assert claim(settings, job["id"], "w1").outcome == "claimed"
    r = c.post(f"/v1/training-jobs/{job['id']}/cancel").json()
    assert r["status"] == "running" and r["cancel_requested_at"] is not None


def test_cancel_of_a_failed_job_is_409(client, dataset, settings):
    c, _ = client
    job = c.post("/v1/training-jobs", json=job_body(dataset)).json()
    from app.jobs.lifecycle import claim, finish

    attempt = claim(settings, job["id"], "w1").attempt
    assert finish(settings, job["id"], attempt, "failed", code="training_error", message="boom")
    r = c.post(f"/v1/training-jobs/{job['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "illegal_state"
    assert c.get(f"/v1/training-jobs/{job['id']}").json()["error"] == {"code": "training_error", "message": "boom"}


def test_dataset_in_use_cannot_be_deleted(client, dataset):
    c, _ = client
    c.post("/v1/training-jobs", json=job_body(dataset))
    r = c.delete(f"/v1/datasets/{dataset}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "dataset_in_use"


def test_broker_down_fails_the_job_with_503(client_for, sqlite_settings, pairs_npz):
    from app.api.deps import get_enqueue

    c, _ = client_for(sqlite_settings)

    def broken(task, *args, device="cpu"):
        raise ConnectionError("broker unreachable")

    c.app.dependency_overrides[get_enqueue] = lambda: broken
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    r = c.post("/v1/training-jobs", json=job_body(ds))
    assert r.status_code == 503 and r.json()["error"]["code"] == "broker_unavailable"
    job = c.get("/v1/training-jobs").json()["data"][0]
    assert job["status"] == "failed" and job["error"]["code"] == "broker_unavailable"


def test_ops_endpoints(client):
    c, _ = client
    assert c.get("/livez").json() == {"status": "ok"}
    ready = c.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    assert c.get("/info").json()["auth"] == "off"
    r = c.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_readyz_says_what_is_down(client_for, sqlite_settings):
    c, _ = client_for(sqlite_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))
    r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok" and r.json()["checks"]["broker"].startswith("error")
