"""/openapi.json tells the truth: errors in the service's error shape (never FastAPI's `{"detail"}`),
every operation listing the error statuses it gives, and real responses (a success and errors for
every operation, on a service with auth on) matching what the schema lists. The responses are
checked as they arrive by tests/openapi_conformance.py, as in every test that uses `client_for`;
the schema fuzz test (tests/app/fuzzing.py) checks generated requests for every operation the same way."""
from __future__ import annotations

import json

import httpx
import pytest

from app.db import get_sessionmaker
from app.services import keys
from tests.conftest import make_version
from tests.openapi_conformance import Conformance, SchemaDrift, watch

ERROR = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture
def secured(client_for, sqlite_settings):
    s = sqlite_settings.model_copy(update={"require_auth": True})
    c, _ = client_for(s)
    with get_sessionmaker(s.database)() as session:
        secrets = {scope: keys.create_key(session, scope)[1] for scope in ("admin", "train", "transform")}
    c.headers["Authorization"] = f"Bearer {secrets['admin']}"
    return c, s, {scope: {"Authorization": f"Bearer {secret}"} for scope, secret in secrets.items()}


def test_the_schema_documents_the_error_shape_not_fastapis(client):
    c, _ = client
    schema = c.get("/openapi.json").json()
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text and '"detail"' not in text
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            assert responses["400"]["content"]["application/json"]["schema"] == ERROR, (method, path)
            for status, declared in responses.items():
                if status.startswith("4") or (status == "503" and path != "/readyz"):
                    assert declared["content"]["application/json"]["schema"] == ERROR, (method, path, status)
            if path.startswith("/v1/"):
                assert {"401", "403", "503"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
    transform = schema["paths"]["/v1/transform"]["post"]["responses"]
    assert {"404", "413", "422", "429"} <= set(transform)
    assert "409" in schema["paths"]["/v1/models/{name}/versions/{version}"]["delete"]["responses"]
    assert "401" not in schema["paths"]["/livez"]["get"]["responses"]
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]


def test_real_responses_of_every_operation_match_the_schema(secured, pairs_npz):
    c, settings, key = secured
    npz = pairs_npz.read_bytes()

    def upload(**data):
        return c.post("/v1/datasets", files={"file": ("p.npz", npz)}, data={"kind": "embedding_pairs", **data})

    def job(dataset_id, **extra):
        return c.post("/v1/training-jobs", json={"dataset_id": dataset_id, "model": "m", "hyperparameters": {"n_epochs": 1},
                                                 **extra})

    conformance = watch(c, c.app)  # client_for's own check raises on drift; this one also records what it saw
    def expect(response, status: int) -> None:
        assert response.status_code == status, (response.request.method, response.request.url, response.text)

    # operations and health
    for path in ("/livez", "/readyz", "/metrics", "/info"):
        expect(c.get(path), 200)
        expect(c.get(path + "?q=%00"), 400)
    expect(c.get("/info", headers={"Authorization": "Bearer nope"}), 401)
    # datasets
    ds = upload().json()["id"]
    spare = upload().json()["id"]
    expect(c.post("/v1/datasets", files={"file": ("p.npz", b"not an npz")}, data={"kind": "embedding_pairs"}), 422)
    expect(c.post("/v1/datasets", files={"file": ("p.npz", npz)}, data={"kind": "nope"}), 400)
    expect(c.post("/v1/datasets", files={"file": ("p.npz", npz)}, data={"kind": "embedding_pairs"}, headers=key["transform"]), 403)
    expect(c.get("/v1/datasets"), 200)
    expect(c.get("/v1/datasets?after=zz"), 400)
    expect(c.get(f"/v1/datasets/{ds}"), 200)
    expect(c.get("/v1/datasets/ds_missing"), 404)
    expect(c.delete(f"/v1/datasets/{spare}"), 200)
    expect(c.delete("/v1/datasets/ds_missing"), 404)
    # training jobs (make_version leaves version 1 of "m" from a succeeded job; `queued` stays queued)
    version, _ = make_version(c, settings, ds, seed=1)
    for seed in (2, 3):  # the default alias follows the newest version, leaving version 2 free to delete
        make_version(c, settings, ds, seed=seed)
    done = version["source_job_id"]
    queued = job(ds, metadata={"run": "a"}).json()["id"]
    expect(job("ds_missing"), 404)
    expect(job(ds, hyperparameters={"n_epochs": "many"}), 422)
    expect(c.post("/v1/training-jobs", json={"dataset_id": ds, "model": "m", "bogus": 1}), 400)
    expect(c.delete(f"/v1/datasets/{ds}"), 409)  # an active job uses it
    expect(c.get("/v1/training-jobs?model=m&metadata[run]=a"), 200)
    expect(c.get("/v1/training-jobs?modle=m"), 400)
    for tail in ("", "/events", "/metrics", "/checkpoints"):
        expect(c.get(f"/v1/training-jobs/{done}{tail}"), 200)
        expect(c.get(f"/v1/training-jobs/job_missing{tail}"), 404)
    expect(c.post(f"/v1/training-jobs/{queued}/cancel"), 200)
    expect(c.post(f"/v1/training-jobs/{done}/cancel"), 409)
    expect(c.post("/v1/training-jobs/job_missing/cancel"), 404)
    # models, versions, aliases
    expect(c.get("/v1/models"), 200)
    expect(c.get("/v1/models", headers=key["transform"]), 403)
    expect(c.get("/v1/models?limit=0"), 400)
    expect(c.get("/v1/models/m"), 200)
    expect(c.get("/v1/models/nope"), 404)
    expect(c.patch("/v1/models/m", json={"tags": ["qa"], "description": "d"}), 200)
    expect(c.patch("/v1/models/m", json={"tags": "qa"}), 400)
    expect(c.get("/v1/models/m/versions/1"), 200)
    expect(c.get("/v1/models/m/versions/9"), 404)
    expect(c.patch("/v1/models/m/versions/1", json={"tags": ["ok"]}), 200)
    expect(c.patch("/v1/models/m/versions/1", json={}), 400)
    expect(c.put("/v1/models/m/aliases/prod", json={"version": 1}), 200)
    expect(c.put("/v1/models/m/aliases/prod", json={"version": 9}), 404)
    expect(c.delete("/v1/models/m/versions/1"), 409)
    expect(c.delete("/v1/models/m/versions/2"), 200)
    expect(c.delete("/v1/models/m/versions/2"), 404)
    # serving
    x = [[0.1] * 16]
    for path, body in (("/v1/transform", {"model": "m", "input": x}), ("/v1/embeddings", {"model": "m", "input": x})):
        expect(c.post(path, json=body), 200)
        expect(c.post(path, json={**body, "input": [[0.1] * 15]}), 422)
        expect(c.post(path, json={**body, "model": "nope"}), 404)
        expect(c.post(path, json={**body, "input": x * (settings.max_transform_vectors + 1)}), 413)
        expect(c.post(path, json=body, headers=key["train"]), 403)
    expect(c.delete("/v1/models/m/aliases/prod"), 200)
    expect(c.delete("/v1/models/m/aliases/prod"), 404)

    # Every response above was checked against the schema as it arrived; here: every operation the
    # schema had when this test was written answered at least one success and one error.
    seen = conformance.seen
    schema = c.get("/openapi.json").json()
    missing = []
    for path, operations in schema["paths"].items():
        for method in operations:
            statuses = {s for m, p, s in seen if (m, p) == (method.upper(), path)}
            if (method.upper(), path) in COVERED and not (any(s < 300 for s in statuses) and any(s >= 400 for s in statuses)):
                missing.append(f"{method.upper()} {path}: {sorted(statuses)}")
    assert not missing, missing


