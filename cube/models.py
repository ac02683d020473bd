"""The trainable architectures a job may ask for: the cube, and the linear, MLP and residual MLP
maps it is compared with. `build_model` rebuilds any of them from (arch, config dict), which is what an
artifact stores."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cube.config import ConfigError, CubeConfig
from cube.lattice import CubeModel

ARCHITECTURES = ("cube", "linear", "mlp", "resmlp")


class LinearMap(nn.Module):
    """y = W x + b, starting from the identity when the spaces have the same size."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        if d_in == d_out:
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(d_in))
                self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MLPMap(nn.Module):
    """y = skip(x) + W2 gelu(W1 norm(x)): one hidden layer beside a linear skip (the cube's shape
    without the grid), so a comparison isolates what the automaton adds.

    `input_norm` standardises each input (LayerNorm without parameters) before the hidden layer: unit-norm
    embeddings have components of about 1/sqrt(D), so under the default init the hidden layer would
    start in GELU's near-linear range and, at small learning rates, never leave it. Artifacts written
    before the option existed have no `input_norm` in their config and load without it."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 1024, input_norm: bool = False):
        super().__init__()
        self.skip = LinearMap(d_in, d_out)
        self.norm = nn.LayerNorm(d_in, elementwise_affine=False) if input_norm else nn.Identity()
        self.hidden = nn.Linear(d_in, hidden)
        self.out = nn.Linear(hidden, d_out)
        nn.init.zeros_(self.out.weight)  # starts as its skip path, like the cube
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.out(torch.nn.functional.gelu(self.hidden(self.norm(x))))


class ResidualMLP(nn.Module):
    """The Drift-Adapter residual MLP: y = P x + W2 gelu(W1 LayerNorm(x)), P the identity when the
    spaces have the same size (no parameters) and a learned projection otherwise, or always with
    `project` (a translation starts P at its Procrustes map). W2 starts at zero, so the map starts as P."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 1024, project: bool = False):
        super().__init__()
        self.project = nn.Identity() if d_in == d_out and not project else nn.Linear(d_in, d_out, bias=False)
        self.norm = nn.LayerNorm(d_in)
        self.hidden = nn.Linear(d_in, hidden)
        self.out = nn.Linear(hidden, d_out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x) + self.out(torch.nn.functional.gelu(self.hidden(self.norm(x))))


def mlp_hidden_for_params(d_in: int, d_out: int, n_params: int) -> int:
    """The MLPMap hidden width whose parameter count is closest to n_params."""
    skip = d_in * d_out + d_out
    return max(1, round((n_params - skip - d_out) / (d_in + d_out + 1)))


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    """arch in ARCHITECTURES; config holds d_in, d_out and the architecture's own fields. With
    `code_size` it is an autoencoder whose encoder is `arch` (cube.autoencoder)."""
    if "code_size" in config:
        from cube.autoencoder import build_autoencoder

        return build_autoencoder(arch, config)
    if arch == "cube":
        return CubeModel(CubeConfig.from_dict(config))
    cfg = dict(config)
    try:
        d_in, d_out = int(cfg.pop("d_in")), int(cfg.pop("d_out"))
    except KeyError as exc:
        raise ConfigError(f"{arch} model config needs {exc.args[0]}") from None
    if arch == "linear":
        if cfg:
            raise ConfigError(f"linear model takes no options, got {', '.join(sorted(cfg))}")
        return LinearMap(d_in, d_out)
    if arch in ("mlp", "resmlp"):
        options = {"hidden", "input_norm"} if arch == "mlp" else {"hidden", "project"}
        unknown = set(cfg) - options
        if unknown:
            raise ConfigError(f"{arch} model: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(options))}")
        hidden = cfg.get("hidden", 1024)
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ConfigError(f"{arch} hidden must be a positive integer, got {hidden!r}")
        if arch == "resmlp":
            project = cfg.get("project", False)
            if not isinstance(project, bool):
                raise ConfigError(f"resmlp project must be true or false, got {project!r}")
            return ResidualMLP(d_in, d_out, hidden, project)
        input_norm = cfg.get("input_norm", False)
        if not isinstance(input_norm, bool):
            raise ConfigError(f"mlp input_norm must be true or false, got {input_norm!r}")
        return MLPMap(d_in, d_out, hidden, input_norm)
    raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def check_model_config(arch: str, config: dict[str, Any], *, max_parameters: int | None = None,
                       max_state_values: int | None = None, max_activation_bytes: int | None = None,
                       batch_size: int = 1) -> int:
    """Raise ConfigError if build_model would, or if the model is larger than the limits; return its
    parameter count. Allocates nothing (built on the meta device)."""
    with torch.device("meta"):
        model = build_model(arch, config)
    n = parameter_count(model)
    from cube.autoencoder import Autoencoder

    grid = model.encoder if isinstance(model, Autoencoder) else model  # an autoencoder's cube is its encoder
    if max_parameters is not None and n > max_parameters:
        raise ConfigError(f"the model would have {n:,} parameters; the limit is {max_parameters:,}")
    if max_state_values is not None and isinstance(grid, CubeModel):
        values = grid.cfg.n_cells * grid.cfg.channels
        if values > max_state_values:
            raise ConfigError(f"the grid holds {values:,} values per sample (cells x channels); "
                              f"the limit is {max_state_values:,}")
    if max_activation_bytes is not None:
        needed = training_activation_bytes(grid, batch_size)
        if needed > max_activation_bytes:
            raise ConfigError(f"training would keep about {needed / 2**30:,.1f} GiB of activations per batch "
                              f"(steps x cells x (channels + hidden) x batch {batch_size} x 4 bytes); "
                              f"the limit is {max_activation_bytes / 2**30:,.1f} GiB: use fewer steps, cells, "
                              f"hidden units or a smaller batch")
    return n


def training_activation_bytes(model: nn.Module, batch_size: int) -> int:
    """A floor on what backpropagation keeps for one batch (float32): at every step, each cell's state
    and hidden layer; the plain maps keep their hidden layer. The real figure is higher (padding,
    masks, gates), so a model refused by this estimate could never train."""
    if isinstance(model, CubeModel):
        cfg = model.cfg
        return 4 * batch_size * cfg.steps * cfg.n_cells * (cfg.channels + cfg.hidden)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return 4 * batch_size * sum(widths)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module) -> int:
    """Forward FLOPs (2 x multiply-adds) per sample; linear layers only for the plain maps."""
    if hasattr(model, "flops_per_sample"):  # the cube, an autoencoder
        return model.flops_per_sample()
    return 2 * sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def linear_path(model: nn.Module) -> nn.Linear | None:
    """The learned linear map from input to output inside a model (the cube's skip, the linear map,
    the MLP's skip, the residual MLP's projection), or None when it has none (an identity or no skip)."""
    path = {CubeModel: lambda m: m.skip, LinearMap: lambda m: m.linear, MLPMap: lambda m: m.skip.linear,
            ResidualMLP: lambda m: m.project}.get(type(model), lambda m: None)(model)
    return path if isinstance(path, nn.Linear) else None
