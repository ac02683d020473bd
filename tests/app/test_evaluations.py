"""Evaluations on a user's dataset and comparisons: the API's checks, and the evaluation itself run as
the worker runs it (tests/e2e/test_evaluations_e2e.py runs it on real workers)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from app.services import training
from app.services.encoding import encode_dataset
from app.services.evaluation_run import run_evaluation
from cube.config import SplitConfig
from cube.pairs import PairData, save_pairs_npz, split_pairs
from tests.app.test_owners import tenants  # noqa: F401  (a fixture: two train keys and an admin key)
from tests.app.test_promotion import LINEAR, TRAINED, UNTRAINED, X, Y
from tests.worker.test_text_datasets import fake_teacher  # noqa: F401  (a fixture: a stand-in teacher)

FOREIGN_X = np.random.default_rng(7).standard_normal((120, 16)).astype(np.float32)


def npz(x, y) -> bytes:
    buf = io.BytesIO()
    save_pairs_npz(buf, PairData(x, y))
    return buf.getvalue()


@pytest.fixture
def model(client, settings):
    """Model "lin" with version 1 (barely trained) and version 2 (trained) on the linear map, the
    training dataset's id, and an upload helper."""
    c, _ = client

    def upload(data: bytes, name="d") -> str:
        r = c.post("/v1/datasets", files={"file": (f"{name}.npz", data)}, data={"kind": "embedding_pairs", "name": name})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    train_ds = upload(npz(X, Y), "train")
    for hyper in (UNTRAINED, TRAINED):
        r = c.post("/v1/training-jobs", json={"dataset_id": train_ds, "model": "lin", "architecture": LINEAR,
                                               "hyperparameters": hyper})
        assert training.run_job(settings, r.json()["id"], "w1").outcome == "claimed"
    return c, train_ds, upload


def evaluate(c, settings, version: int, dataset_id: str) -> dict:
    r = c.post(f"/v1/models/lin/versions/{version}/evaluations", json={"dataset_id": dataset_id})
    assert r.status_code == 202, r.text
    ev = r.json()
    assert ev["status"] == "queued" and ev["object"] == "model.evaluation" and ev["result"] is None
    assert run_evaluation(settings, ev["id"]) == "succeeded"
    return c.get(f"/v1/models/lin/versions/{version}/evaluations/{ev['id']}").json()


