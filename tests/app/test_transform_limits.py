"""/v1/transform limits and the JSON fast path: 413 for a body or a vector count over the limit (the
message names it), 422 for wrong dimensions, the same 400s as the declared schema, and the limits in
/info. (429 for a full queue: test_transform_batching.py.)"""
from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.conftest import make_version


@pytest.fixture(scope="module")
def served(tmp_path_factory, pairs_npz):
    """One model "m" (16 -> 16, untrained) for the whole module, behind small limits."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_enqueue
    from app.main import create_app
    from app.migrate import upgrade
    from app.settings import Settings

    s = Settings(data_dir=tmp_path_factory.mktemp("limits"), require_auth=False, min_pairs=20,
                 max_request_bytes=20_000, max_transform_vectors=50)
    upgrade(s.database)
    with TestClient(create_app(s)) as c:
        c.app.dependency_overrides[get_enqueue] = lambda: (lambda *a, **k: None)  # the job is never run
        ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())},
                    data={"kind": "embedding_pairs"}).json()["id"]
        make_version(c, s, ds)
        yield c


def test_body_over_the_limit_is_413_by_content_length(served):
    r = served.post("/v1/transform", json={"model": "m", "input": [[0.123456] * 16] * 400})
    assert r.status_code == 413 and "20000 bytes" in r.json()["error"]["message"], r.text
    assert r.json()["error"]["code"] == "too_large" and r.headers["x-request-id"]


def test_streamed_body_over_the_limit_is_413(served):
    def chunks():  # no Content-Length: the middleware counts what arrives
        yield b'{"model": "m", "input": ['
        for _ in range(2000):
            yield b"[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],"
        yield b"[0.1]]}"

    r = served.post("/v1/transform", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "20000 bytes" in r.json()["error"]["message"], r.text
    # Other JSON bodies have the same limit.
    r = served.post("/v1/training-jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text


def test_too_many_vectors_is_413_naming_the_limit(served):
    for body in ({"model": "m", "input": [[0.1] * 16] * 51},
                 {"model": "m", "input": base64.b64encode(np.zeros((51, 16), "<f4").tobytes()).decode(), "dim": 16}):
        r = served.post("/v1/transform", json=body)
        assert r.status_code == 413 and "at most 50 vectors" in r.json()["error"]["message"], r.text


def test_wrong_dimension_is_422(served):
    r = served.post("/v1/transform", json={"model": "m", "input": [[0.1] * 15]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "input[0]" and "expects 16" in r.json()["error"]["message"]
    r = served.post("/v1/transform", json={"model": "m", "input": [[0.1] * 16, [0.1] * 15]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "input[1]"


@pytest.mark.parametrize("body,param", [
    ({"model": "m", "input": [[0.1] * 16], "extra": 1}, "extra"),
    ({"model": "m", "input": [[0.1] * 16], "normalize": "maybe"}, "normalize"),
    ({"model": "m", "input": [[0.1] * 16], "encoding_format": "int8"}, "encoding_format"),
    ({"input": [[0.1] * 16]}, "model"),
    ({"model": "m", "input": [[0.1] * 15 + ["x"]]}, None),
    ({"model": "m", "input": [[[0.1] * 16]]}, None),
])
def test_fast_path_reports_schema_errors_like_pydantic(served, body, param):
    r = served.post("/v1/transform", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    if param:
        assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"m"', b""])
def test_not_a_json_object_is_400(served, raw):
    r = served.post("/v1/transform", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text


def test_float_base64_and_normalize_agree(served):
    x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    floats = served.post("/v1/transform", json={"model": "m", "input": x.tolist()}).json()
    y = np.array([d["embedding"] for d in floats["data"]], dtype=np.float32)
    assert floats["usage"] == {"vectors": 5} and floats["dim"] == 16 and [d["index"] for d in floats["data"]] == list(range(5))
    b64 = served.post("/v1/transform", json={"model": "m", "input": base64.b64encode(x.astype("<f4").tobytes()).decode(),
                                             "encoding_format": "base64"}).json()
    y2 = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in b64["data"]])
    assert np.allclose(y, y2, atol=1e-6)
    unit = served.post("/v1/transform", json={"model": "m", "input": x.tolist(), "normalize": True}).json()
    assert np.allclose(np.linalg.norm([d["embedding"] for d in unit["data"]], axis=1), 1, atol=1e-5)


def test_openapi_documents_the_transform_schemas(served):
    op = served.get("/openapi.json").json()["paths"]["/v1/transform"]["post"]
    req = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "input", "encoding_format", "normalize"} <= set(req["properties"]) and req["required"] == ["model", "input"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/TransformResponse")


def test_info_lists_the_limits(served):
    limits = served.get("/info").json()["limits"]
    assert limits["max_request_bytes"] == 20_000 and limits["max_transform_vectors"] == 50
    assert {"max_upload_bytes", "transform_max_queue_rows", "transform_max_batch_rows"} <= set(limits)
