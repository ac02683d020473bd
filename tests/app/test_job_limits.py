"""Jobs a worker could never run well are refused at POST, before anything is queued."""
from __future__ import annotations

import pytest

from tests.conftest import TINY_CUBE


@pytest.fixture
def dataset(client, pairs_npz):
    c, _ = client
    return c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())},
                  data={"kind": "embedding_pairs", "name": "limits"}).json()["id"]


@pytest.mark.parametrize("architecture, message", [
    ({"kind": "cube", "grid": [128, 128, 128], "channels": 1}, "values per sample"),
    ({"kind": "cube", "grid": [1000, 1000, 1000]}, "parameters; the limit is"),
    ({"kind": "mlp", "hidden": 1_000_000_000}, "parameters; the limit is"),
    ({"kind": "mlp", "hidden": 10_000_000}, "parameters; the limit is"),
    ({"kind": "cube", "neighbourhood": 6.0}, "neighbourhood"),
])
def test_oversized_or_mistyped_architectures_are_422(client, dataset, architecture, message):
    c, sent = client
    r = c.post("/v1/training-jobs", json={"dataset_id": dataset, "architecture": architecture})
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]["message"]
    assert sent.sent == [] and c.get("/v1/training-jobs").json()["data"] == []


@pytest.mark.parametrize("hyper, message", [
    ({"learning_rate": float("nan")}, "learning_rate must be a positive number, got nan"),
    ({"temperature": float("inf")}, "temperature must be a positive number, got inf"),
    ({"n_epochs": 10**20}, "n_epochs must be an integer from 1 to 10000"),
    ({"amp": "no"}, "amp must be true or false"),
])
def test_non_finite_huge_or_mistyped_hyperparameters_are_422(client, dataset, hyper, message):
    import json

    c, sent = client
    body = json.dumps({"dataset_id": dataset, "architecture": TINY_CUBE, "hyperparameters": hyper})  # NaN as JSON's NaN token
    r = c.post("/v1/training-jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_hyperparameters", "hyperparameters") and message in error["message"]
    assert sent.sent == []


def test_a_text_upload_with_the_broker_down_is_503_and_leaves_nothing(client_for, sqlite_settings):
    from app.api.deps import get_enqueue

    c, _ = client_for(sqlite_settings)

    def broken(task, *args, device="cpu"):
        raise ConnectionError("broker unreachable")

    c.app.dependency_overrides[get_enqueue] = lambda: broken
    lines = "".join(f'{{"input": "question {i}?", "target": "the answer number {i}"}}\n' for i in range(30))
    r = c.post("/v1/datasets", files={"file": ("t.jsonl", lines.encode())}, data={"kind": "text_pairs"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "broker_unavailable"
    assert c.get("/v1/datasets").json()["data"] == []
    storage = sqlite_settings.storage_root / "datasets"
    assert not storage.exists() or not any(storage.iterdir())


def test_a_dataset_being_encoded_cannot_be_deleted(client):
    c, _ = client
    lines = "".join(f'{{"input": "question {i}?", "target": "the answer number {i}"}}\n' for i in range(30))
    ds = c.post("/v1/datasets", files={"file": ("t.jsonl", lines.encode())}, data={"kind": "text_pairs"}).json()
    assert ds["status"] == "validating"
    r = c.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 409 and "being encoded" in r.json()["error"]["message"]


def test_a_seed_inside_hyperparameters_that_disagrees_is_refused(client, dataset):
    c, sent = client
    r = c.post("/v1/training-jobs", json={"dataset_id": dataset, "architecture": TINY_CUBE, "seed": 1,
                                          "hyperparameters": {"seed": 7}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "hyperparameters.seed" and sent.sent == []
