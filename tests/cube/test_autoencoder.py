"""Autoencoder mode: a real bottleneck of code_size numbers, PCA as its baseline and its start, the
artifact and ONNX round trips, and `cube train --mode autoencoder`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cube.artifacts import load_model, save_model
from cube.autoencoder import PCA, Autoencoder, Half, pca_started
from cube.config import ConfigError, RunConfig, TrainConfig
from cube.experiment import run_experiment
from cube.models import build_model, check_model_config
from cube.pairs import PairData, save_pairs_npz

TINY = {"grid": [2, 2, 2], "channels": 4, "steps": 2, "hidden": 8}
OPTIONS = {"cube": TINY, "linear": {}, "mlp": {"hidden": 16}, "resmlp": {"hidden": 16}}


def low_rank(n=300, d=16, rank=3, seed=0) -> np.ndarray:
    """Points on a rank-`rank` affine subspace of R^d (an offset plus `rank` random directions)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, rank)))[0].T
    return (rng.standard_normal((n, rank)) @ basis + rng.standard_normal(d)).astype(np.float32)


@pytest.mark.parametrize("arch", ["cube", "linear", "mlp", "resmlp"])
def test_the_code_has_code_size_numbers_and_the_forward_pass_is_decode_of_encode(arch):
    torch.manual_seed(0)
    model = build_model(arch, {"d_in": 16, "d_out": 16, "code_size": 3, **OPTIONS[arch]})
    assert isinstance(model, Autoencoder)
    with torch.no_grad():  # the nonlinear parts start at zero: give them weights that matter
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    x = torch.randn(5, 16)
    with torch.no_grad():
        code = model.encode(x)
        assert code.shape == (5, 3)
        assert torch.allclose(model.decode(code), model(x))
        assert model.decode(torch.randn(7, 3)).shape == (7, 16)
        # The reconstruction depends on x only through its 3 numbers.
        assert torch.allclose(Half(model, "encode")(x), code) and torch.allclose(Half(model, "decode")(code), model(x))


def test_pca_reconstructs_planted_low_rank_data_exactly_and_not_beyond_its_rank():
    x = low_rank(rank=3)
    exact = PCA(3).fit((x[:200], x[:200]))
    assert np.abs(exact.predict(x[200:]) - x[200:]).max() < 1e-4  # held-out points of the same subspace
    assert exact.encode(x).shape == (300, 3)
    assert exact.chosen["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    short = PCA(2).fit((x, x))
    assert np.abs(short.predict(x) - x).max() > 0.1  # one of the three directions is lost
    with pytest.raises(ValueError, match="0 < k < 16"):
        PCA(16).fit((x, x))


@pytest.mark.parametrize("arch", ["cube", "linear", "mlp", "resmlp"])
def test_every_trained_autoencoder_starts_as_pca(arch):
    x = low_rank(rank=5)
    model = pca_started(x, 4)(arch, {"d_in": 16, "d_out": 16, "code_size": 4, **OPTIONS[arch]}).eval()
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - PCA(4).fit((x, x)).predict(x)).max() < 1e-5


def test_bad_code_sizes_name_code_size():
    with pytest.raises(ConfigError, match="code_size must be below the vectors' dimension 16"):
        build_model("linear", {"d_in": 16, "d_out": 16, "code_size": 16})
    with pytest.raises(ConfigError, match="d_in and d_out must agree"):
        build_model("linear", {"d_in": 16, "d_out": 8, "code_size": 4})
    with pytest.raises(ConfigError, match="skip 'linear'"):
        pca_started(low_rank(), 4)("cube", {"d_in": 16, "d_out": 16, "code_size": 4, **TINY, "skip": "none"})
    # The service's size check sees the cube inside the autoencoder.
    with pytest.raises(ConfigError, match="cells x channels"):
        check_model_config("cube", {"d_in": 16, "d_out": 16, "code_size": 4, **TINY}, max_state_values=10)


def test_an_autoencoder_round_trips_through_the_artifact_format(tmp_path):
    model = pca_started(low_rank(), 4)("cube", {"d_in": 16, "d_out": 16, "code_size": 4, **TINY})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    config = {"d_in": 16, "d_out": 16, "code_size": 4, **TINY}
    save_model(model, tmp_path / "m", "cube", config)
    loaded, desc = load_model(tmp_path / "m")
    assert desc["config"]["code_size"] == 4 and isinstance(loaded, Autoencoder)
    x = torch.from_numpy(low_rank(n=8, seed=1))
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.mean, model.mean)  # the training mean travels with the weights
        assert torch.allclose(loaded.encode(x), model.encode(x)) and torch.allclose(loaded(x), model(x))


def test_onnx_export_of_an_autoencoder_is_its_reconstruction(tmp_path):
    pytest.importorskip("onnxruntime")
    from cube.onnx_export import export_model_dir, run_onnx

    model = pca_started(low_rank(), 4)("linear", {"d_in": 16, "d_out": 16, "code_size": 4})
    save_model(model, tmp_path / "m", "linear", {"d_in": 16, "d_out": 16, "code_size": 4})
    exported = export_model_dir(tmp_path / "m", tmp_path / "m.onnx")
    x = low_rank(n=5, seed=2)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    assert exported.max_abs_diff < 1e-4 and np.abs(run_onnx(exported.path, x) - expected).max() < 1e-4


