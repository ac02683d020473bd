"""Autoencoder jobs and serving over HTTP: `code_size` on jobs and sweeps (4xx naming it for a bad
combination), and /v1/transform's output "code" and input_kind "code" on a version trained by the
real pipeline."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from app.services import training
from tests.conftest import TINY_CUBE


@pytest.fixture
def dataset(client, pairs_npz):
    c, _ = client
    return c.post("/v1/datasets", files={"file": ("pairs.npz", pairs_npz.read_bytes())},
                  data={"kind": "embedding_pairs", "name": "ae"}).json()["id"]


def ae_job(dataset_id, **extra):
    return {"dataset_id": dataset_id, "mode": "autoencoder", "code_size": 4, "architecture": TINY_CUBE,
            "hyperparameters": {"n_epochs": 2, "tuning_budget": 1}, **extra}


def test_an_autoencoder_job_stores_its_code_size_for_the_worker(client, dataset, settings):
    c, sent = client
    r = c.post("/v1/training-jobs", json=ae_job(dataset))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["mode"] == "autoencoder" and job["code_size"] == 4 and "code_size" not in job["architecture"]
    assert sent.sent == [("cube.train_job", (job["id"],))]
    from app.db import session_scope
    from app.models import TrainingJob

    with session_scope(settings.database) as session:
        run = training.run_config(session.get(TrainingJob, job["id"]))
    assert run.mode == "autoencoder" and run.model["code_size"] == 4


@pytest.mark.parametrize("body_update, status, param", [
    ({"code_size": None}, 422, "code_size"),                      # an autoencoder needs one
    ({"code_size": 16}, 422, "code_size"),                        # the vectors have 16 values
    ({"mode": "dialogue"}, 422, "code_size"),                     # only autoencoders have a code
    ({"mode": "translation"}, 422, "code_size"),
    ({"code_size": 0}, 400, "code_size"),
    ({"code_size": None, "architecture": {**TINY_CUBE, "code_size": 4}}, 400, "architecture.code_size"),
])
def test_bad_code_size_combinations_are_refused_naming_code_size(client, dataset, body_update, status, param):
    c, sent = client
    r = c.post("/v1/training-jobs", json={**ae_job(dataset), **body_update})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    assert sent.sent == [] and c.get("/v1/training-jobs").json()["data"] == []


def test_a_sweep_keeps_the_code_size_in_every_trial_whatever_family_it_draws(client, dataset, settings):
    from tests.app.test_sweeps import drain

    c, recorder = client
    body = {**ae_job(dataset, model="swept"), "search_space": {"arch": ["linear", "cube"]}, "n_trials": 2,
            "max_parallel": 2, "pruner": {"kind": "none"}}
    r = c.post("/v1/sweeps", json={**body, "code_size": 20})
    assert r.status_code == 422 and r.json()["error"]["param"] == "code_size", r.text
    r = c.post("/v1/sweeps", json=body)
    assert r.status_code == 202 and r.json()["code_size"] == 4, r.text
    assert len(drain(settings, recorder)) == 3  # two trials, then the final job
    sweep = c.get(f"/v1/sweeps/{r.json()['id']}").json()
    assert sweep["status"] == "succeeded", sweep
    jobs = c.get("/v1/training-jobs").json()["data"]
    assert sorted(j["architecture"]["kind"] for j in jobs) in (["cube", "cube", "linear"], ["cube", "linear", "linear"])
    assert all(j["code_size"] == 4 and j["status"] == "succeeded" for j in jobs)
    version = c.get("/v1/models/swept/versions/1").json()
    assert version["evaluation"]["model"]["config"]["code_size"] == 4 and "pca" in version["evaluation"]["methods"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, pairs_npz):
    """An autoencoder (code size 4) and a dialogue model, both trained by the pipeline."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_enqueue
    from app.main import create_app
    from app.migrate import upgrade
    from app.settings import Settings

    s = Settings(data_dir=tmp_path_factory.mktemp("ae"), require_auth=False, min_pairs=20)
    upgrade(s.database)
    with TestClient(create_app(s)) as c:
        c.app.dependency_overrides[get_enqueue] = lambda: (lambda *a, **k: None)  # run_job is called below
        ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())},
                    data={"kind": "embedding_pairs"}).json()["id"]
        for body in (ae_job(ds, model="ae"), {**ae_job(ds, model="plain"), "mode": "dialogue", "code_size": None}):
            job = c.post("/v1/training-jobs", json=body).json()
            assert training.run_job(s, job["id"], "w").outcome == "claimed"
            assert c.get(f"/v1/training-jobs/{job['id']}").json()["status"] == "succeeded"
        yield c, s


