"""The tuning budget: the learning-rate grid, the choice made on validation only, the same budget for
every trained method, and the residual MLP and MLP input scaling it compares."""
import numpy as np
import pytest
import torch

import cube.tuning as tuning
from cube.config import ConfigError, RunConfig, SplitConfig, TrainConfig
from cube.experiment import run_experiment
from cube.models import MLPMap, ResidualMLP, build_model, parameter_count
from cube.pairs import split_pairs
from cube.synthetic import nonlinear_pairs


def test_grid_starts_at_the_given_rate_and_spreads_by_four():
    assert tuning.learning_rate_grid(TrainConfig(learning_rate=1e-3, tuning_budget=1)) == [1e-3]
    assert tuning.learning_rate_grid(TrainConfig(learning_rate=1e-3, tuning_budget=3)) == pytest.approx([1e-3, 2.5e-4, 4e-3])
    assert tuning.learning_rate_grid(TrainConfig(learning_rate=1e-3, tuning_budget=4)) == pytest.approx(
        [1e-3, 2.5e-4, 4e-3, 6.25e-5])
    with pytest.raises(ConfigError, match="tuning_budget"):
        TrainConfig(tuning_budget=0).validate()


def test_tune_keeps_the_rate_with_the_best_validation_score_and_sees_only_validation(monkeypatch):
    data = nonlinear_pairs(n=400, d_in=8, d_out=8, seed=3)
    train, val = (data.input[:300], data.target[:300]), (data.input[300:350], data.target[300:350])
    seen = []
    real_fit = tuning.fit
    monkeypatch.setattr(tuning, "fit", lambda m, tr, va, cfg, **kw: seen.append(va) or real_fit(m, tr, va, cfg, **kw))
    cfg = TrainConfig(n_epochs=3, batch_size=64, device="cpu", learning_rate=1e-3, tuning_budget=3)
    tuned = tuning.tune(lambda: build_model("linear", {"d_in": 8, "d_out": 8}), train, val, cfg)
    assert [t["learning_rate"] for t in tuned.trials] == pytest.approx([1e-3, 2.5e-4, 4e-3])
    assert len(seen) == 3 and all(va[0] is val[0] and va[1] is val[1] for va in seen)
    scores = [t["val_mrr"] for t in tuned.trials]
    assert tuned.cfg.learning_rate == tuned.trials[int(np.argmax(scores))]["learning_rate"]
    assert tuned.result.best_score == max(scores)


def test_every_trained_method_in_a_report_gets_the_same_budget_on_validation(tmp_path, monkeypatch):
    data = nonlinear_pairs(n=400, d_in=8, d_out=8, seed=4)
    split = split_pairs(data, SplitConfig())
    seen = []
    real_fit = tuning.fit
    monkeypatch.setattr(tuning, "fit", lambda m, tr, va, cfg, **kw: seen.append(va[1]) or real_fit(m, tr, va, cfg, **kw))
    run = RunConfig(model={"grid": [2, 2, 2], "channels": 4, "steps": 2, "hidden": 8},
                    train=TrainConfig(n_epochs=2, batch_size=64, device="cpu", learning_rate=2e-3, tuning_budget=2))
    report = run_experiment(data, run, tmp_path).report
    assert report["tuning"]["budget"] == 2 and report["tuning"]["learning_rates"] == pytest.approx([2e-3, 5e-4])
    assert set(report["tuning"]["chosen"]) == {"cube", "linear", "mlp", "resmlp"}
    for chosen in report["tuning"]["chosen"].values():
        assert [t["learning_rate"] for t in chosen["trials"]] == pytest.approx([2e-3, 5e-4])
        best = max(chosen["trials"], key=lambda t: t["val_mrr"])
        assert chosen["learning_rate"] == best["learning_rate"]
    assert len(seen) == 8 and all(np.array_equal(t, data.target[split.val]) for t in seen)
    md = (tmp_path / "report.md").read_text()
    assert "same tuning budget: 2 learning rate(s)" in md and "| resmlp |" in md


def test_residual_mlp_starts_as_the_identity_and_projects_between_sizes():
    torch.manual_seed(0)
    x = torch.randn(5, 6)
    same = ResidualMLP(6, 6, hidden=16)
    assert torch.equal(same(x), x)
    assert parameter_count(same) == 6 * 2 + 6 * 16 + 16 + 16 * 6 + 6  # LayerNorm, W1, W2: no skip matrix
    other = build_model("resmlp", {"d_in": 6, "d_out": 4, "hidden": 16})
    assert other(x).shape == (5, 4) and torch.allclose(other(x), other.project(x))
    with pytest.raises(ConfigError, match="resmlp"):
        build_model("resmlp", {"d_in": 6, "d_out": 4, "input_norm": True})


def test_mlp_input_scaling_is_explicit_so_older_artifacts_keep_their_function():
    torch.manual_seed(0)
    scaled = build_model("mlp", {"d_in": 8, "d_out": 8, "hidden": 4, "input_norm": True})
    plain = build_model("mlp", {"d_in": 8, "d_out": 8, "hidden": 4})  # a config written before the option
    assert isinstance(scaled.norm, torch.nn.LayerNorm) and isinstance(plain.norm, torch.nn.Identity)
    assert scaled.state_dict().keys() == plain.state_dict().keys()  # no new weights: old files still load
    x = torch.nn.functional.normalize(torch.randn(64, 8), dim=-1)
    # Unit-norm inputs reach the hidden layer standardised (components of size ~1, not ~1/sqrt(D)).
    assert scaled.norm(x).std(dim=-1).mean() == pytest.approx(1.0, abs=0.1)
    assert isinstance(MLPMap(8, 8).norm, torch.nn.Identity)
