"""The cube: a neural cellular automaton on a 3D grid of cells, as one batched tensor program.

    x (B, D_in) --read-in--> s0 (B, C, X, Y, Z)
        T times:  h  = perceive(s) + W_g mean(s)   a 3x3x3 (26 neighbours) or cross-shaped
                                                    (6 faces) convolution: every cell sees its
                                                    neighbourhood through the same kernel
                  ds = cell_out(act(h))             1x1x1 convolution: the same MLP in every cell
                  s  = s + mask * ds                mask: per-cell Bernoulli(fire_rate) in training
    y = skip(x) + read_out(s_T - s0)

The read-out sees only what the automaton changed, so with T = 0 (or a zeroed cell rule) the model
is exactly its skip path, and everything the cube adds beyond a linear map comes from the cells.

Why convolutions: the learned perception followed by the first layer of the cell network is
exactly a 3D convolution from C to `hidden` channels, which oneDNN/cuDNN run at a large fraction of
matmul speed (see bench/RESULTS.md); a gathered-neighbourhood matmul spent most of its time copying.
The state lives in channels_last_3d memory, so read-in and read-out are views, not copies. No Python
loop runs over cells or samples: only over the T steps, which are sequential by definition.

Training-only regularisers (docs/learning.md), all off by default: dropout on the initial states and
on the read-out's input, a random step count per batch (`steps_jitter`), and a penalty on states
outside [-1, 1] that the trainer collects through `penalty()`. A low-rank read-in (`read_in="lowrank"`)
shrinks the largest block of parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cube.config import CubeConfig

CHANNELS_LAST = torch.channels_last_3d


def pad_grid(s: torch.Tensor, boundary: str) -> torch.Tensor:
    """Pad the grid dims of a (B, C, X, Y, Z) state by one cell: zeros, or the opposite face."""
    return F.pad(s, (1, 1, 1, 1, 1, 1), mode="constant" if boundary == "zero" else "circular")


def fixed_kernels(channels: int) -> torch.Tensor:
    """The classic NCA perception as a depthwise bank: identity, d/dx, d/dy, d/dz, Laplacian (6-point)
    for each channel; shape (5*C, 1, 3, 3, 3) for a grouped conv3d."""
    k = torch.zeros(5, 3, 3, 3)
    k[0, 1, 1, 1] = 1.0
    for axis in range(3):
        lo, hi = [1, 1, 1], [1, 1, 1]
        lo[axis], hi[axis] = 0, 2
        k[1 + axis][tuple(lo)], k[1 + axis][tuple(hi)] = -0.5, 0.5
        k[4][tuple(lo)] += 1.0 / 6
        k[4][tuple(hi)] += 1.0 / 6
    k[4, 1, 1, 1] = -1.0
    return k.repeat(channels, 1, 1, 1).unsqueeze(1)


class Perception(nn.Module):
    """What each cell sees of its neighbourhood, mapped to the cell network's hidden layer.

    learned, 26: one 3x3x3 convolution C -> width.
    learned, 6:  three 1D convolutions (along x, y and z) summed: the cross-shaped 7-cell stencil.
    fixed:       the depthwise NCA filter bank (identity, gradients, Laplacian), then a 1x1x1 conv.
    """

    def __init__(self, cfg: CubeConfig, width: int):
        super().__init__()
        C = cfg.channels
        self.boundary = cfg.boundary
        self.kind = cfg.perception
        self.neighbourhood = cfg.neighbourhood
        if self.kind == "fixed":
            self.register_buffer("kernels", fixed_kernels(C))
            self.mix = nn.Conv3d(5 * C, width, 1)
        elif self.neighbourhood == 26:
            self.conv = nn.Conv3d(C, width, 3)
        else:
            self.conv_x = nn.Conv3d(C, width, (3, 1, 1))
            self.conv_y = nn.Conv3d(C, width, (1, 3, 1), bias=False)
            self.conv_z = nn.Conv3d(C, width, (1, 1, 3), bias=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self.boundary == "zero":
            return self.zero_boundary(s)
        padded = pad_grid(s, self.boundary)  # (B, C, X+2, Y+2, Z+2)
        if self.kind == "fixed":
            return self.mix(F.conv3d(padded, self.kernels, groups=s.shape[1]))
        if self.neighbourhood == 26:
            return self.conv(padded)
        return (
            self.conv_x(padded[:, :, :, 1:-1, 1:-1])
            + self.conv_y(padded[:, :, 1:-1, :, 1:-1])
            + self.conv_z(padded[:, :, 1:-1, 1:-1, :])
        )

    def zero_boundary(self, s: torch.Tensor) -> torch.Tensor:
        """The same with zeros beyond the faces, padded by the convolutions themselves: no padded copy,
        and oneDNN skips the taps that fall outside (38% of them on a 4x4x6 grid), about twice as fast."""
        if self.kind == "fixed":
            return self.mix(F.conv3d(s, self.kernels, padding=1, groups=s.shape[1]))
        if self.neighbourhood == 26:
            return F.conv3d(s, self.conv.weight, self.conv.bias, padding=1)
        return (
            F.conv3d(s, self.conv_x.weight, self.conv_x.bias, padding=(1, 0, 0))
            + F.conv3d(s, self.conv_y.weight, padding=(0, 1, 0))
            + F.conv3d(s, self.conv_z.weight, padding=(0, 0, 1))
        )

    def macs_per_cell(self, C: int, width: int) -> int:
        if self.kind == "fixed":
            return 27 * 5 * C + 5 * C * width
        return (27 if self.neighbourhood == 26 else 9) * C * width


class CellRule(nn.Module):
    """The one small network every cell runs: perceived neighbourhood (+ global mean) -> state update."""

    def __init__(self, cfg: CubeConfig):
        super().__init__()
        C, H = cfg.channels, cfg.hidden
        self.gated = cfg.cell == "gated"
        self.width = 2 * H if self.gated else H
        self.perceive = Perception(cfg, self.width)
        self.fc_global = nn.Linear(C, self.width, bias=False) if cfg.global_channel else None
        self.fc_out = nn.Conv3d(H, C, 1)
        # Zero-initialised last layer: the automaton starts as "do nothing" (NCA stabiliser).
        nn.init.zeros_(self.fc_out.weight)
        nn.init.zeros_(self.fc_out.bias)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        h = self.perceive(s)  # (B, width, X, Y, Z)
        if self.fc_global is not None:
            # The mean over all cells reaches every cell at once: far corners interact in one step.
            h = h + self.fc_global(s.mean(dim=(2, 3, 4)))[:, :, None, None, None]
        if self.gated:
            a, b = h.chunk(2, dim=1)
            h = a * torch.sigmoid(b)
        else:
            h = F.relu(h)
        return self.fc_out(h)  # (B, C, X, Y, Z)


class CubeModel(nn.Module):
    """Embedding -> grid of cells -> T steps of one shared cell rule -> embedding."""

    def __init__(self, cfg: CubeConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        X, Y, Z = cfg.grid
        C = cfg.channels
        if cfg.read_in == "linear":
            self.read_in = nn.Linear(cfg.d_in, X * Y * Z * C)
            # Teacher embeddings are unit-norm, so unit-variance weights give O(1) cell states.
            nn.init.normal_(self.read_in.weight, std=1.0)
            nn.init.zeros_(self.read_in.bias)
        elif cfg.read_in == "lowrank":
            # D_in -> r -> cells: far fewer parameters than the full map (where most of them sit).
            # Scaled so the cell states start O(1) like the full read-in's.
            r = cfg.read_in_rank
            self.read_in = nn.Sequential(nn.Linear(cfg.d_in, r, bias=False), nn.Linear(r, X * Y * Z * C))
            nn.init.normal_(self.read_in[0].weight, std=1.0)
            nn.init.normal_(self.read_in[1].weight, std=1.0 / r**0.5)
            nn.init.zeros_(self.read_in[1].bias)
        else:
            self.read_in = None
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else None
        self._penalty: torch.Tensor | None = None
        self.cell_rule = CellRule(cfg)
        n_read = X * Y * C if cfg.read_out == "face" else X * Y * Z * C
        self.read_out = nn.Linear(n_read, cfg.d_out)
        nn.init.normal_(self.read_out.weight, std=1.0 / n_read**0.5)
        nn.init.zeros_(self.read_out.bias)
        if cfg.skip == "linear":
            self.skip = nn.Linear(cfg.d_in, cfg.d_out)
            if cfg.d_in == cfg.d_out:  # start from identity: the natural baseline for same-space maps
                with torch.no_grad():
                    self.skip.weight.copy_(torch.eye(cfg.d_in))
                    self.skip.bias.zero_()
        else:
            self.skip = None

    # -- the forward pass -------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Read-in: (B, D_in) -> initial state (B, C, X, Y, Z) in channels_last_3d memory."""
        B, (X, Y, Z), C = x.shape[0], self.cfg.grid, self.cfg.channels
        if self.read_in is not None:
            return self.read_in(x).view(B, X, Y, Z, C).permute(0, 4, 1, 2, 3)  # a view, no copy
        s = x.new_zeros(B, X, Y, Z, C)
        s[..., 0] = x.view(B, X, Y, Z)  # plain reshape into channel 0
        return s.permute(0, 4, 1, 2, 3)

    def step(self, s: torch.Tensor) -> torch.Tensor:
        """One synchronous update of every cell of every sample: (B, C, X, Y, Z) -> same."""
        ds = self.cell_rule(s)
        if self.training and self.cfg.fire_rate < 1.0:
            B, _, X, Y, Z = s.shape
            mask = torch.rand(B, 1, X, Y, Z, device=s.device) < self.cfg.fire_rate  # per cell
            return s + ds * mask.to(ds.dtype)
        # Inference is deterministic: the expected update of the stochastic rule.
        return s + ds * self.cfg.fire_rate

    def run(self, s0: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        s = s0
        steps = self.cfg.steps if steps is None else steps
        track = self.training and self.cfg.state_penalty > 0
        overflow = s0.new_zeros(())
        for _ in range(steps):
            s = self.step(s)
            if track:  # NCA stabiliser: states should stay in [-1, 1]
                overflow = overflow + F.relu(s.abs() - 1.0).pow(2).mean()
        self._penalty = self.cfg.state_penalty * overflow / max(1, steps) if track else None
        return s

    def penalty(self) -> torch.Tensor | None:
        """The regularisation term of the last training forward pass (the state penalty), or None.
        The trainer adds it to the loss."""
        return self._penalty

    def training_steps(self) -> int:
        """Steps for one training batch: `steps`, or with `steps_jitter` a uniform draw from
        steps +- steps_jitter (from torch's global generator, so a seeded run repeats it)."""
        j = self.cfg.steps_jitter
        if not (self.training and j):
            return self.cfg.steps
        return self.cfg.steps + int(torch.randint(-j, j + 1, (1,)))

    def skip_path(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip is not None:
            return self.skip(x)
        if self.cfg.skip == "identity":
            return x
        return x.new_zeros(x.shape[0], self.cfg.d_out)

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        s0 = self.embed(x)
        if self.dropout is not None:
            s0 = self.dropout(s0)
        delta = self.run(s0, self.training_steps() if steps is None else steps) - s0  # what the automaton changed
        if self.cfg.read_out == "face":
            delta = delta[..., -1]  # the output face z = Z-1: (B, C, X, Y)
        flat = delta.movedim(1, -1).reshape(x.shape[0], -1)  # cells-major, channels last
        if self.dropout is not None:
            flat = self.dropout(flat)
        return self.skip_path(x) + self.read_out(flat)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups: read-in and read-out get `io_weight_decay` when it is set."""
        if self.cfg.io_weight_decay is None:
            return [{"params": list(self.parameters()), "weight_decay": weight_decay}]
        io = [p for m in (self.read_in, self.read_out) if m is not None for p in m.parameters()]
        io_ids = {id(p) for p in io}
        rest = [p for p in self.parameters() if id(p) not in io_ids]
        return [{"params": rest, "weight_decay": weight_decay}, {"params": io, "weight_decay": self.cfg.io_weight_decay}]

    # -- reporting ---------------------------------------------------------------------------
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_sample(self) -> int:
        """2 x multiply-adds of one forward pass for one sample (convolutions and linear maps)."""
        cfg = self.cfg
        N, C, width = cfg.n_cells, cfg.channels, self.cell_rule.width
        per_cell = self.cell_rule.perceive.macs_per_cell(C, width) + cfg.hidden * C
        macs = cfg.steps * (N * per_cell + (C * width if cfg.global_channel else 0))
        if cfg.read_in == "linear":
            macs += cfg.d_in * N * C
        elif cfg.read_in == "lowrank":
            macs += cfg.read_in_rank * (cfg.d_in + N * C)
        macs += self.read_out.in_features * cfg.d_out
        if self.skip is not None:
            macs += cfg.d_in * cfg.d_out
        return 2 * macs
