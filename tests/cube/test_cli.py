"""`cube train` and `cube transform` end to end through the console entry point."""
import json
import subprocess
import sys

import numpy as np

from cube.pairs import save_pairs_npz
from cube.synthetic import nonlinear_pairs


def cube(*args, cwd):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_train_writes_the_report_with_every_baseline_and_transform_uses_the_model(tmp_path):
    save_pairs_npz(tmp_path / "pairs.npz", nonlinear_pairs(n=600, d_in=12, d_out=12))
    out = cube("train", "--data", "pairs.npz", "--out", "run", "--set", "grid=[2,2,2]", "--set", "channels=4",
               "--set", "n_epochs=2", "--set", "train.batch_size=64", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["n"]) == {"train", "val", "test"} and sum(report["n"].values()) == 600
    assert set(report["methods"]) == {"cube", "identity", "mean", "ridge", "procrustes", "linear", "mlp"}
    for metrics in report["methods"].values():
        assert {"recall_at_1", "recall_at_10", "mrr", "mean_cosine", "centered_cosine"} <= set(metrics)
    assert report["model"]["config"]["grid"] == [2, 2, 2]
    assert "cube (trained)" in out.stdout and "procrustes" in out.stdout
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "training.png").is_file()

    np.save(tmp_path / "in.npy", np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32))
    out = cube("transform", "--model", "run/model", "--input", "in.npy", "--output", "out.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "out.npy").shape == (5, 12)


def test_transform_with_the_wrong_dimension_is_a_clear_error(tmp_path):
    save_pairs_npz(tmp_path / "pairs.npz", nonlinear_pairs(n=300, d_in=8, d_out=8))
    assert cube("train", "--data", "pairs.npz", "--out", "run", "--arch", "linear", "--set", "n_epochs=1", cwd=tmp_path).returncode == 0
    np.save(tmp_path / "in.npy", np.zeros((3, 5), np.float32))
    out = cube("transform", "--model", "run/model", "--input", "in.npy", "--output", "o.npy", cwd=tmp_path)
    assert out.returncode == 2 and "5 dimensions, the model expects 8" in out.stderr


def test_bad_inputs_exit_2_with_a_message(tmp_path):
    np.savez(tmp_path / "bad.npz", input=np.zeros((30, 4), np.float32))
    out = cube("train", "--data", "bad.npz", "--out", "run", cwd=tmp_path)
    assert out.returncode == 2 and "missing array 'target'" in out.stderr and "Traceback" not in out.stderr
    out = cube("train", "--data", "missing.npz", "--out", "run", cwd=tmp_path)
    assert out.returncode == 2 and "not found" in out.stderr
    save_pairs_npz(tmp_path / "ok.npz", nonlinear_pairs(n=100, d_in=4, d_out=4))
    out = cube("train", "--data", "ok.npz", "--out", "run", "--set", "grid=[2,2]", cwd=tmp_path)
    assert out.returncode == 2 and "grid must have three sizes" in out.stderr
    out = cube("train", "--data", "ok.npz", "--out", "run", "--set", "nonsense", cwd=tmp_path)
    assert out.returncode == 2 and "key=value" in out.stderr


def test_rerunning_into_the_same_output_with_other_data_is_refused(tmp_path):
    save_pairs_npz(tmp_path / "a.npz", nonlinear_pairs(n=200, d_in=6, d_out=6, seed=1))
    save_pairs_npz(tmp_path / "b.npz", nonlinear_pairs(n=200, d_in=6, d_out=6, seed=2))
    args = ["--out", "run", "--arch", "linear", "--set", "n_epochs=2"]
    assert cube("train", "--data", "a.npz", *args, cwd=tmp_path).returncode == 0
    again = cube("train", "--data", "a.npz", *args, cwd=tmp_path)  # the same run: resumes its checkpoint
    assert again.returncode == 0, again.stderr
    other = cube("train", "--data", "b.npz", *args, cwd=tmp_path)
    assert other.returncode == 2 and "different run" in other.stderr and "Traceback" not in other.stderr


def test_more_bad_command_lines(tmp_path):
    save_pairs_npz(tmp_path / "p.npz", nonlinear_pairs(n=200, d_in=6, d_out=6))
    out = cube("train", "--data", "p.npz", "--out", "run", "--seeds", "0", cwd=tmp_path)
    assert out.returncode == 2 and "positive integer" in out.stderr
    assert cube("train", "--data", "p.npz", "--out", "run", "--arch", "linear", "--set", "n_epochs=1", cwd=tmp_path).returncode == 0
    out = cube("transform", "--model", "run/model", "--input", "p.npz", "--output", "o.npy", cwd=tmp_path)
    assert out.returncode == 2 and ".npz archive" in out.stderr
    np.save(tmp_path / "in.npy", np.zeros((2, 6), np.float32))
    out = cube("transform", "--model", "run/model", "--input", "in.npy", "--output", "no/such/dir/o.npy", cwd=tmp_path)
    assert out.returncode == 2 and "cannot write" in out.stderr
