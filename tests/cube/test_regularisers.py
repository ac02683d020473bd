"""Regularisers that fit an NCA, and the collapse guard: each does what docs/learning.md claims."""
import numpy as np
import pytest
import torch

from cube import ConfigError, CubeConfig, CubeModel, TrainConfig, build_model, fit
from cube.metrics import collapsed, evaluate_predictions
from cube.report import write_markdown

TINY = dict(d_in=16, d_out=16, grid=(2, 2, 3), channels=4, hidden=8, steps=3)


def cube(**overrides) -> CubeModel:
    torch.manual_seed(0)
    return CubeModel(CubeConfig(**{**TINY, **overrides}))


def wake(model: CubeModel) -> CubeModel:
    """Give the zero-initialised last layer weights, so the automaton changes the state."""
    with torch.no_grad():
        model.cell_rule.fc_out.weight.normal_(std=0.3)
    return model


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


X = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(1)), dim=-1)


@pytest.mark.parametrize("overrides", [
    {"steps": 0, "dropout": 0.5, "read_in": "lowrank", "state_penalty": 1.0},
    {"steps": 3, "steps_jitter": 2, "dropout": 0.5, "read_in": "lowrank", "state_penalty": 1.0},
])
def test_without_a_cell_update_the_model_is_its_skip_path_even_in_training(overrides):
    # T = 0, or the zero-initialised cell rule: every regulariser leaves the identity property intact
    model = cube(**overrides).train()
    assert torch.equal(model(X), model.skip_path(X))


def test_low_rank_read_in_parameter_count_and_flops():
    full, low = cube(), cube(read_in="lowrank", read_in_rank=5)
    cells = 2 * 2 * 3 * 4  # X*Y*Z*C state values
    assert full.parameter_count() - low.parameter_count() == (16 * cells + cells) - (16 * 5 + 5 * cells + cells)
    assert full.flops_per_sample() - low.flops_per_sample() == 2 * (16 * cells - 5 * (16 + cells))
    assert low(X).shape == (8, 16)


def test_dropout_is_off_in_eval_and_on_in_training():
    plain, dropped = wake(cube(fire_rate=1.0)), wake(cube(fire_rate=1.0, dropout=0.5))
    dropped.load_state_dict(plain.state_dict())
    plain.eval(), dropped.eval()
    assert torch.equal(plain(X), dropped(X))
    dropped.train()
    assert not torch.equal(dropped(X), dropped(X))  # a fresh mask each forward pass


def test_steps_jitter_draws_the_step_count_per_training_batch_only():
    model = cube(steps=3, steps_jitter=2)
    calls = []
    model.cell_rule.register_forward_hook(lambda *_: calls.append(1))

    def steps_of_one_forward():
        calls.clear()
        model(X)
        return len(calls)

    model.train()
    torch.manual_seed(0)
    seen = {steps_of_one_forward() for _ in range(40)}
    assert seen == {1, 2, 3, 4, 5}
    model.eval()
    assert {steps_of_one_forward() for _ in range(5)} == {3}
    with pytest.raises(ConfigError, match="steps_jitter"):
        CubeConfig(steps=2, steps_jitter=3).validate()


def test_state_penalty_is_the_weighted_mean_overflow_and_off_in_eval():
    model = wake(cube(steps=1, fire_rate=1.0, state_penalty=2.0)).train()
    s0 = model.embed(X)
    s1 = model.run(s0)
    expected = 2.0 * torch.relu(s1.abs() - 1).pow(2).mean()
    assert model.penalty() is not None and torch.allclose(model.penalty(), expected)
    assert model.penalty().item() > 0  # unit-variance read-in: many states start outside [-1, 1]
    model.eval()
    model(X)
    assert model.penalty() is None
    assert cube().train().penalty() is None  # off by default


def overflow_after_training(**overrides) -> float:
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((200, 16))).astype(np.float32)
    y = unit(np.tanh(x @ rng.standard_normal((16, 16)))).astype(np.float32)
    torch.manual_seed(0)
    model = build_model("cube", {**TINY, "grid": [2, 2, 3], **overrides})
    fit(model, (x[:150], y[:150]), (x[150:], y[150:]),
        TrainConfig(n_epochs=2, batch_size=50, learning_rate=0.1, warmup_steps=0, early_stopping_patience=0))
    with torch.no_grad():
        model.eval()
        s = model.run(model.embed(torch.as_tensor(x)))
    return float(torch.relu(s.abs() - 1).pow(2).mean())


