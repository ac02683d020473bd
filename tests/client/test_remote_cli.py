"""`cube datasets|jobs|models` and `cube transform --url` against a real running service (`cube up`,
tests/client/conftest.py): every command, in tables and as --json, the watch bar and its exit
status, and one-line errors naming the server's code and param (exit 1) or the usage error (exit 2)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from tests.conftest import TINY_CUBE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cube(live, capsys):
    """cube(*argv) -> (exit status, stdout, stderr), run in this process against the live service."""
    def run(*argv: str, key: str | None = None):
        capsys.readouterr()
        try:
            code = main([*argv, "--url", live.url, "--api-key", key or live.admin_key])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


def as_json(out: str):
    return json.loads(out)


def test_datasets_commands(cube, pairs_npz):
    code, out, _ = cube("datasets", "upload", str(pairs_npz), "--name", "cli pairs", "--metadata", '{"a": 1}', "--json")
    assert code == 0
    ds = as_json(out)
    assert ds["kind"] == "embedding_pairs" and ds["num_pairs"] == 400 and ds["metadata"] == {"a": 1}
    code, out, err = cube("datasets", "upload", str(pairs_npz), "--name", "with bar")
    assert code == 0 and "num_pairs" in out and "400" in out and "uploading" in err  # the progress bar, on stderr
    code, out, _ = cube("datasets", "list", "--limit", "100", "--json")
    assert code == 0 and ds["id"] in [d["id"] for d in as_json(out)["data"]]
    code, out, _ = cube("datasets", "list")
    assert code == 0 and ds["id"] in out and "cli pairs" in out and "16->16" in out
    code, out, _ = cube("datasets", "show", ds["id"])
    assert code == 0 and ds["sha256"] in out
    code, out, _ = cube("datasets", "delete", ds["id"], "--json")
    assert code == 0 and as_json(out)["deleted"] is True
    code, out, err = cube("datasets", "show", ds["id"])
    assert code == 1 and out == "" and err.startswith("error: 404 not_found:") and err.count("\n") == 1


def test_jobs_create_watch_list_show_cancel(cube, trained):
    code, out, err = cube("jobs", "create", "--dataset", trained["dataset_id"], "--model", "cli-m",
                          "--architecture", json.dumps(TINY_CUBE), "--set", "n_epochs=3", "--set", "tuning_budget=1",
                          "--set", "early_stopping_patience=0", "--watch", "--poll-interval", "0.2")
    assert code == 0, err
    assert "succeeded: model cli-m" in out and "epoch 3/3" in err and "loss=" in err and "val_r@10=" in err  # the bar's last frame
    code, out, _ = cube("jobs", "list", "--status", "succeeded", "--limit", "100", "--json")
    job = next(j for j in as_json(out)["data"] if j["model"] == "cli-m")
    code, out, _ = cube("jobs", "list", "--limit", "100")
    assert code == 0 and job["id"] in out and "3/3" in out
    code, out, _ = cube("jobs", "show", job["id"])
    assert code == 0 and job["model_version_id"] in out
    code, out, err = cube("jobs", "watch", job["id"], "--json")
    assert code == 0 and as_json(out)["status"] == "succeeded"
    code, out, err = cube("jobs", "cancel", job["id"])
    assert code == 1 and err.startswith("error: 409 illegal_state: job") and "(param job_id)" in err, err


def test_watch_exits_non_zero_when_the_job_fails_or_is_cancelled(cube, trained, tmp_path):
    from cube.pairs import PairData, save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    pairs = nonlinear_pairs(n=100, d_in=16, d_out=16)
    one_group = tmp_path / "one-group.npz"  # one conversation holds every pair: no held-out split, training raises
    save_pairs_npz(one_group, PairData(pairs.input, pairs.target, np.array(["same"] * len(pairs))))
    code, out, _ = cube("datasets", "upload", str(one_group), "--json")
    ds = as_json(out)["id"]
    code, out, err = cube("jobs", "create", "--dataset", ds, "--model", "cli-fails", "--architecture",
                          json.dumps(TINY_CUBE), "--set", "n_epochs=1", "--watch", "--poll-interval", "0.2")
    assert code == 1 and "error: job" in err and "failed" in err, (out, err)

    code, out, _ = cube("jobs", "create", "--dataset", trained["dataset_id"], "--model", "cli-cancelled", "--architecture",
                        json.dumps(TINY_CUBE), "--set", "n_epochs=500", "--json")
    job = as_json(out)["id"]
    code, out, _ = cube("jobs", "cancel", job, "--json")
    assert code == 0 and as_json(out)["status"] in ("cancelled", "running")  # running: stops after its epoch
    code, out, err = cube("jobs", "watch", job, "--poll-interval", "0.2")
    assert code == 1 and f"job {job} cancelled" in err


def test_models_commands(cube, trained):
    name = trained["model"]
    code, out, _ = cube("models", "list", "--json")
    assert code == 0 and name in [m["id"] for m in as_json(out)["data"]]
    code, out, _ = cube("models", "show", name)
    assert code == 0 and name in out and trained["job"]["id"] in out
    code, out, _ = cube("models", "show", name, "--version", "1", "--json")
    assert as_json(out)["version"] == 1 and as_json(out)["dim_in"] == 16
    code, out, _ = cube("models", "alias", name, "stable", "1")
    assert code == 0 and f"{name}@stable -> version 1" in out
    code, out, _ = cube("models", "list")
    assert "stable->v1" in out
    code, out, _ = cube("models", "alias", name, "stable", "--delete", "--json")
    assert code == 0 and as_json(out)["deleted"] is True
    code, _, err = cube("models", "alias", name, "stable", "--delete")
    assert code == 1 and "404" in err
    code, _, err = cube("models", "show", name, "--version", "77")
    assert code == 1 and err.startswith("error: 404 not_found:")
    code, _, err = cube("models", "alias", name, "stable")
    assert code == 2 and "VERSION" in err


def test_transform_remote_in_every_format(cube, live, trained, tmp_path):
    from cube_client import Client

    x = np.random.default_rng(3).standard_normal((60, 16)).astype(np.float32)
    with Client(live.url, api_key=live.admin_key) as c:
        expected = c.transform(trained["model"], x)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", input=x, other=x[:2])
    (tmp_path / "x.jsonl").write_text("".join(json.dumps({"input": row.tolist()}) + "\n" for row in x))
    for src in ("x.npy", "x.npz", "x.jsonl"):
        for dst in ("y.npy", "y.npz", "y.jsonl"):
            code, out, err = cube("transform", "--model", trained["model"], "--input", str(tmp_path / src),
                                  "--output", str(tmp_path / dst))
            assert code == 0 and "wrote 60 vectors of 16 dimensions" in out, err
            if dst == "y.npy":
                y = np.load(tmp_path / dst)
            elif dst == "y.npz":
                y = np.load(tmp_path / dst)["embedding"]
            else:
                y = np.array([json.loads(line)["embedding"] for line in (tmp_path / dst).read_text().splitlines()])
            np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    code, out, _ = cube("transform", "--model", trained["model"], "--input", str(tmp_path / "x.npz"), "--key", "other",
                        "--output", str(tmp_path / "two.npy"), "--json")
    assert code == 0 and as_json(out)["vectors"] == 2


def test_transform_remote_errors(cube, trained, tmp_path):
    texts = tmp_path / "t.jsonl"
    texts.write_text('"a question?"\n"another"\n')
    code, out, err = cube("transform", "--model", trained["model"], "--input", str(texts), "--output", str(tmp_path / "o.npy"))
    assert code == 1 and "422 text_not_supported" in err and "(param input)" in err
    code, _, err = cube("transform", "--model", trained["model"], "--input", str(tmp_path / "missing.npy"),
                        "--output", str(tmp_path / "o.npy"))
    assert code == 2 and "no such file" in err
    np.save(tmp_path / "x.npy", np.ones((2, 16), np.float32))
    code, _, err = cube("transform", "--model", trained["model"], "--input", str(tmp_path / "x.npy"),
                        "--output", str(tmp_path / "o.csv"))
    assert code == 2 and ".npy, .npz, .jsonl" in err
    code, _, err = cube("datasets", "upload", str(tmp_path / "x.npy"), "--metadata", "{not json")
    assert code == 2 and "--metadata is not valid JSON" in err


def test_url_and_key_from_the_environment_and_auth_errors(live, trained):
    def cube(*argv, **env):
        done = subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=ROOT, env=live.env(**env),
                              capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout, done.stderr

    code, out, err = cube("models", "list", "--json", CUBE_URL=live.url, CUBE_API_KEY=live.admin_key)
    assert code == 0 and trained["model"] in out, err
    code, out, err = cube("models", "list", CUBE_URL=live.url)
    assert code == 1 and err.startswith("error: 401") and err.count("\n") == 1
    code, out, err = cube("datasets", "list", "--api-key", live.transform_key, CUBE_URL=live.url)
    assert code == 1 and "403 insufficient_scope" in err
    code, out, err = cube("jobs", "list", CUBE_URL="http://127.0.0.1:9")
    assert code == 1 and "connection_error" in err
    code, out, err = cube("jobs", "show", CUBE_URL=live.url)
    assert code == 2 and "usage:" in err
