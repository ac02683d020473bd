"""The held-out report: every baseline on the same split, the dimension rules, seeds with intervals,
ridge's lambda from validation, and the Markdown table and plot."""
import json

import numpy as np
import pytest

from cube.config import RunConfig, SplitConfig, TrainConfig
from cube.experiment import run_experiment, summarise, t95
from cube.models import parameter_count
from cube.pairs import PairData
from cube.report import markdown_table
from cube.synthetic import nonlinear_pairs

TINY_CUBE = {"grid": [2, 2, 2], "channels": 4, "steps": 2, "hidden": 8}


def tiny_run(**train):
    train = {"n_epochs": 2, "batch_size": 64, "device": "cpu", "tuning_budget": 1, **train}
    return RunConfig(arch="cube", model=dict(TINY_CUBE), train=TrainConfig(**train), split=SplitConfig())


@pytest.fixture(scope="module")
def same_dim_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("same")
    result = run_experiment(nonlinear_pairs(n=400, d_in=12, d_out=12, seed=1), tiny_run(), out, seeds=2)
    return result, out


def test_every_baseline_is_in_the_report(same_dim_report):
    result, out = same_dim_report
    methods = result.report["methods"]
    assert set(methods) == {"cube", "linear", "mlp", "resmlp", "ridge", "procrustes", "identity", "mean"}
    for metrics in methods.values():
        assert {"recall_at_1", "recall_at_10", "mrr", "mean_cosine", "centered_cosine", "constant_cosine",
                "output_spread"} <= set(metrics)
    # The constant predictor: chance-level recall, whatever its mean cosine.
    assert methods["mean"]["recall_at_1"] < 0.05 and methods["mean"]["output_spread"] < 1e-3
    assert json.loads((out / "report.json").read_text())["methods"].keys() == methods.keys()


def test_seeds_give_intervals_for_trained_methods_only(same_dim_report):
    result, _ = same_dim_report
    intervals = result.report["intervals"]
    assert set(intervals) == {"cube", "linear", "mlp", "resmlp"}
    for name, ci in intervals.items():
        low, high = ci["recall_at_10"]
        assert low <= result.report["methods"][name]["recall_at_10"] <= high


def test_mlp_is_parameter_matched_and_ridge_lambda_recorded(same_dim_report):
    result, _ = same_dim_report
    info = result.report["info"]
    cube_params = info["cube"]["parameters"]
    assert abs(info["mlp"]["parameters"] - cube_params) <= 12 + 12 + 1  # one hidden unit's worth
    assert info["ridge"]["lambda"] in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0) and "val_mrr" in info["ridge"]
    assert parameter_count(result.model) == cube_params


def test_markdown_and_plot(same_dim_report):
    _, out = same_dim_report
    md = (out / "report.md").read_text()
    for name in ("cube (trained)", "linear", "mlp", "resmlp", "ridge", "procrustes", "identity", "mean"):
        assert f"| {name} |" in md
    assert "±" in md and "constant predictor" in md and "2 seeds" in md
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_different_dims_drop_identity_and_procrustes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 10)).astype(np.float32)
    y = (x @ rng.standard_normal((10, 6))).astype(np.float32)
    run = tiny_run()
    run.model.update(d_in=10, d_out=6)
    result = run_experiment(PairData(x, y), run, tmp_path, seeds=1)
    assert set(result.report["methods"]) == {"cube", "linear", "mlp", "resmlp", "ridge", "mean"}
    assert result.report["intervals"] == {}
    assert "| identity |" not in markdown_table(result.report)


def test_ridge_lambda_is_chosen_on_validation_not_test(tmp_path, monkeypatch):
    # Record which rows ridge scores lambdas on: they must be the validation split's.
    import cube.baselines as baselines

    seen = []
    real = baselines.retrieval_metrics
    monkeypatch.setattr(baselines, "retrieval_metrics", lambda p, t: seen.append(np.asarray(t).copy()) or real(p, t))
    data = nonlinear_pairs(n=300, d_in=8, d_out=8, seed=2)
    result = run_experiment(data, tiny_run(), tmp_path)
    from cube.pairs import split_pairs

    split = split_pairs(data, SplitConfig())
    assert seen and all(np.array_equal(t, data.target[split.val]) for t in seen)
    assert result.report["n"]["val"] == len(split.val)


def test_summary_interval_uses_student_t():
    mean, ci = summarise([{"m": 1.0}, {"m": 2.0}, {"m": 3.0}])
    assert mean["m"] == 2.0
    half = t95(2) * 1.0 / np.sqrt(3)
    assert ci["m"] == pytest.approx([2.0 - half, 2.0 + half])
    assert summarise([{"m": 1.0}])[1] is None
