"""Model versions, aliases and /v1/transform (versions registered directly from small untrained
models: training and evaluation are tests/worker/test_pipeline.py's subject)."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from tests.conftest import make_version

EVALUATION = {"main": "cube", "n": {"train": 300, "val": 50, "test": 50}, "methods": {"ridge": {"recall_at_1": 0.5}}}


@pytest.fixture
def versions(client, settings, pairs_npz):
    """Model "m" with two versions whose weights differ: the client and {version: the model saved}."""
    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    saved = {}
    for seed in (1, 2):
        version, net = make_version(c, settings, ds, seed=seed, evaluation=EVALUATION)
        saved[version["version"]] = net
    return c, saved


@pytest.fixture
def trained(versions):
    return versions[0]


def test_versions_and_evaluation(trained):
    c = trained
    models = c.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["m"] and models["data"][0]["latest_version"] == 2
    model = c.get("/v1/models/m").json()
    assert [v["version"] for v in model["versions"]] == [1, 2]
    v1 = c.get("/v1/models/m/versions/1").json()
    assert v1["id"].startswith("mv_") and v1["parameters"] > 0
    # The made-up evaluation has no score for the trained model, so the gate rejects it; the job's
    # promotion mode "always" moved `default` anyway, and the record says both.
    assert v1["status"] == "rejected" and v1["promotion"]["promoted"] is True
    assert v1["promotion"]["reasons"] == ["the held-out report has no mrr for the trained model (cube)"]
    assert v1["evaluation"] == EVALUATION and (v1["dim_in"], v1["dim_out"]) == (16, 16)
    job = c.get(f"/v1/training-jobs/{v1['source_job_id']}").json()
    assert job["status"] == "succeeded" and job["model_version_id"] == v1["id"]
    assert c.get("/v1/models/m/versions/9").status_code == 404
    assert c.get("/v1/models/m/versions/99999999999").status_code == 400  # not a database error
    assert c.put("/v1/models/m/aliases/a", json={"version": 10**12}).status_code == 400
    assert c.get("/v1/models/nope").status_code == 404


def test_transform_floats_and_base64(versions):
    c, saved = versions
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    r = c.post("/v1/transform", json={"model": "m", "input": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["version"] == 2 and body["usage"] == {"vectors": 3} and body["dim"] == 16
    y = np.array([d["embedding"] for d in body["data"]])
    assert y.shape == (3, 16) and [d["index"] for d in body["data"]] == [0, 1, 2]
    with torch.no_grad():
        assert np.allclose(y, saved[2](torch.from_numpy(x)).numpy(), atol=1e-5)  # version 2's own weights
        assert not np.allclose(y, saved[1](torch.from_numpy(x)).numpy(), atol=1e-3)
    assert r.headers["x-model-version"].startswith("mv_") and float(r.headers["x-inference-time"]) >= 0
    b64 = base64.b64encode(x.astype("<f4").tobytes()).decode()
    r2 = c.post("/v1/transform", json={"model": "m", "version": 2, "input": b64, "dim": 16, "encoding_format": "base64",
                                       "normalize": True}).json()
    y2 = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in r2["data"]])
    assert np.allclose(y2, y / np.linalg.norm(y, axis=1, keepdims=True), atol=1e-5)


def test_transform_serves_a_cube_through_its_fast_path(versions):
    """The service's cube is cube.fast_inference's eval-only rewrite (the test above pins its outputs
    against the saved model's eager forward)."""
    from cube.fast_inference import FastCube

    c, _ = versions
    r = c.post("/v1/transform", json={"model": "m", "input": np.ones((2, 16)).tolist()})
    assert r.status_code == 200, r.text
    loaded = c.app.state.model_cache.peek(r.headers["x-model-version"])
    assert isinstance(loaded.model, FastCube)


def test_alias_moves_serving_at_once(trained):
    c = trained
    assert c.put("/v1/models/m/aliases/prod", json={"version": 1}).json() == {"object": "model.alias", "model": "m",
                                                                              "alias": "prod", "version": 1}
    x = [[0.1] * 16]
    assert c.post("/v1/transform", json={"model": "m", "alias": "prod", "input": x}).json()["version"] == 1
    assert c.get("/v1/models/m/versions/1").json()["aliases"] == ["prod"]
    c.put("/v1/models/m/aliases/prod", json={"version": 2})
    assert c.post("/v1/transform", json={"model": "m", "alias": "prod", "input": x}).json()["version"] == 2
    assert c.get("/v1/models/m").json()["aliases"] == {"default": 2, "prod": 2}
    assert c.delete("/v1/models/m/aliases/prod").status_code == 200
    r = c.post("/v1/transform", json={"model": "m", "alias": "prod", "input": x})
    assert r.status_code == 404 and r.json()["error"]["param"] == "alias"
    assert c.put("/v1/models/m/aliases/prod", json={"version": 7}).status_code == 404
    assert c.put("/v1/models/m/aliases/prod", json={"version": 0}).status_code == 400


BAD_REQUESTS = [
    ({"model": "m", "input": [[0.1] * 15]}, 422, "dimension_mismatch"),
    ({"model": "m", "input": [[0.1] * 16, [0.1] * 17]}, 422, "dimension_mismatch"),
    ({"model": "m", "input": []}, 422, "empty_input"),
    ({"model": "m", "input": [[1e39] * 16]}, 422, "non_finite"),
    ({"model": "m", "input": "not base64!!"}, 400, "invalid_request"),
    ({"model": "m", "input": base64.b64encode(b"\0" * 12).decode()}, 422, "dimension_mismatch"),
    ({"model": "m", "input": ["some text"]}, 422, "text_not_supported"),
    ({"model": "m", "input": [[0.1] * 16] * 5000}, 413, "too_large"),
    ({"model": "nope", "input": [[0.1] * 16]}, 404, "not_found"),
    ({"model": "m", "version": 1, "alias": "prod", "input": [[0.1] * 16]}, 400, "invalid_request"),
    ({"model": "m"}, 400, "invalid_request"),
    ({"model": "m", "input": base64.b64encode(b"\0" * 64).decode(), "dim": 8}, 422, "dimension_mismatch"),
    ({"model": "m", "version": 10**12, "input": [[0.1] * 16]}, 400, "invalid_request"),
]


def test_bad_transform_requests(trained):
    for body, status, code in BAD_REQUESTS:
        r = trained.post("/v1/transform", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["code"] == code, (body, r.text)
    r = trained.post("/v1/transform", content=b'{"model": "m", "input": [[NaN' + b', 0.1' * 15 + b']]}',
                     headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