def test_an_autoencoder_experiment_compares_with_pca_not_with_maps_without_a_bottleneck(tmp_path):
    x = low_rank(n=400, rank=6)
    groups = np.array([str(i // 4) for i in range(len(x))])
    other_side = np.zeros_like(x)  # a pair file's targets: ignored in autoencoder mode
    run = RunConfig(arch="cube", mode="autoencoder", model={**TINY, "code_size": 3},
                    train=TrainConfig(n_epochs=2, batch_size=64, tuning_budget=1))
    report = run_experiment(PairData(x, other_side, groups), run, tmp_path / "run").report
    assert set(report["methods"]) == {"cube", "linear", "mlp", "resmlp", "pca", "mean"}  # no identity, ridge, procrustes
    assert report["model"]["config"]["code_size"] == 3 and report["info"]["pca"]["k"] == 3
    # The targets were the inputs: PCA-3 keeps most of a rank-6 signal, so it is far above the mean.
    assert report["methods"]["pca"]["mean_cosine"] > report["methods"]["mean"]["mean_cosine"] + 0.1
    assert report["info"]["mlp"]["hidden"] >= 1
    loaded, _ = load_model(tmp_path / "run" / "model")
    assert loaded.encode(torch.from_numpy(x[:2])).shape == (2, 3)


def test_on_other_data_an_autoencoder_is_judged_beside_pca_not_identity():
    from cube.held_out import evaluate_held_out

    x = low_rank(n=300, rank=3)
    report = evaluate_held_out(lambda v: v, "cube", PairData(x[200:], x[200:]), (x[:150], x[:150]),
                               (x[150:200], x[150:200]), code_size=3)
    assert set(report["methods"]) == {"cube", "pca", "mean"}
    assert report["methods"]["pca"]["mean_cosine"] == pytest.approx(1.0, abs=1e-5)  # rank 3: PCA-3 is exact


@pytest.mark.parametrize("args, message", [
    (["--mode", "autoencoder"], "needs code_size"),
    (["--mode", "autoencoder", "--set", "code_size=16"], "code_size must be below the vectors' dimension 16"),
    (["--set", "code_size=4"], "code_size applies to mode 'autoencoder' only"),
    (["--mode", "translation", "--set", "code_size=4"], "code_size applies to mode 'autoencoder' only"),
    (["--mode", "autoencoder", "--set", "code_size=0"], "code_size must be a positive integer"),
])
def test_cli_bad_code_size_combinations_exit_2_naming_code_size(cube, tmp_path, args, message):
    save_pairs_npz(tmp_path / "p.npz", PairData(low_rank(), low_rank(seed=1)))
    status, _, err = cube("train", "--data", "p.npz", "--out", "o", *args)
    assert status == 2 and message in err
    assert not (tmp_path / "o" / "model").exists()


def test_cli_trains_an_autoencoder_from_a_pair_file(cube, tmp_path):
    save_pairs_npz(tmp_path / "p.npz", PairData(low_rank(), low_rank(seed=1)))  # the targets are ignored
    status, out, err = cube("train", "--data", "p.npz", "--out", "o", "--mode", "autoencoder", "--set", "code_size=4",
                            "--set", "n_epochs=1", "--set", "tuning_budget=1",
                            *[a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")])
    assert status == 0, err
    assert "pca" in out and "ridge" not in out
    assert json.loads((tmp_path / "o" / "model" / "model.json").read_text())["config"]["code_size"] == 4


def test_cube_transform_writes_codes_and_decodes_them(cube, tmp_path):
    x = low_rank(n=5, seed=3)
    model = pca_started(low_rank(), 4)("linear", {"d_in": 16, "d_out": 16, "code_size": 4})
    save_model(model, tmp_path / "ae", "linear", {"d_in": 16, "d_out": 16, "code_size": 4})
    save_model(build_model("linear", {"d_in": 16, "d_out": 16}), tmp_path / "plain", "linear", {"d_in": 16, "d_out": 16})
    np.save(tmp_path / "x.npy", x)
    assert cube("transform", "--model", "ae", "--input", "x.npy", "--output", "code.npy", "--code")[0] == 0
    assert cube("transform", "--model", "ae", "--input", "code.npy", "--output", "back.npy", "--from-code")[0] == 0
    assert cube("transform", "--model", "ae", "--input", "x.npy", "--output", "recon.npy")[0] == 0
    code, back, recon = (np.load(tmp_path / f) for f in ("code.npy", "back.npy", "recon.npy"))
    assert code.shape == (5, 4) and np.allclose(back, recon, atol=1e-6)
    status, _, err = cube("transform", "--model", "plain", "--input", "x.npy", "--output", "o.npy", "--code")
    assert status == 2 and "--code applies to autoencoders only" in err
    status, _, err = cube("transform", "--model", "ae", "--input", "x.npy", "--output", "o.npy", "--from-code")
    assert status == 2 and "the model expects 4" in err
