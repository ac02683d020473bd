"""Descriptions and tags on models and versions (from the job, and by PATCH), deleting a version
(409 while an alias serves it or an evaluation of it runs; its files and finished evaluations go,
its number is never given again), and filtering the job
list by model, dataset, status and metadata. Bad input is a 4xx naming the parameter."""
from __future__ import annotations

import pytest

from app.storage import get_storage
from tests.conftest import make_version


@pytest.fixture
def registry(client, settings, pairs_npz):
    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    return c, settings, ds


def assert_refused(r, status: int, param: str, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"], error
    if code:
        assert error["code"] == code, error


def test_a_job_gives_its_description_and_tags_to_its_version(registry):
    c, settings, ds = registry
    v, _ = make_version(c, settings, ds, job={"description": "first try", "tags": ["baseline", "small"]})
    assert (v["description"], v["tags"]) == ("first try", ["baseline", "small"])
    job = c.get(f"/v1/training-jobs/{v['source_job_id']}").json()
    assert (job["description"], job["tags"]) == ("first try", ["baseline", "small"])
    plain, _ = make_version(c, settings, ds)
    assert (plain["description"], plain["tags"]) == (None, [])


def test_patch_sets_and_clears_descriptions_and_tags(registry):
    c, settings, ds = registry
    make_version(c, settings, ds)
    r = c.patch("/v1/models/m", json={"description": "maps questions to answers", "tags": ["qa"]})
    assert r.status_code == 200, r.text
    assert (r.json()["description"], r.json()["tags"]) == ("maps questions to answers", ["qa"])
    r = c.patch("/v1/models/m", json={"tags": ["qa", "prod"]})  # the description stays
    assert (r.json()["description"], r.json()["tags"]) == ("maps questions to answers", ["qa", "prod"])
    listed = c.get("/v1/models").json()["data"][0]
    assert (listed["description"], listed["tags"]) == ("maps questions to answers", ["qa", "prod"])
    r = c.patch("/v1/models/m/versions/1", json={"description": "good on chitchat", "tags": ["checked"]})
    assert r.status_code == 200 and r.json()["tags"] == ["checked"] and r.json()["version"] == 1
    assert c.get("/v1/models/m/versions/1").json()["description"] == "good on chitchat"
    r = c.patch("/v1/models/m/versions/1", json={"description": None, "tags": []})
    assert (r.json()["description"], r.json()["tags"]) == (None, [])
    assert c.get("/v1/models/m").json()["versions"][0]["tags"] == []


@pytest.mark.parametrize("body,param", [
    ({"tags": "qa"}, "tags"),                                 # not a list
    ({"tags": [1]}, "tags.0"),                                # not strings
    ({"tags": ["ok", ""]}, "tags.1"),                         # empty
    ({"tags": ["x" * 65]}, "tags.0"),                         # over 64 characters
    ({"tags": [f"t{i}" for i in range(33)]}, "tags"),         # over 32 tags
    ({"tags": ["a", "b", "a"]}, "tags.2"),                    # twice
    ({"tags": ["a\x00b"]}, "tags.0"),                         # not storable text
    ({"description": "d" * 2001}, "description"),            # over 2,000 characters
    ({"description": 5}, "description"),
    ({"name": "other"}, "name"),                              # not a field
    ({}, "description"),                                      # nothing to change
])
def test_bad_descriptions_and_tags_are_400_naming_them(registry, body, param):
    c, settings, ds = registry
    make_version(c, settings, ds)
    for path in ("/v1/models/m", "/v1/models/m/versions/1"):
        assert_refused(c.patch(path, json=body), 400, param)
    job = {"dataset_id": ds, "model": "m2", "hyperparameters": {"n_epochs": 1}, **body}
    if body and "name" not in body:  # a job has other fields: only the bad values are refused there
        assert_refused(c.post("/v1/training-jobs", json=job), 400, param)
    assert c.get("/v1/models/m").json()["tags"] == []


def test_patch_unknown_model_or_version_is_404(registry):
    c, settings, ds = registry
    make_version(c, settings, ds)
    assert_refused(c.patch("/v1/models/nope", json={"tags": []}), 404, "model")
    assert_refused(c.patch("/v1/models/m/versions/7", json={"tags": []}), 404, "version")


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_delete_a_version(registry):
    c, settings, ds = registry
    for seed in (1, 2):
        make_version(c, settings, ds, seed=seed)
    v1 = c.get("/v1/models/m/versions/1").json()
    storage = get_storage(settings)
    job = c.get(f"/v1/training-jobs/{v1['source_job_id']}").json()
    run = f"jobs/{job['id']}/run"
    assert storage.exists(f"{run}/model/model.json")
    c.put("/v1/models/m/aliases/prod", json={"version": 1})
    r = c.delete("/v1/models/m/versions/1")
    assert_refused(r, 409, "version", "version_in_use")
    assert "prod" in r.json()["error"]["message"]
    assert storage.exists(f"{run}/model/model.json") and c.get("/v1/models/m/versions/1").status_code == 200  # nothing half-done
    c.put("/v1/models/m/aliases/prod", json={"version": 2})
    r = c.delete("/v1/models/m/versions/1")
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "model.version", "id": v1["id"], "model": "m", "version": 1, "deleted": True}
    assert not storage.exists(run) and not storage.exists(f"{run}/model/model.json")
    assert c.get("/v1/models/m/versions/1").status_code == 404
    assert [v["version"] for v in c.get("/v1/models/m").json()["versions"]] == [2]
    assert_refused(c.post("/v1/transform", json={"model": "m", "version": 1, "input": [[0.0] * 16]}), 404, "version")
    assert c.post("/v1/transform", json={"model": "m", "input": [[0.0] * 16]}).json()["version"] == 2  # the default
    assert_refused(c.delete("/v1/models/m/versions/1"), 404, "version")
    assert_refused(c.delete("/v1/models/nope/versions/1"), 404, "model")
    # Delete the newest too: the next version is 3, not a reused 2 (a pinned caller never gets other weights).
    c.delete("/v1/models/m/aliases/prod")
    assert_refused(c.delete("/v1/models/m/versions/2"), 409, "version", "version_in_use")  # still the default
    c.delete("/v1/models/m/aliases/default")
    assert c.delete("/v1/models/m/versions/2").status_code == 200
    assert c.get("/v1/models/m").json()["latest_version"] is None
    v3, _ = make_version(c, settings, ds, seed=3)
    assert v3["version"] == 3


