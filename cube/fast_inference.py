"""A faster eval-only forward pass of the cube on CPU, for serving; anything else runs as it is.

`accelerate(module)` gives a module that computes what `module` computes in eval mode: each
`CubeModel` in it is replaced by a `FastCube` built from a snapshot of its weights, and every other
module is left alone (a wrapper holding a cube, such as an `Autoencoder`, is shallow-copied with its
cube replaced, so the original is never modified). Training never goes through here.

What makes `FastCube` faster than `CubeModel.forward` on CPU (bench/RESULTS.md, "Cube inference on
CPU"), with the same arithmetic up to float32 rounding (the largest gain found here, a zero boundary
done by the convolution's own padding, now serves training too: `cube.lattice.Perception`):
  - the state is updated in place: the 1x1x1 convolution is a matmul added into the channels-last
    state (`addmm_`), the global term and the ReLU are applied in place, where eager writes a fresh
    buffer for each (an out-of-place ReLU on a fresh buffer profiled many times slower);
  - fire_rate is folded into the last layer of the cell rule;
  - read-in and skip run as oneDNN matmuls on weights packed once (about 20% faster than the MKL GEMM
    behind nn.Linear at 64 x 384 x 1536 on this AMD CPU). The read-out keeps nn.Linear: oneDNN's
    order of summation over its 1,536 inputs doubled the difference from eager.

A cube it cannot build, or one whose snapshot differs from the eager forward by more than `TOLERANCE`
(times the outputs' size where that is above 1) on random unit inputs at build time, stays eager: the
fast path can only ever be skipped, never wrong. It runs float32 on CPU only (nothing else was
measured).
"""
from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

from cube.lattice import CubeModel

log = logging.getLogger(__name__)

TOLERANCE = 1e-5   # max |fast - eager| at build time on CHECK_ROWS random unit inputs, for outputs up to 1
CHECK_ROWS = 8


class PackedLinear(nn.Module):
    """`linear`'s map through oneDNN with its weight reordered once into oneDNN's blocked layout (the
    op inductor uses for frozen linears on CPU); any batch size."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [None], "")


def packed(module: nn.Module | None) -> nn.Module | None:
    """A copy of `module` (a Linear, a Sequential of them, or None) with each Linear packed for oneDNN
    when this torch can, else a plain copy."""
    if module is None:
        return None
    if isinstance(module, nn.Linear):
        return PackedLinear(module) if torch.backends.mkldnn.is_available() else copy.deepcopy(module)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(packed(layer) for layer in module))
    raise TypeError(f"cannot pack {type(module).__name__}")


class FastCube(nn.Module):
    """The eval-mode forward pass of one `CubeModel`, from a snapshot of its weights (rebuild it after
    the weights change). forward(x) equals model.eval()(x) up to float32 rounding."""

    def __init__(self, model: CubeModel):
        super().__init__()
        cfg = model.cfg
        self.cfg = cfg
        rule = model.cell_rule
        self.read_in = packed(model.read_in)     # Linear, low-rank Sequential, or None
        self.read_out = copy.deepcopy(model.read_out)
        self.skip = packed(model.skip)
        self.gated = rule.gated
        self.fc_global = copy.deepcopy(rule.fc_global)
        self.perceive = copy.deepcopy(rule.perceive)
        # fc_out as a (hidden, C) matmul on channels-last rows, fire_rate folded in.
        self.out_weight = (rule.fc_out.weight.detach().flatten(1) * cfg.fire_rate).t().contiguous()
        self.out_bias = rule.fc_out.bias.detach() * cfg.fire_rate
        self.requires_grad_(False)
        self.eval()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Initial state as (B*X*Y*Z, C) rows, cells-major (the channels-last order of the cube)."""
        C = self.cfg.channels
        if self.read_in is not None:
            return self.read_in(x).view(-1, C)
        s = x.new_zeros(x.shape[0] * self.cfg.n_cells, C)
        s[:, 0] = x.reshape(-1)
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        B, (X, Y, Z), C = x.shape[0], cfg.grid, cfg.channels
        s0 = self.embed(x)
        s = s0.clone()  # updated in place; s0 is kept for the read-out of the change
        grid = s.view(B, X, Y, Z, C).permute(0, 4, 1, 2, 3)  # (B, C, X, Y, Z) view in channels_last_3d
        for _ in range(cfg.steps):
            h = self.perceive(grid)
            if self.fc_global is not None:
                h += self.fc_global(grid.mean(dim=(2, 3, 4)))[:, :, None, None, None]
            if self.gated:
                a, b = h.chunk(2, dim=1)
                h = a * torch.sigmoid(b)
            else:
                h.relu_()
            rows = h.permute(0, 2, 3, 4, 1).reshape(-1, h.shape[1])  # a view when h is channels-last
            s.addmm_(rows, self.out_weight).add_(self.out_bias)
        delta = s.sub_(s0).view(B, X, Y, Z, C)
        if cfg.read_out == "face":
            delta = delta[:, :, :, -1]  # the output face z = Z-1: (B, X, Y, C)
        y = self.read_out(delta.reshape(B, -1))
        if self.skip is not None:
            return y.add_(self.skip(x))
        if cfg.skip == "identity":
            return y.add_(x)
        return y


def check_difference(fast: nn.Module, model: CubeModel, rows: int = CHECK_ROWS) -> tuple[float, float]:
    """(largest |fast(x) - model.eval()(x)|, largest |model.eval()(x)|) over `rows` random unit vectors
    (a fixed seed)."""
    gen = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(rows, model.cfg.d_in, generator=gen), dim=1)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = model(x)
            return float((fast(x) - expected).abs().max()), float(expected.abs().max())
    finally:
        model.train(was_training)


def fast_cube(model: CubeModel) -> nn.Module:
    """A `FastCube` of `model`, or `model` itself where the fast path does not apply or fails its check."""
    p = next(model.parameters())
    if p.device.type != "cpu" or p.dtype != torch.float32:
        return model
    try:
        fast = FastCube(model)
        diff, scale = check_difference(fast, model)
    except Exception as exc:  # any failure to build or run means: serve the eager forward
        log.warning("cube fast path unavailable, serving the eager forward: %s: %s", type(exc).__name__, exc)
        return model
    # float32 rounding grows with the values: a cube whose outputs reach 300 differs from a float64
    # reference by about 2e-4 in eager itself, so the bound scales with outputs above 1.
    if not diff <= TOLERANCE * max(1.0, scale):
        log.warning("cube fast path differs from the eager forward by %.3g (outputs up to %.3g); serving the "
                    "eager forward", diff, scale)
        return model
    return fast


def accelerate(module: nn.Module) -> nn.Module:
    """`module` with every `CubeModel` in it replaced by its fast path (see `fast_cube`), for eval-mode
    serving; `module` itself when nothing changed. Wrappers are shallow copies: the original and its
    weights are left as they were."""
    if isinstance(module, CubeModel):
        return fast_cube(module)
    children = dict(module.named_children())
    replaced = {name: accelerate(child) for name, child in children.items()}
    if all(replaced[name] is child for name, child in children.items()):
        return module
    clone = copy.copy(module)
    clone._parameters, clone._buffers = dict(module._parameters), dict(module._buffers)
    clone._modules = {**module._modules, **replaced}
    return clone
