"""Where /v1/transform runs its models: CUBE_TRANSFORM_DEVICE, the CPU by default, CUDA on a GPU
machine (an API told to use CUDA without one refuses to start)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import make_version

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: the CUDA path is checked by bench/gpu_check.sh on a GPU machine")


def served_on(client_for, settings, pairs_npz):
    """(client, the version's JSON, its model as saved, the rows /v1/transform gives for 5 inputs)."""
    c, _ = client_for(settings)
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    version, net = make_version(c, settings, ds)
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    r = c.post("/v1/transform", json={"model": "m", "input": x.tolist()})
    assert r.status_code == 200, r.text
    with torch.no_grad():
        expected = net(torch.as_tensor(x)).numpy()
    return c, version, np.array([d["embedding"] for d in r.json()["data"]]), expected


def device_of(client, version) -> str:
    loaded = client.app.state.model_cache.peek(version["id"])
    return next(loaded.model.parameters()).device.type


def test_transforms_run_on_the_cpu_by_default(client_for, sqlite_settings, pairs_npz):
    c, version, got, expected = served_on(client_for, sqlite_settings, pairs_npz)
    assert c.get("/info").json()["transform_device"] == "cpu" and device_of(c, version) == "cpu"
    assert np.allclose(got, expected, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the API starts there")
def test_an_api_told_to_use_cuda_without_it_refuses_to_start(sqlite_settings):
    app = create_app(sqlite_settings.model_copy(update={"transform_device": "cuda"}))
    with pytest.raises(RuntimeError, match="CUBE_TRANSFORM_DEVICE=cuda, but torch .* sees no CUDA device"):
        with TestClient(app):
            pass


@NEEDS_CUDA
def test_transforms_run_on_cuda_when_told(client_for, sqlite_settings, pairs_npz):
    settings = sqlite_settings.model_copy(update={"transform_device": "cuda"})
    c, version, got, expected = served_on(client_for, settings, pairs_npz)
    assert c.get("/info").json()["transform_device"] == "cuda" and device_of(c, version) == "cuda"
    # cuDNN may run the cube's convolutions in TF32: close to the CPU's float32, not equal.
    assert np.allclose(got, expected, rtol=1e-2, atol=1e-3)


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="torch already runs one thread here: a cap of 1 would change nothing")
def test_the_api_caps_torch_threads_when_told(sqlite_settings):
    before = torch.get_num_threads()
    try:
        with TestClient(create_app(sqlite_settings.model_copy(update={"torch_threads": 1}))):
            seen = []  # in a new thread, as the batchers' forward passes run: torch applies the cap there
            thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            thread.start()
            thread.join()
            assert seen == [1]
    finally:
        torch.set_num_threads(before)
