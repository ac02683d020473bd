"""`cube train` and `cube transform` end to end through the CLI's `main(argv)`, in this process (one
subprocess checks the console entry point itself)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from cube.pairs import save_pairs_npz
from cube.synthetic import nonlinear_pairs


def test_train_writes_the_report_with_every_baseline_and_transform_uses_the_model(tmp_path, cube):
    save_pairs_npz(tmp_path / "pairs.npz", nonlinear_pairs(n=600, d_in=12, d_out=12))
    status, out, err = cube("train", "--data", "pairs.npz", "--out", "run", "--set", "grid=[2,2,2]", "--set", "channels=4",
                            "--set", "n_epochs=2", "--set", "train.batch_size=64")
    assert status == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["n"]) == {"train", "val", "test"} and sum(report["n"].values()) == 600
    assert set(report["methods"]) == {"cube", "identity", "mean", "ridge", "procrustes", "linear", "mlp", "resmlp"}
    for metrics in report["methods"].values():
        assert {"recall_at_1", "recall_at_10", "mrr", "mean_cosine", "centered_cosine"} <= set(metrics)
    assert report["model"]["config"]["grid"] == [2, 2, 2]
    # The default tuning budget, the same for every trained method, and what each chose.
    assert report["tuning"]["budget"] == 3 and set(report["tuning"]["chosen"]) == {"cube", "linear", "mlp", "resmlp"}
    assert all(len(c["trials"]) == 3 for c in report["tuning"]["chosen"].values())
    assert "chosen learning rate" in out
    assert "cube (trained)" in out and "procrustes" in out
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "training.png").is_file()

    np.save(tmp_path / "in.npy", np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32))
    status, out, err = cube("transform", "--model", "run/model", "--input", "in.npy", "--output", "out.npy")
    assert status == 0, err
    assert np.load(tmp_path / "out.npy").shape == (5, 12) and "wrote 5 vectors of 12 dimensions" in out


def test_transform_refuses_bad_inputs_with_a_message(tmp_path, cube):
    save_pairs_npz(tmp_path / "p.npz", nonlinear_pairs(n=300, d_in=8, d_out=8))
    assert cube("train", "--data", "p.npz", "--out", "run", "--arch", "linear", "--set", "n_epochs=1")[0] == 0
    np.save(tmp_path / "in.npy", np.zeros((3, 5), np.float32))
    status, _, err = cube("transform", "--model", "run/model", "--input", "in.npy", "--output", "o.npy")
    assert status == 2 and "5 dimensions, the model expects 8" in err
    status, _, err = cube("transform", "--model", "run/model", "--input", "p.npz", "--output", "o.npy")
    assert status == 2 and ".npz archive" in err
    np.save(tmp_path / "in.npy", np.zeros((2, 8), np.float32))
    status, _, err = cube("transform", "--model", "run/model", "--input", "in.npy", "--output", "no/such/dir/o.npy")
    assert status == 2 and "cannot write" in err
    status, _, err = cube("transform", "--model", "nowhere", "--input", "in.npy", "--output", "o.npy")
    assert status == 2 and "not a model directory" in err


@pytest.mark.parametrize("args, message", [
    (["--data", "bad.npz"], "missing array 'target'"),
    (["--data", "missing.npz"], "not found"),
    (["--data", "ok.npz", "--set", "grid=[2,2]"], "grid must have three sizes"),
    (["--data", "ok.npz", "--set", "nonsense"], "key=value"),
    (["--data", "ok.npz", "--seeds", "0"], "positive integer"),
])
def test_bad_train_command_lines_exit_2_with_a_message(tmp_path, cube, args, message):
    np.savez(tmp_path / "bad.npz", input=np.zeros((30, 4), np.float32))
    save_pairs_npz(tmp_path / "ok.npz", nonlinear_pairs(n=100, d_in=4, d_out=4))
    status, _, err = cube("train", *args, "--out", "run")
    assert status == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()


def test_rerunning_into_the_same_output_with_other_data_is_refused(tmp_path, cube):
    save_pairs_npz(tmp_path / "a.npz", nonlinear_pairs(n=200, d_in=6, d_out=6, seed=1))
    save_pairs_npz(tmp_path / "b.npz", nonlinear_pairs(n=200, d_in=6, d_out=6, seed=2))
    args = ["--out", "run", "--arch", "linear", "--set", "n_epochs=2"]
    assert cube("train", "--data", "a.npz", *args)[0] == 0
    status, _, err = cube("train", "--data", "a.npz", *args)  # the same run: resumes its checkpoint
    assert status == 0, err
    status, _, err = cube("train", "--data", "b.npz", *args)
    assert status == 2 and "different run" in err and "Traceback" not in err


def test_the_console_entry_point_runs_a_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "app.cli", "synth", "--out", "s.npz", "--n", "50", "--dim", "4"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wrote 50 synthetic pairs" in out.stdout and (tmp_path / "s.npz").is_file()


def test_a_config_file_mode_that_does_not_exist_exits_2_naming_mode(tmp_path, cube):
    save_pairs_npz(tmp_path / "p.npz", nonlinear_pairs(n=100, d_in=8, d_out=8))
    (tmp_path / "run.toml").write_text('mode = "summarise"\n')
    status, _, err = cube("train", "--data", "p.npz", "--out", "run", "--config", "run.toml")
    assert status == 2 and "mode must be one of" in err and "summarise" in err
