"""The cube is really on the path: gradients reach the cell rule, its weights change the output,
T=0 is exactly the skip path, and the whole grid and batch run as one tensor program."""
import pytest
import torch

from cube import CubeConfig, CubeModel

SMALL = dict(d_in=24, d_out=20, grid=(3, 4, 5), channels=4, hidden=8, steps=3)


def make(**overrides) -> CubeModel:
    torch.manual_seed(0)
    return CubeModel(CubeConfig(**{**SMALL, **overrides}))


def perturb_cell_rule(model: CubeModel, scale: float = 0.5) -> None:
    with torch.no_grad():
        for p in model.cell_rule.parameters():
            p.add_(scale * torch.randn_like(p))


VARIANTS = [
    {},
    {"neighbourhood": 6},
    {"boundary": "periodic"},
    {"neighbourhood": 6, "boundary": "periodic"},
    {"perception": "fixed"},
    {"cell": "gated"},
    {"global_channel": False},
    {"read_out": "face"},
    {"skip": "none"},
    {"d_in": 60, "read_in": "reshape"},
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_gradients_reach_the_cell_rule(overrides):
    model = make(**overrides).train()
    x, target = torch.randn(6, model.cfg.d_in), torch.randn(6, model.cfg.d_out)
    (model(x) - target).pow(2).sum().backward()
    # The last layer starts at zero, so it is the one that receives gradient first.
    grad = model.cell_rule.fc_out.weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("overrides", VARIANTS[:6], ids=str)
def test_gradients_reach_every_cell_weight_once_the_rule_is_active(overrides):
    model = make(**overrides).train()
    perturb_cell_rule(model)
    (model(torch.randn(6, model.cfg.d_in)) - torch.randn(6, model.cfg.d_out)).pow(2).sum().backward()
    for name, p in model.cell_rule.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_changing_the_cell_rule_changes_the_output():
    model = make().eval()
    x = torch.randn(5, model.cfg.d_in)
    before = model(x)
    perturb_cell_rule(model)
    after = model(x)
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize("overrides", [{}, {"skip": "none"}, {"read_out": "face"}], ids=str)
def test_zero_steps_is_exactly_the_skip_path(overrides):
    model = make(**overrides).eval()
    perturb_cell_rule(model)  # a non-trivial rule, which T=0 must bypass
    x = torch.randn(7, model.cfg.d_in)
    assert torch.equal(model(x, steps=0), model.skip_path(x))
    assert not torch.equal(model(x), model.skip_path(x))


def test_a_zeroed_cell_rule_is_exactly_the_skip_path():
    model = make().eval()
    x = torch.randn(4, model.cfg.d_in)
    assert torch.equal(model(x), model.skip_path(x))  # fresh: last layer zero-initialised


def test_batch_rows_are_independent():
    """One batched program, but sample i's output must not depend on sample j."""
    model = make().eval()
    perturb_cell_rule(model)
    x = torch.randn(8, model.cfg.d_in)
    together = model(x)
    alone = torch.cat([model(x[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_fixed_seed_is_deterministic_on_cpu():
    outs = []
    for _ in range(2):
        model = make().train()
        torch.manual_seed(123)
        perturb_cell_rule(model)
        outs.append(model(torch.ones(3, model.cfg.d_in)))
    assert torch.equal(outs[0], outs[1])


def test_locality_without_global_channel():
    """With zero boundary, no global channel and T steps, a cell sees only cells within T hops:
    the read-in's influence travels one cell per step."""
    model = make(global_channel=False, steps=1, grid=(5, 1, 1), channels=1, neighbourhood=6).eval()
    perturb_cell_rule(model)
    s0 = torch.zeros(1, 1, 5, 1, 1)
    s0[0, 0, 0] = 1.0
    with torch.no_grad():
        base = model.run(torch.zeros_like(s0), steps=1)
        moved = model.run(s0, steps=1)
    changed = (moved - base).abs().flatten() > 1e-7
    assert changed[:2].all() and not changed[2:].any()


def test_periodic_boundary_wraps_around():
    model = make(global_channel=False, steps=1, grid=(5, 1, 1), channels=1, neighbourhood=6, boundary="periodic").eval()
    perturb_cell_rule(model)
    s0 = torch.zeros(1, 1, 5, 1, 1)
    s0[0, 0, 0] = 1.0
    with torch.no_grad():
        diff = (model.run(s0, steps=1) - model.run(torch.zeros_like(s0), steps=1)).abs().flatten()
    assert diff[4] > 1e-7 and diff[2] < 1e-7  # the far end is a neighbour; the middle is not


# Counted by hand from the architecture for SMALL (d_in 24, d_out 20, grid 3x4x5 = 60 cells, C 4, H 8):
#   read-in 24 -> 60*4 (+bias)               24*240 + 240 = 6000
#   perception, 3x3x3 conv C -> H (+bias)     27*4*8 + 8   =  872     6 faces: 3 convs of 3*4*8, one bias = 296
#   global mean C -> H (no bias)              4*8          =   32
#   cell output 1x1x1 conv H -> C (+bias)     8*4 + 4      =   36     gated: width 2H for perception and global
#   read-out 240 -> 20 (+bias)                240*20 + 20  = 4820
#   skip 24 -> 20 (+bias)                     24*20 + 20   =  500
@pytest.mark.parametrize("overrides, expected", [
    ({}, 12260),
    ({"neighbourhood": 6}, 12260 - 872 + 296),
    ({"cell": "gated"}, 12260 + 872 + 32),          # perception and global map to 2H = 16
    ({"global_channel": False, "skip": "none"}, 12260 - 32 - 500),
    ({"read_out": "face"}, 12260 - 4820 + (3 * 4 * 4 * 20 + 20)),
])
def test_parameter_count_matches_the_architecture(overrides, expected):
    assert make(**overrides).parameter_count() == expected


def test_flops_are_counted_from_the_architecture():
    # Multiply-adds per sample for SMALL: per step, 60 cells x (27*4*8 perception + 8*4 output) plus the
    # global map 4*8; three steps; then read-in 24*240, read-out 240*20 and skip 24*20.
    macs = 3 * (60 * (27 * 4 * 8 + 8 * 4) + 4 * 8) + 24 * 240 + 240 * 20 + 24 * 20
    assert make().flops_per_sample() == 2 * macs


def test_flops_grow_with_steps():
    assert make(steps=6).flops_per_sample() > make(steps=3).flops_per_sample()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda_with_autocast():
    model = make().cuda().train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = model(torch.randn(4, model.cfg.d_in, device="cuda"))
    y.float().sum().backward()
    assert model.cell_rule.fc_out.weight.grad is not None


@pytest.mark.parametrize("overrides", [{}, {"neighbourhood": 6}, {"perception": "fixed"}, {"cell": "gated"}])
def test_a_zero_boundary_padded_by_the_convolutions_equals_padding_with_zeros(overrides):
    from cube.lattice import pad_grid

    torch.manual_seed(0)
    model = CubeModel(CubeConfig(d_in=8, d_out=8, grid=(3, 4, 5), channels=4, hidden=6, **overrides))
    perceive = model.cell_rule.perceive
    s = torch.randn(2, 4, 3, 4, 5)
    padded = pad_grid(s, "zero")
    if perceive.kind == "fixed":
        expected = perceive.mix(torch.nn.functional.conv3d(padded, perceive.kernels, groups=4))
    elif perceive.neighbourhood == 26:
        expected = perceive.conv(padded)
    else:
        expected = (perceive.conv_x(padded[:, :, :, 1:-1, 1:-1]) + perceive.conv_y(padded[:, :, 1:-1, :, 1:-1])
                    + perceive.conv_z(padded[:, :, 1:-1, 1:-1, :]))
    torch.testing.assert_close(perceive(s), expected, atol=1e-5, rtol=1e-5)