def artifact(client, settings, name):
    from app.storage import get_storage
    from cube.artifacts import load_model

    version = client.get(f"/v1/models/{name}/versions/1").json()
    from app.db import session_scope
    from app.models import ModelVersion

    with session_scope(settings.database) as session:
        key = session.get(ModelVersion, version["id"]).artifact_key
    return version, load_model(get_storage(settings).stage_tree(key))[0]


def test_transform_gives_the_reconstruction_the_code_and_decodes_codes(served):
    c, s = served
    version, model = artifact(c, s, "ae")
    assert (version["dim_in"], version["dim_out"]) == (16, 16)
    assert set(version["evaluation"]["methods"]) == {"cube", "linear", "mlp", "resmlp", "pca", "mean"}
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    with torch.no_grad():
        code, recon = model.encode(torch.from_numpy(x)).numpy(), model(torch.from_numpy(x)).numpy()

    def embeddings(r):
        assert r.status_code == 200, r.text
        return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32), r.json()["dim"]

    y, dim = embeddings(c.post("/v1/transform", json={"model": "ae", "input": x.tolist()}))
    assert dim == 16 and np.allclose(y, recon, atol=1e-5)  # default: the reconstruction
    y, dim = embeddings(c.post("/v1/transform", json={"model": "ae", "input": x.tolist(), "output": "code"}))
    assert dim == 4 and np.allclose(y, code, atol=1e-5)
    y, dim = embeddings(c.post("/v1/transform", json={"model": "ae", "input": code.tolist(), "input_kind": "code"}))
    assert dim == 16 and np.allclose(y, recon, atol=1e-5)  # decode(encode(x)) == forward(x)
    packed = base64.b64encode(code.astype("<f4").tobytes()).decode()
    r = c.post("/v1/transform", json={"model": "ae", "input": packed, "input_kind": "code", "encoding_format": "base64",
                                      "dim": 4})
    got = np.frombuffer(base64.b64decode(r.json()["data"][1]["embedding"]), "<f4")
    assert r.status_code == 200 and np.allclose(got, recon[1], atol=1e-5)


@pytest.mark.parametrize("model, body, status, param", [
    ("plain", {"output": "code"}, 422, "output"),                         # not an autoencoder
    ("plain", {"input_kind": "code"}, 422, "input_kind"),
    ("plain", {"output": "reconstruction"}, 422, "output"),
    ("ae", {"output": "code", "input_kind": "code", "input": [[0.1] * 4]}, 422, "output"),
    ("ae", {"input_kind": "code"}, 422, "input[0]"),                      # codes have 4 values, not 16
    ("ae", {"input_kind": "code", "input": [[0.1] * 4, [0.1] * 5]}, 422, "input[1]"),
    ("ae", {"input_kind": "code", "input": [[0.1] * 4, [0.1] * 16]}, 422, "input[1]"),
    ("ae", {"input_kind": "code", "input": ["some text"]}, 422, "input"),
    ("ae", {"input_kind": "code", "dim": 16, "encoding_format": "base64",
            "input": base64.b64encode(np.zeros(16, "<f4").tobytes()).decode()}, 422, "dim"),
    ("ae", {"output": "codes"}, 400, "output"),
    ("ae", {"input": [[0.1] * 4]}, 422, "input[0]"),                      # the reconstruction takes 16 values
])
def test_bad_output_and_input_kind_are_4xx_naming_the_field(served, model, body, status, param):
    c, _ = served
    r = c.post("/v1/transform", json={"model": model, "version": 1, "input": [[0.1] * 16], **body})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
