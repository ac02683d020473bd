"""The search-space format, drawing points with real Optuna trials, pruning, and `cube sweep`."""
import json

import optuna
import pytest

from cube.config import ConfigError, RunConfig
from cube.models import check_model_config
from cube.pairs import save_pairs_npz
from cube.search_space import SearchSpaceError, check_size, parse_space, sample
from cube.sweep import PruningReporter, draw, make_pruner, suggester, trial_config
from cube.synthetic import nonlinear_pairs

SPACE = {
    "arch": ["cube", "mlp"],
    "grid": [[2, 2, 2], [2, 2, 4]],
    "channels": [4, 8],
    "steps": {"low": 2, "high": 6, "step": 2},
    "hidden": [16, 32],
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "loss": "infonce",
}


@pytest.mark.parametrize("raw, key, fragment", [
    ({"channels": []}, "channels", "empty list"),
    ({"steps": {"low": 6, "high": 2}}, "steps", "empty range"),
    ({"stepz": [1, 2]}, "stepz", "unknown setting"),
    ({"learning_rate": {"low": 0, "high": 1, "log": True}}, "learning_rate", "log range needs low > 0"),
    ({"channels": {"low": 1.5, "high": 4}}, "channels", "whole numbers"),
    ({"grid": {"low": 1, "high": 4}}, "grid", "not numeric"),
    ({"cell": ["mlp", "lstm"]}, "cell", "cell must be one of"),
    ({"fire_rate": {"low": 0.5, "high": 2.0}}, "fire_rate", "fire_rate must be in"),
    ({"arch": ["cube", "transformer"]}, "arch", "must be one of"),
    ({"seed": [1, 2]}, "seed", "unknown setting"),
    ({"channels": [4, 4]}, "channels", "repeat"),
    ({"steps": {"low": 2, "high": 4, "stride": 1}}, "steps", "unknown field"),
])
def test_a_bad_space_names_the_setting(raw, key, fragment):
    with pytest.raises(SearchSpaceError) as err:
        parse_space(raw)
    assert err.value.key == key and fragment in str(err.value) and f"search_space.{key}" in str(err.value)


def test_an_empty_space_is_refused():
    for raw in ({}, [], "grid"):
        with pytest.raises(SearchSpaceError):
            parse_space(raw)


def test_a_space_round_trips_and_draws_model_settings_only_for_their_architecture():
    space = parse_space(SPACE)
    assert parse_space(space.to_json()) == space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_archs = set()
    for _ in range(12):
        point = sample(space, suggester(study.ask()))
        seen_archs.add(point["arch"])
        assert point["loss"] == "infonce"  # a fixed value is part of every point
        assert 1e-4 <= point["learning_rate"] <= 1e-2 and point["hidden"] in (16, 32)
        if point["arch"] == "cube":
            assert point["grid"] in ([2, 2, 2], [2, 2, 4]) and point["steps"] in (2, 4, 6)
        else:  # the MLP has no grid, channels or steps
            assert not {"grid", "channels", "steps"} & set(point)
    assert seen_archs == {"cube", "mlp"}


def test_a_trial_config_takes_the_point_and_the_objective():
    base = RunConfig(model={"grid": [4, 4, 4]})
    run = trial_config(base, {"arch": "cube", "channels": 8, "learning_rate": 3e-3}, "val_recall_at_10")
    assert run.model == {"grid": [4, 4, 4], "channels": 8}
    assert run.train.learning_rate == 3e-3 and run.train.monitor == "recall_at_10" and run.train.tuning_budget == 1
    other = trial_config(base, {"arch": "mlp", "hidden": 64}, "val_mrr")
    assert other.arch == "mlp" and other.model == {"hidden": 64}  # the cube's base settings do not follow
    with pytest.raises(ConfigError):
        trial_config(base, {"loss": "mse", "hard_negatives": 4}, "val_mrr")
    with pytest.raises(ConfigError):
        trial_config(base, {}, "val_loss")


def test_the_largest_model_of_a_space_is_checked_against_the_caps_and_the_culprit_named():
    def check(arch, settings, batch):
        check_model_config(arch, {"d_in": 384, "d_out": 384, **settings}, max_state_values=1 << 16,
                           max_activation_bytes=1 << 30, batch_size=batch)

    check_size(parse_space({"grid": [[4, 4, 4], [4, 4, 6]], "channels": [8, 16]}), check, 256)
    with pytest.raises(SearchSpaceError) as err:
        check_size(parse_space({"grid": [[4, 4, 4], [64, 64, 64]], "channels": [8, 16]}), check, 256)
    assert err.value.key == "grid" and "too big" in str(err.value)
    with pytest.raises(SearchSpaceError) as err:
        check_size(parse_space({"channels": {"low": 8, "high": 100000}}), check, 256)
    assert err.value.key == "channels"


