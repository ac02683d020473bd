"""Autoencoder mode: a vector through a bottleneck of `code_size` (k) numbers and back.

    x (B, d) --encode--> code (B, k) --decode--> reconstruction (B, d)

    encode(x) = encoder(x - mean)     encoder: any architecture built d -> k (for the cube: a grid
                                      whose read-out is k wide, beside its k-wide linear skip)
    decode(c) = W c + b + mean        one linear layer k -> d, the same for every architecture

Without the bottleneck x -> x is solved by the identity, so the mode means nothing; with it, the
question is which k numbers keep the most of x. The decoder is linear for every architecture, so a
comparison of linear, MLP, residual MLP and cube autoencoders isolates what each encoder adds; the
code is what the encoder reads out, exactly k numbers.

PCA at the same k is the linear optimum for squared error, so it is the baseline (`PCA`) and also
every trained autoencoder's start (`pca_start`): the encoder's linear path is set to the top-k
principal directions, the decoder to their transpose and `mean` to the training mean, and the
nonlinear parts start at zero (the cube's cell rule, the MLPs' output layers), so each model starts
as PCA exactly and training (InfoNCE on retrieving x) moves on from there. Every trained method gets
this same start.

The artifact's config holds `code_size` beside d_in = d_out = d and the encoder's own options;
`cube.models.build_model` builds an `Autoencoder` whenever the config has `code_size`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cube.config import ConfigError, check_code_size
from cube.pairs import PairData

CODE_SIZE = "code_size"


def reconstruction_pairs(data: PairData) -> PairData:
    """Pairs whose target is their input: an autoencoder uses the input side of any pair file."""
    return PairData(data.input, data.input.copy(), data.groups, data.difficulty, data.question, data.source)


class Autoencoder(nn.Module):
    """encode: d -> k through `encoder` (centred input); decode: k -> d, linear."""

    def __init__(self, encoder: nn.Module, d: int, k: int):
        super().__init__()
        self.d, self.code_size = d, k
        self.register_buffer("mean", torch.zeros(d))  # the training mean (set by pca_start; saved with the weights)
        self.encoder = encoder
        self.decoder = nn.Linear(k, d)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x - self.mean)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code) + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def penalty(self) -> torch.Tensor | None:
        """The encoder's regularisation term (the cube's state penalty), for the trainer."""
        inner = getattr(self.encoder, "penalty", None)
        return inner() if inner is not None else None

    def param_groups(self, weight_decay: float) -> list[dict]:
        """The encoder's own groups (the cube's io_weight_decay), the decoder with the rest."""
        if not hasattr(self.encoder, "param_groups"):
            return [{"params": list(self.parameters()), "weight_decay": weight_decay}]
        groups = self.encoder.param_groups(weight_decay)
        groups[0] = {**groups[0], "params": list(groups[0]["params"]) + list(self.decoder.parameters())}
        return groups

    def flops_per_sample(self) -> int:
        from cube.models import flops_per_sample

        return flops_per_sample(self.encoder) + 2 * self.code_size * self.d

    def encoder_linear_path(self) -> nn.Linear:
        """The encoder's linear d -> k map (the skip or projection its nonlinear part is added to)."""
        from cube.models import linear_path

        path = linear_path(self.encoder)
        if path is None:  # a cube with skip "none" has no linear path to start from
            raise ConfigError("an autoencoder's cube needs skip 'linear' (its linear path starts as PCA)")
        return path

    @torch.no_grad()
    def pca_start(self, mean: np.ndarray, components: np.ndarray) -> "Autoencoder":
        """Start as PCA: `components` (k, d) are the top-k principal directions (rows, orthonormal)."""
        c = torch.as_tensor(components, dtype=torch.float32)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        path = self.encoder_linear_path()
        path.weight.copy_(c)
        if path.bias is not None:
            path.bias.zero_()
        self.decoder.weight.copy_(c.T)
        self.decoder.bias.zero_()
        return self


def build_autoencoder(arch: str, config: dict[str, Any]) -> Autoencoder:
    """config: d_in, d_out (both d), code_size (k) and the encoder's own options."""
    from cube.models import build_model

    options = dict(config)
    k = options.pop(CODE_SIZE)
    try:
        d, d_out = int(options.pop("d_in")), int(options.pop("d_out"))
    except KeyError as exc:
        raise ConfigError(f"autoencoder model config needs {exc.args[0]}") from None
    if d != d_out:
        raise ConfigError(f"an autoencoder reconstructs its input: d_in and d_out must agree, got {d} and {d_out}")
    check_code_size("autoencoder", k, d)
    return Autoencoder(build_model(arch, {"d_in": d, "d_out": k, **options}), d, k)


class PCA:
    """Closed-form baseline: centre, project on the top-k principal directions of the training
    inputs, reconstruct. The linear autoencoder with the least squared error at code size k."""

    name = "pca"

    def __init__(self, k: int):
        self.k = k
        self.chosen: dict[str, Any] = {}

    def fit(self, train: tuple[np.ndarray, np.ndarray], val: Any = None) -> "PCA":
        x = train[0].astype(np.float64)
        if not 0 < self.k < x.shape[1]:
            raise ValueError(f"pca needs 0 < k < {x.shape[1]}, got {self.k}")
        self.mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.components = vt[: self.k]  # (k, d), orthonormal rows
        variance = s**2
        self.chosen = {"k": self.k, "explained_variance": float(variance[: self.k].sum() / variance.sum())}
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) @ self.components.T).astype(np.float32)

    def decode(self, code: np.ndarray) -> np.ndarray:
        return (np.asarray(code, np.float64) @ self.components + self.mean).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(x))


def pca_started(train_inputs: np.ndarray, k: int) -> Callable[[str, dict[str, Any]], nn.Module]:
    """build(arch, config) for autoencoders that all start as the PCA of `train_inputs` (fitted once)."""
    from cube.models import build_model

    pca = PCA(k).fit((train_inputs, train_inputs))

    def build(arch: str, config: dict[str, Any]) -> nn.Module:
        return build_model(arch, config).pca_start(pca.mean, pca.components)

    return build


def matched_mlp_hidden(d: int, k: int, n_params: int) -> int:
    """The hidden width of an MLP encoder d -> k whose autoencoder has about n_params parameters."""
    from cube.models import mlp_hidden_for_params

    return mlp_hidden_for_params(d, k, n_params - (k * d + d))


class Half(nn.Module):
    """An autoencoder's `encode` or `decode` as a module of its own, to serve (cube.trainer.predict)
    or export one side; it shares the autoencoder's weights."""

    def __init__(self, model: Autoencoder, side: str):
        super().__init__()
        if side not in ("encode", "decode"):
            raise ValueError(f"side must be 'encode' or 'decode', got {side!r}")
        self.model, self.side = model, side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x) if self.side == "encode" else self.model.decode(x)