def test_filter_jobs_by_model_dataset_status_and_metadata(registry, pairs_npz):
    c, settings, ds = registry
    ds2 = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]

    def job(dataset, model, metadata=None):
        r = c.post("/v1/training-jobs", json={"dataset_id": dataset, "model": model, "metadata": metadata,
                                              "hyperparameters": {"n_epochs": 1}})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    a = job(ds, "alpha", {"team": "search", "round": 1})
    b = job(ds2, "alpha", {"team": "ads", "round": 2})
    d = job(ds2, "beta", {"team": "search", "note": "x y"})
    done, _ = make_version(c, settings, ds, model="gamma", job={"metadata": {"team": "search"}})

    def ids(query: str) -> list[str]:
        r = c.get(f"/v1/training-jobs?{query}")
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["data"]]

    assert ids("model=alpha") == [b, a]
    assert ids(f"dataset_id={ds2}") == [d, b]
    assert ids(f"model=alpha&dataset_id={ds2}") == [b]
    assert ids("metadata[team]=search") == [done["source_job_id"], d, a]
    assert ids("metadata[team]=search&model=beta") == [d]
    assert ids("metadata[team]=search&status=succeeded") == [done["source_job_id"]]
    assert ids("metadata[round]=2") == [b]             # a number matches its JSON text
    assert ids("metadata[note]=x%20y") == [d]
    assert ids("metadata[team]=nobody") == [] and ids("model=nobody") == []
    page = c.get("/v1/training-jobs?metadata[team]=search&limit=2").json()
    assert [j["id"] for j in page["data"]] == [done["source_job_id"], d] and page["has_more"]
    assert ids(f"metadata[team]=search&limit=2&after={d}") == [a]
    assert_refused(c.get("/v1/training-jobs?modle=alpha"), 400, "modle", "unknown_filter")
    assert_refused(c.get("/v1/training-jobs?metadata=search"), 400, "metadata", "unknown_filter")
    assert_refused(c.get("/v1/training-jobs?metadata[]=x"), 400, "metadata[]", "unknown_filter")
    assert_refused(c.get("/v1/training-jobs?status=done"), 400, "status")
    assert_refused(c.get("/v1/training-jobs?metadata[team]=a&metadata[team]=b"), 400, "metadata[team]")


def test_a_version_goes_with_its_finished_evaluations_but_not_while_one_runs(registry):
    import time

    from app.db import session_scope
    from app.models import ModelEvaluation

    c, settings, ds = registry
    for seed in (1, 2):
        make_version(c, settings, ds, seed=seed)  # the default alias follows the newest: version 1 is free
    version_id = c.get("/v1/models/m/versions/1").json()["id"]

    def evaluation(status: str) -> str:
        with session_scope(settings.database) as session:
            row = ModelEvaluation(id=f"ev_{status}", model_name="m", version_id=version_id, dataset_id=ds, status=status,
                                  attempt=1, created_at=time.time())
            session.add(row)
        return row.id

    evaluation("succeeded")
    running = evaluation("running")
    r = c.delete("/v1/models/m/versions/1")
    assert_refused(r, 409, "version", "version_in_use")
    assert "evaluation" in r.json()["error"]["message"]
    with session_scope(settings.database) as session:
        session.get(ModelEvaluation, running).status = "failed"
    assert c.delete("/v1/models/m/versions/1").status_code == 200
    with session_scope(settings.database) as session:
        assert session.query(ModelEvaluation).count() == 0