def test_state_penalty_pulls_the_states_into_range():
    assert overflow_after_training(state_penalty=5.0) < 0.5 * overflow_after_training()


def test_io_weight_decay_has_its_own_optimizer_group():
    model = cube(read_in="lowrank", io_weight_decay=0.5)
    rest, io = model.param_groups(1e-4)
    io_params = {id(p) for m in (model.read_in, model.read_out) for p in m.parameters()}
    assert {id(p) for p in io["params"]} == io_params and io["weight_decay"] == 0.5
    assert not io_params & {id(p) for p in rest["params"]} and rest["weight_decay"] == 1e-4
    assert len(rest["params"]) + len(io["params"]) == len(list(model.parameters()))
    assert len(cube().param_groups(1e-4)) == 1  # default: one group, as before


class NoiseProbe(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)
        self.inputs = []

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.inputs.append(x.detach().clone())
        return self.linear(x)


def test_input_noise_has_about_the_set_norm_and_repeats_with_the_seed():
    x = unit(np.random.default_rng(0).standard_normal((64, 16))).astype(np.float32)
    probes = []
    for _ in range(2):
        probe = NoiseProbe()
        fit(probe, (x, x), (x[:8], x[:8]), TrainConfig(n_epochs=1, batch_size=64, input_noise=0.2, early_stopping_patience=0))
        probes.append(probe)
    seen = probes[0].inputs[0]
    clean = torch.as_tensor(x)[torch.randperm(64, generator=torch.Generator().manual_seed(0))]  # the trainer's shuffle
    noise_norm = (seen - clean).norm(dim=1)
    assert 0.14 < noise_norm.mean().item() < 0.26
    assert torch.equal(seen, probes[1].inputs[0])


def spread_after_mse(spread_penalty: float) -> float:
    """MSE towards unpredictable targets pulls a map to the mean target: its outputs collapse."""
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((400, 16))).astype(np.float32)
    y = unit(rng.standard_normal((400, 16)) + 3.0).astype(np.float32)
    torch.manual_seed(0)
    model = build_model("linear", {"d_in": 16, "d_out": 16})
    cfg = TrainConfig(n_epochs=8, batch_size=50, learning_rate=0.1, warmup_steps=0, loss="mse",
                      spread_penalty=spread_penalty, early_stopping_patience=0, monitor="loss")
    fit(model, (x[:300], y[:300]), (x[300:], y[300:]), cfg)
    with torch.no_grad():
        pred = model.eval()(torch.as_tensor(x[300:])).numpy()
    return evaluate_predictions(pred, y[300:], y[:300].mean(0))["output_spread"]


def test_spread_penalty_keeps_predictions_from_collapsing():
    assert spread_after_mse(0.0) < 0.5
    assert spread_after_mse(1.0) > 0.8


def test_collapse_alarm_in_the_report(tmp_path):
    methods = {"cube": {"output_spread": 0.3}, "linear": {"output_spread": 0.9}, "mean": {"output_spread": 0.0}}
    assert collapsed(methods) == ["cube"]
    cols = {"recall_at_1": 0.1, "recall_at_10": 0.2, "mrr": 0.1, "mean_cosine": 0.5, "centered_cosine": 0.1}
    report = {"n": {"train": 10, "val": 2, "test": 2}, "main": "cube",
              "methods": {k: {**cols, **v} for k, v in methods.items()},
              "collapse_alarm": {"threshold": 0.5, "methods": ["cube"]}}
    write_markdown(report, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "Collapse alarm: cube's output spread is 0.30" in text and "linear's" not in text


def test_every_regulariser_on_is_deterministic_on_cpu(synthetic):
    model_cfg = {**TINY, "grid": [2, 2, 3], "read_in": "lowrank", "read_in_rank": 4, "dropout": 0.2, "steps_jitter": 1,
                 "state_penalty": 0.1, "io_weight_decay": 0.01}
    cfg = TrainConfig(n_epochs=2, batch_size=100, input_noise=0.1, spread_penalty=1.0, hard_negatives=2,
                      curriculum="linear", curriculum_epochs=1, early_stopping_patience=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("cube", model_cfg)
        fit(model, (synthetic.input[:300], synthetic.target[:300]), (synthetic.input[300:360], synthetic.target[300:360]), cfg)
        runs.append(model.state_dict())
    for k, v in runs[0].items():
        assert torch.equal(v, runs[1][k]), k