COVERED = {
    ("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/info"),
    ("POST", "/v1/datasets"), ("GET", "/v1/datasets"), ("GET", "/v1/datasets/{dataset_id}"), ("DELETE", "/v1/datasets/{dataset_id}"),
    ("POST", "/v1/training-jobs"), ("GET", "/v1/training-jobs"), ("GET", "/v1/training-jobs/{job_id}"),
    ("POST", "/v1/training-jobs/{job_id}/cancel"), ("GET", "/v1/training-jobs/{job_id}/events"),
    ("GET", "/v1/training-jobs/{job_id}/metrics"), ("GET", "/v1/training-jobs/{job_id}/checkpoints"),
    ("GET", "/v1/models"), ("GET", "/v1/models/{name}"), ("PATCH", "/v1/models/{name}"),
    ("GET", "/v1/models/{name}/versions/{version}"), ("PATCH", "/v1/models/{name}/versions/{version}"),
    ("DELETE", "/v1/models/{name}/versions/{version}"), ("PUT", "/v1/models/{name}/aliases/{alias}"),
    ("DELETE", "/v1/models/{name}/aliases/{alias}"), ("POST", "/v1/transform"), ("POST", "/v1/embeddings"),
}


def test_the_conformance_check_catches_drift():
    schema = {"paths": {"/v1/things/{id}": {"get": {"responses": {
        "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}}}},
        "components": {"schemas": {"Thing": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}}}
    check = Conformance(schema)
    assert check.problem("GET", "/v1/things/a", 200, "application/json", b'{"id": "a"}') is None
    assert "does not list" in check.problem("GET", "/v1/things/a", 404, "application/json", b'{"error": {}}')
    assert "required" in check.problem("GET", "/v1/things/a", 200, "application/json", b'{"name": "a"}')
    assert "id" in check.problem("GET", "/v1/things/a", 200, "application/json", b'{"id": 5}')
    assert check.problem("GET", "/elsewhere", 200, "application/json", b"[]") is None  # not an operation of the schema
    assert ("GET", "/v1/things/{id}", 404) in check.seen
    with pytest.raises(SchemaDrift):
        check.check(httpx.Response(418, request=httpx.Request("GET", "http://t/v1/things/a")))
