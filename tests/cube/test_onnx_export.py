"""ONNX export: the graph onnxruntime runs computes what torch computes, within 1e-5, for the cube
(default and every structural option) and each baseline architecture a job can train, at any batch size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cube.artifacts import save_model
from cube.models import build_model
from cube.onnx_export import run_onnx

VARIANTS = {
    "cube-default": ("cube", {"d_in": 384, "d_out": 384}),
    "cube-options": ("cube", {"d_in": 24, "d_out": 16, "grid": [3, 2, 2], "channels": 4, "steps": 3, "hidden": 8,
                              "neighbourhood": 6, "boundary": "periodic", "perception": "fixed", "cell": "gated",
                              "read_in": "lowrank", "read_in_rank": 6, "read_out": "face", "global_channel": False}),
    "linear": ("linear", {"d_in": 24, "d_out": 16}),
    "mlp": ("mlp", {"d_in": 24, "d_out": 16, "hidden": 32, "input_norm": True}),
    "resmlp": ("resmlp", {"d_in": 24, "d_out": 24, "hidden": 32}),
}


def model_dir(tmp_path, arch: str, config: dict):
    """A saved model whose every weight is moved off its init (the cube's cell rule starts at zero,
    which would make the automaton's part of the graph untested), by about what training moves them."""
    torch.manual_seed(0)
    net = build_model(arch, config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    save_model(net, tmp_path / "model", arch, config)
    return tmp_path / "model", net


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_exported_graph_equals_torch(variant, tmp_path, cube):
    arch, config = VARIANTS[variant]
    directory, net = model_dir(tmp_path, arch, config)
    status, out, err = cube("export", "--model", str(directory), "--format", "onnx", "--out", "m.onnx")
    assert status == 0, err
    assert "wrote" in out and (tmp_path / "m.onnx").is_file()
    rng = np.random.default_rng(1)
    for batch in (1, 7, 300):  # the batch axis is dynamic
        x = rng.standard_normal((batch, config["d_in"])).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        got = run_onnx(tmp_path / "m.onnx", x)
        assert got.shape == (batch, config["d_out"]) and got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-5, (variant, batch, np.abs(got - expected).max())


def test_export_names_what_is_wrong(tmp_path, cube):
    status, _, err = cube("export", "--model", "nowhere", "--out", "m.onnx")
    assert status == 2 and "nowhere/model.json not found" in err
    status, _, err = cube("export", "--model", "nowhere", "--format", "tflite", "--out", "m.onnx")
    assert status == 2 and "invalid choice" in err
    assert not (tmp_path / "m.onnx").exists()