def test_the_training_test_split_reproduces_the_training_report(client, settings, model):
    """The same metrics and baselines as the report: evaluated on exactly its test split, the version
    and every closed-form baseline score what the report says."""
    c, _, upload = model
    v2 = c.get("/v1/models/lin/versions/2").json()
    split = split_pairs(PairData(X, Y), SplitConfig.from_dict({k: v for k, v in v2["evaluation"]["split"].items()}))
    ev = evaluate(c, settings, 2, upload(npz(X[split.test], Y[split.test]), "test-split"))
    result = ev["result"]
    assert ev["status"] == "succeeded" and ev["attempt"] == 1 and ev["finished_at"] >= ev["started_at"]
    assert result["n"] == {"test": len(split.test)} and result["main"] == "linear"
    assert set(result["methods"]) == {"linear", "identity", "mean", "ridge", "procrustes"}
    assert set(result["not_shown"]) == {"mlp", "resmlp"} and result["centered_on"] == "training_targets"
    for method, metrics in result["methods"].items():
        for key, value in metrics.items():
            assert value == pytest.approx(v2["evaluation"]["methods"][method][key], abs=1e-6), (method, key)


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_compare_two_versions_on_foreign_data(client, settings, model):
    c, _, upload = model
    foreign = upload(npz(FOREIGN_X, FOREIGN_X @ np.linalg.lstsq(X, Y, rcond=None)[0]), "foreign")
    r = c.get(f"/v1/models/lin/compare?versions=1,2&dataset_id={foreign}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "evaluation_missing"
    assert r.json()["error"]["missing_versions"] == [1, 2] and f"versions/1/evaluations" in r.json()["error"]["message"]
    first = evaluate(c, settings, 1, foreign)
    r = c.get(f"/v1/models/lin/compare?versions=1,2&dataset_id={foreign}")
    assert r.status_code == 409 and r.json()["error"]["missing_versions"] == [2]
    second = evaluate(c, settings, 2, foreign)
    listed = c.get(f"/v1/models/lin/versions/2/evaluations?dataset_id={foreign}").json()["data"]
    assert [e["id"] for e in listed] == [second["id"]]
    comparison = c.get(f"/v1/models/lin/compare?versions=2,1&dataset_id={foreign}").json()
    assert comparison["object"] == "model.comparison" and comparison["n"] == 120
    assert [v["version"] for v in comparison["versions"]] == [2, 1]
    assert [v["evaluation_id"] for v in comparison["versions"]] == [second["id"], first["id"]]
    trained, barely = comparison["versions"]
    assert trained["metrics"]["mrr"] > 0.9 > 0.3 > barely["metrics"]["mrr"]  # measured: 1.0 and about 0.05
    assert comparison["best"] == {"recall_at_1": 2, "recall_at_10": 2, "mrr": 2}
    # Ridge is fitted on each version's own training data: here the same pairs, so the same scores.
    assert trained["methods"]["ridge"] == barely["methods"]["ridge"]


def test_bad_evaluation_requests_name_what_is_wrong(client, settings, model):
    c, train_ds, upload = model
    wrong_dim = upload(npz(X[:, :8], Y[:, :8]), "narrow")
    cases = [
        ("/v1/models/lin/versions/2/evaluations", {"dataset_id": wrong_dim}, 422, "dimension_mismatch", "dataset_id"),
        ("/v1/models/lin/versions/2/evaluations", {"dataset_id": "ds_nope"}, 404, "not_found", "dataset_id"),
        ("/v1/models/lin/versions/9/evaluations", {"dataset_id": train_ds}, 404, "not_found", "version"),
        ("/v1/models/nope/versions/1/evaluations", {"dataset_id": train_ds}, 404, "not_found", "model"),
        ("/v1/models/lin/versions/1/evaluations", {}, 400, None, "dataset_id"),
        ("/v1/models/lin/versions/1/evaluations", {"dataset_id": train_ds, "x": 1}, 400, None, "x"),
    ]
    for path, body, status, code, param in cases:
        r = c.post(path, json=body)
        assert r.status_code == status, (body, r.text)
        assert param in (r.json()["error"]["param"] or ""), (body, r.json())
        if code:
            assert r.json()["error"]["code"] == code, (body, r.json())
    assert "dataset" in c.post("/v1/models/lin/versions/2/evaluations", json={"dataset_id": wrong_dim}).json()["error"]["message"]
    for query, param in (("versions=1&dataset_id=" + train_ds, "versions"), ("versions=1,x&dataset_id=" + train_ds, "versions"),
                         ("versions=1,9&dataset_id=" + train_ds, "version"), ("versions=1,2&dataset_id=ds_nope", "dataset_id"),
                         ("versions=1,2", "dataset_id")):
        r = c.get(f"/v1/models/lin/compare?{query}")
        assert 400 <= r.status_code < 500 and param in (r.json()["error"]["param"] or ""), (query, r.text)
    r = c.get("/v1/models/lin/versions/1/evaluations/eval_nope")
    assert r.status_code == 404 and r.json()["error"]["param"] == "evaluation_id"
    assert c.get("/v1/models/lin/versions/1/evaluations?after=bogus").status_code == 400


def test_without_its_training_data_only_identity_is_shown(client, settings, model):
    c, train_ds, upload = model
    foreign = upload(npz(FOREIGN_X, FOREIGN_X), "foreign")
    assert c.delete(f"/v1/datasets/{train_ds}").status_code == 200
    result = evaluate(c, settings, 2, foreign)["result"]
    assert set(result["methods"]) == {"linear", "identity"} and result["centered_on"] == "held_out_targets"
    assert set(result["not_shown"]) == {"mlp", "resmlp", "mean", "ridge", "procrustes"}
    assert result["methods"]["identity"]["mrr"] == 1.0  # targets equal inputs here


def test_an_evaluation_whose_dataset_went_fails_with_the_reason(client, settings, model):
    c, _, upload = model
    foreign = upload(npz(FOREIGN_X, FOREIGN_X), "foreign")
    ev = c.post("/v1/models/lin/versions/2/evaluations", json={"dataset_id": foreign}).json()
    assert c.delete(f"/v1/datasets/{foreign}").status_code == 200
    assert run_evaluation(settings, ev["id"]) == "failed"
    done = c.get(f"/v1/models/lin/versions/2/evaluations/{ev['id']}").json()
    assert done["status"] == "failed" and done["error"]["code"] == "dataset_gone" and foreign in done["error"]["message"]
    assert run_evaluation(settings, ev["id"]) == "skipped"  # a second delivery finds nothing to do


def test_evaluations_follow_the_owners_of_models_and_datasets(tenants, settings):
    c, _, h, s = tenants
    ds_a = c.post("/v1/datasets", files={"file": ("a.npz", npz(X, Y))}, data={"kind": "embedding_pairs"}, headers=h["a"]).json()["id"]
    ds_b = c.post("/v1/datasets", files={"file": ("b.npz", npz(X, Y))}, data={"kind": "embedding_pairs"}, headers=h["b"]).json()["id"]
    job = c.post("/v1/training-jobs", json={"dataset_id": ds_a, "model": "lin", "architecture": LINEAR,
                                             "hyperparameters": UNTRAINED}, headers=h["a"]).json()["id"]
    training.run_job(s, job, "w1")
    path = "/v1/models/lin/versions/1/evaluations"
    r = c.post(path, json={"dataset_id": ds_b}, headers=h["b"])  # B: A's model is unknown
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = c.post(path, json={"dataset_id": ds_b}, headers=h["a"])  # A: B's dataset is unknown
    assert r.status_code == 404 and r.json()["error"]["param"] == "dataset_id"
    ev = c.post(path, json={"dataset_id": ds_a}, headers=h["a"])
    assert ev.status_code == 202, ev.text
    assert c.get(f"{path}/{ev.json()['id']}", headers=h["b"]).status_code == 404
    assert c.get(f"/v1/models/lin/compare?versions=1,2&dataset_id={ds_a}", headers=h["b"]).status_code == 404
    assert [e["id"] for e in c.get(path, headers=h["admin"]).json()["data"]] == [ev.json()["id"]]


def test_text_pairs_are_evaluated_as_the_versions_teacher_encodes_them(client, settings, fake_teacher):
    c, _ = client
    ids = {}
    for name, teacher, first in (("qa", "hash", 0), ("heldout", "hash", 100), ("elsewhere", "other", 100)):
        lines = [json.dumps({"input": f"question {i}?", "target": f"answer {i} is here", "group": f"c{i % 12}"})
                 for i in range(first, first + 60)]
        r = c.post("/v1/datasets", files={"file": (f"{name}.jsonl", "\n".join(lines).encode())},
                   data={"kind": "text_pairs", "teacher": teacher, "name": name})
        ids[name] = r.json()["id"]
        assert encode_dataset(settings, ids[name], lambda *a, **k: None) == "ready"
    job = c.post("/v1/training-jobs", json={"dataset_id": ids["qa"], "architecture": LINEAR,
                                            "hyperparameters": {"n_epochs": 1, "tuning_budget": 1}}).json()
    training.run_job(settings, job["id"], "w1")
    r = c.post("/v1/models/qa/versions/1/evaluations", json={"dataset_id": ids["elsewhere"]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "teacher_mismatch", r.text
    assert r.json()["error"]["param"] == "dataset_id" and "'other'" in r.json()["error"]["message"]
    ev = c.post("/v1/models/qa/versions/1/evaluations", json={"dataset_id": ids["heldout"]}).json()
    assert run_evaluation(settings, ev["id"]) == "succeeded"
    result = c.get(f"/v1/models/qa/versions/1/evaluations/{ev['id']}").json()["result"]
    assert result["n"] == {"test": 60} and 0 <= result["methods"]["linear"]["mrr"] <= 1
