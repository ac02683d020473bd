"""The cube's eval-only fast path (cube.fast_inference): the same outputs as the eager forward for every
config variant, eager where it cannot apply, wrappers served through it, and the original untouched."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import cube.fast_inference as fast_inference
from cube import CubeConfig, CubeModel
from cube.autoencoder import Half
from cube.fast_inference import FastCube, accelerate, fast_cube
from cube.models import build_model
from cube.multiteacher import HeadView

SMALL = dict(d_in=24, d_out=20, grid=(3, 4, 5), channels=4, hidden=8, steps=3)
TOLERANCE = 1e-5

# Every CubeConfig choice that changes the eval forward pass, alone or where two interact (a periodic
# boundary keeps the eager perception; the zero boundary has its own per perception kind).
VARIANTS = [
    {},
    {"neighbourhood": 6},
    {"perception": "fixed"},
    {"boundary": "periodic"},
    {"neighbourhood": 6, "boundary": "periodic"},
    {"perception": "fixed", "boundary": "periodic"},
    {"cell": "gated"},
    {"cell": "gated", "boundary": "periodic"},
    {"global_channel": False},
    {"read_out": "face"},
    {"skip": "none"},
    {"skip": "identity", "d_out": 24},
    {"read_in": "reshape", "d_in": 60},
    {"read_in": "lowrank", "read_in_rank": 5},
    {"fire_rate": 0.3},
    {"fire_rate": 1.0},
    {"steps": 0},
    {"dropout": 0.3, "steps_jitter": 2, "state_penalty": 0.1},  # training-only: no effect in eval
]


def cube(overrides: dict, base: dict = SMALL, scale: float = 0.3) -> CubeModel:
    torch.manual_seed(0)
    model = CubeModel(CubeConfig(**{**base, **overrides}))
    with torch.no_grad():  # fc_out starts at zero, which would hide every difference in the cell rule
        for p in model.cell_rule.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def unit_rows(n: int, d: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(1)), dim=1)


def max_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((a(x) - b(x)).abs().max())


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_every_variant_gets_the_fast_path_with_the_eager_outputs(overrides):
    model = cube(overrides)
    fast = accelerate(model)
    assert isinstance(fast, FastCube)
    for rows in (1, 7):  # batch 1 takes other kernels than a batch
        x = unit_rows(rows, model.cfg.d_in)
        assert max_diff(fast, model, x) <= TOLERANCE


def test_the_default_cube_gets_the_fast_path_with_the_eager_outputs():
    model = cube({}, base={}, scale=0.1)  # outputs up to about 5, as a trained cube's
    fast = accelerate(model)
    assert isinstance(fast, FastCube)
    assert max_diff(fast, model, unit_rows(64, model.cfg.d_in)) <= TOLERANCE


def test_a_cube_with_large_outputs_is_held_to_float32_rounding_of_its_size():
    model = cube({}, base={}, scale=0.3)  # states grow to about 500 over the steps
    x = unit_rows(16, model.cfg.d_in)
    with torch.inference_mode():
        size = float(model(x).abs().max())
    fast = accelerate(model)
    assert size > 100 and isinstance(fast, FastCube)
    assert max_diff(fast, model, x) <= TOLERANCE * size


def test_the_cell_rule_matters_to_the_fast_path():
    """The equality tests mean something: the fast path runs the cell rule, not just the skip path."""
    model = cube({})
    fast = accelerate(model)
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        zeroed.cell_rule.fc_out.weight.zero_()
    x = unit_rows(5, model.cfg.d_in)
    assert max_diff(fast, accelerate(zeroed), x) > 1e-3


def test_the_original_model_is_left_as_it_was():
    model = cube({}).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = accelerate(model)
    assert model.training and isinstance(fast, FastCube)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    # A snapshot: training the model afterwards does not reach the fast path's weights.
    with torch.no_grad():
        model.read_out.weight.add_(1.0)
    x = unit_rows(3, model.cfg.d_in)
    assert max_diff(fast, model.eval(), x) > 1e-2


def test_a_float64_model_stays_eager():
    model = cube({}).double()
    assert fast_cube(model) is model


def test_a_model_off_the_cpu_stays_eager():
    model = cube({}).to("meta")  # any device but the CPU: the fast path was measured on the CPU only
    assert fast_cube(model) is model


def test_a_fast_path_that_disagrees_with_eager_is_not_used(monkeypatch):
    model = cube({})
    wrong = FastCube.forward
    monkeypatch.setattr(FastCube, "forward", lambda self, x: wrong(self, x) + 1.0)
    assert fast_cube(model) is model


def test_a_fast_path_that_cannot_be_built_is_not_used(monkeypatch):
    def refuse(module):
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(fast_inference, "packed", refuse)
    model = cube({})
    assert fast_cube(model) is model


@pytest.mark.parametrize("arch", ["linear", "mlp", "resmlp"])
def test_other_architectures_are_served_as_they_are(arch):
    model = build_model(arch, {"d_in": 16, "d_out": 12, "hidden": 8} if arch != "linear" else {"d_in": 16, "d_out": 12})
    assert accelerate(model) is model


def test_an_autoencoder_cube_is_served_fast_through_a_copy():
    torch.manual_seed(0)
    model = build_model("cube", {"d_in": 16, "d_out": 16, "code_size": 3, "grid": [2, 2, 3], "channels": 4,
                                 "steps": 2, "hidden": 8})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    fast = accelerate(model)
    assert type(fast) is type(model) and fast is not model
    assert isinstance(fast.encoder, FastCube) and isinstance(model.encoder, CubeModel)  # the original kept its cube
    x = unit_rows(6, 16)
    for side in ("encode", "decode"):
        inputs = x if side == "encode" else x[:, :3]
        assert max_diff(Half(fast, side), Half(model, side), inputs) <= TOLERANCE
    assert max_diff(fast, model, x) <= TOLERANCE


def test_a_head_of_a_multi_head_cube_is_served_fast():
    model = cube({})
    head = slice(4, 12)
    assert max_diff(HeadView(accelerate(model), head), HeadView(model, head), unit_rows(5, model.cfg.d_in)) <= TOLERANCE


def test_predict_runs_the_fast_path():
    from cube.trainer import predict

    model = cube({})
    x = unit_rows(9, model.cfg.d_in).numpy()
    got, expected = predict(accelerate(model), x, batch_size=4), predict(model, x, batch_size=4)
    assert got.shape == expected.shape and abs(got - expected).max() <= TOLERANCE
