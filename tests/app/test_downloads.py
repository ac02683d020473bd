"""Downloads of a version's files through the API: the artifact as stored, the report and plot of a
really trained job, and the ONNX export built on first request, whose outputs equal /v1/transform's."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

from app.services import training
from cube.models import build_model
from cube.onnx_export import run_onnx
from tests.conftest import TINY_CUBE, make_version


def upload(c, pairs_npz) -> str:
    r = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_artifact_and_onnx_downloads(client, settings, pairs_npz, tmp_path, storage_kind, request):
    c, _ = client
    version, net = make_version(c, settings, upload(c, pairs_npz))
    base = "/v1/models/m/versions/1/files"
    listed = {f["name"]: f for f in c.get(base).json()["data"]}
    assert set(listed) == {"model.safetensors", "model.json", "model.onnx", "report.json", "report.md", "training.png"}
    assert listed["model.safetensors"]["bytes"] > 0 and listed["model.onnx"]["bytes"] is None
    assert listed["model.onnx"]["available"] and not listed["report.json"]["available"]  # not trained by a job

    weights = c.get(f"{base}/model.safetensors")
    assert weights.status_code == 200 and weights.headers["content-type"] == "application/octet-stream"
    assert weights.headers["content-disposition"] == 'attachment; filename="m-v1-model.safetensors"'
    assert int(weights.headers["content-length"]) == listed["model.safetensors"]["bytes"]
    config = c.get(f"{base}/model.json")
    assert config.headers["content-type"] == "application/json"
    desc = config.json()
    assert desc["arch"] == "cube" and desc["config"]["d_in"] == 16
    rebuilt = build_model(desc["arch"], desc["config"])  # what a user does with the two files
    rebuilt.load_state_dict(load_safetensors(weights.content), strict=True)

    x = np.random.default_rng(3).standard_normal((9, 16)).astype(np.float32)
    served = np.array([d["embedding"] for d in c.post("/v1/transform", json={"model": "m", "input": x.tolist()}).json()["data"]])
    with torch.no_grad():
        assert np.abs(rebuilt.eval()(torch.from_numpy(x)).numpy() - served).max() <= 1e-5

    onnx = c.get(f"{base}/model.onnx")
    assert onnx.status_code == 200, onnx.text
    assert onnx.headers["content-disposition"] == 'attachment; filename="m-v1-model.onnx"'
    (tmp_path / "m.onnx").write_bytes(onnx.content)
    assert np.abs(run_onnx(tmp_path / "m.onnx", x) - served).max() <= 1e-5
    # Kept in storage: listed with its size, and the second download is the same file.
    assert c.get(base).json()["data"][2]["bytes"] == len(onnx.content)
    assert c.get(f"{base}/model.onnx").content == onnx.content
    if storage_kind == "s3":  # every file went to the object store, none to the local disk
        stored = request.getfixturevalue("s3_store").keys(settings.storage_url)
        assert any(k.endswith("/model/model.onnx") for k in stored) and not settings.storage_root.exists()


def test_download_errors_name_what_is_missing(client, settings, pairs_npz):
    c, _ = client
    make_version(c, settings, upload(c, pairs_npz))
    r = c.get("/v1/models/m/versions/1/files/weights.bin")
    assert r.status_code == 404 and r.json()["error"]["param"] == "file"
    assert "model.safetensors" in r.json()["error"]["message"]
    r = c.get("/v1/models/m/versions/1/files/report.json")
    assert r.status_code == 404 and r.json()["error"]["code"] == "file_not_found"
    assert c.get("/v1/models/m/versions/7/files/model.json").json()["error"]["param"] == "version"
    assert c.get("/v1/models/nope/versions/1/files").status_code == 404
    assert c.get("/v1/models/m/versions/0/files").status_code == 400


def test_report_and_plot_of_a_trained_version(sqlite_settings, client_for, pairs_npz):
    c, _ = client_for(sqlite_settings)
    ds = upload(c, pairs_npz)
    job = c.post("/v1/training-jobs", json={"dataset_id": ds, "model": "t", "architecture": TINY_CUBE,
                                            "hyperparameters": {"n_epochs": 2, "tuning_budget": 1}}).json()["id"]
    assert training.run_job(sqlite_settings, job, "w1").outcome == "claimed"
    base = "/v1/models/t/versions/1/files"
    report = c.get(f"{base}/report.json")
    assert report.status_code == 200 and report.headers["content-type"] == "application/json"
    evaluation = c.get("/v1/models/t/versions/1").json()["evaluation"]
    assert json.loads(report.content)["methods"] == evaluation["methods"]
    md = c.get(f"{base}/report.md")
    assert md.headers["content-type"] == "text/markdown; charset=utf-8" and "ridge" in md.text
    png = c.get(f"{base}/training.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert all(f["available"] for f in c.get(base).json()["data"])