def test_the_median_pruner_stops_a_trial_below_the_median_of_earlier_ones():
    study = optuna.create_study(direction="maximize", pruner=make_pruner({"kind": "median", "startup_trials": 1,
                                                                          "warmup_epochs": 0}))
    first = study.ask()
    for epoch in (1, 2, 3):
        first.report(0.7 + 0.1 * epoch, epoch)  # 0.8, 0.9, 1.0
    study.tell(first, 1.0)

    class Report:
        def __init__(self, epoch, mrr):
            self.epoch, self.val = epoch, {"mrr": mrr}

    reporter = PruningReporter(study.ask(), "mrr")
    reporter.on_epoch_end(Report(1, 0.85))  # above the first trial's 0.8 at epoch 1: goes on
    assert not reporter.pruned
    with pytest.raises(Exception) as stop:
        reporter.on_epoch_end(Report(2, 0.1))  # its best so far, 0.85, is below 0.9
    assert type(stop.value).__name__ == "StopTraining" and reporter.pruned


@pytest.mark.parametrize("spec, fragment", [({"kind": "hyperband"}, "pruner.kind"),
                                             ({"kind": "median", "patience": 3}, "patience"),
                                             ({"kind": "halving", "reduction_factor": 1}, "reduction_factor")])
def test_bad_pruner_settings_are_refused(spec, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make_pruner(spec)


def test_draw_records_the_whole_point_on_the_trial():
    study = optuna.create_study()
    trial = study.ask()
    run = draw(trial, parse_space({"channels": [4, 8], "loss": "infonce"}), RunConfig(), "val_mrr")
    assert trial.user_attrs["point"]["loss"] == "infonce" and run.model["channels"] in (4, 8)


def test_cube_sweep_runs_continues_and_writes_the_best_model_with_its_report(tmp_path, cube):
    save_pairs_npz(tmp_path / "pairs.npz", nonlinear_pairs(n=600, d_in=12, d_out=12))
    (tmp_path / "space.toml").write_text('channels = [4, 8]\nlearning_rate = {low = 1e-3, high = 1e-2, log = true}\n')
    common = ("--data", "pairs.npz", "--space", "space.toml", "--out", "sw", "--set", "grid=[2,2,2]",
              "--set", "n_epochs=2", "--set", "batch_size=64", "--set", "tuning_budget=1", "--pruner", "none")
    status, out, err = cube("sweep", *common, "--trials", "2")
    assert status == 0, err
    summary = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [t["number"] for t in summary["trials"]] == [0, 1]
    assert all(t["state"] == "complete" and t["epochs"] == 2 and t["params"]["channels"] in (4, 8)
               for t in summary["trials"])
    best = max(summary["trials"], key=lambda t: t["value"])
    assert summary["best"] == {"number": best["number"], "params": best["params"], "value": best["value"]}
    report = json.loads((tmp_path / "sw" / "best" / "report.json").read_text())
    assert report["model"]["config"]["channels"] == best["params"]["channels"]
    assert {"cube", "linear", "mlp", "ridge"} <= set(report["methods"]) and "cube (trained)" in out

    # The same command with more trials continues the study: the first two are kept, new points drawn.
    status, _, err = cube("sweep", *common, "--trials", "3")
    assert status == 0, err
    again = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert again["trials"][:2] == summary["trials"] and len(again["trials"]) == 3
    assert again["trials"][2]["params"] not in [t["params"] for t in summary["trials"]]

    (tmp_path / "other.toml").write_text("channels = [4, 16]\n")
    status, _, err = cube("sweep", *common[:2], "--space", "other.toml", *common[4:], "--trials", "3")
    assert status == 2 and "another space" in err


def test_cube_sweep_refuses_a_bad_space_with_exit_2(tmp_path, cube):
    save_pairs_npz(tmp_path / "pairs.npz", nonlinear_pairs(n=200, d_in=8, d_out=8))
    (tmp_path / "space.toml").write_text("steps = {low = 4, high = 2}\n")
    status, _, err = cube("sweep", "--data", "pairs.npz", "--space", "space.toml", "--trials", "2", "--out", "sw")
    assert status == 2 and "search_space.steps: empty range" in err
    assert not (tmp_path / "sw").exists()
