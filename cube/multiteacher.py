"""Multi-teacher distillation: one model, one read-out head per teacher space.

The targets of every teacher sit side by side in one matrix, [N, d_1 + d_2 + ...], and the model
maps the input to all of them at once: for the cube, a read-out (and a skip) of width d_1 + d_2 + ...
whose rows split into one head per space. Rows of a linear layer are independent, so this is exactly
one read-out head per teacher on a shared grid. Each head's loss and metrics are computed in its own
space only: vectors of unaligned spaces are never averaged or compared.

Head weights in the loss are fixed (given, default equal) or adaptive: after every epoch each head's
validation loss is compared with its value `window` epochs before (dynamic weight averaging, Liu et
al. 2019, on the validation split instead of training): a head whose loss falls more slowly gets more
weight, w_h = H * softmax(r_h / T) with r_h = L_h(now) / L_h(now - window). The weights used in each
epoch are logged in its history (`val_weight_<head>`). A resumed run restarts the window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from cube.config import ConfigError
from cube.losses import Loss, make_loss
from cube.metrics import retrieval_metrics
from cube.pairs import PairData

HEAD_METRICS = ("recall_at_1", "recall_at_10", "mrr")


@dataclass(frozen=True)
class Head:
    name: str       # the teacher whose space this head predicts
    dim: int
    start: int      # first column of the head in the side-by-side targets

    @property
    def columns(self) -> slice:
        return slice(self.start, self.start + self.dim)


def make_heads(spaces: list[tuple[str, int]]) -> list[Head]:
    """Heads for (teacher name, dim) in order; names must be distinct."""
    names = [name for name, _ in spaces]
    if len(spaces) < 2:
        raise ConfigError(f"multi-teacher distillation needs at least two target teachers, got {names}")
    if len(set(names)) != len(names):
        raise ConfigError(f"target teachers must be distinct, got {names}")
    heads, start = [], 0
    for name, dim in spaces:
        heads.append(Head(name, int(dim), start))
        start += int(dim)
    return heads


def head_named(heads: list[Head], name: str) -> Head:
    """The head for `name`, or ConfigError listing the heads there are."""
    for head in heads:
        if head.name == name:
            return head
    raise ConfigError(f"no head {name!r}; this model has {', '.join(h.name for h in heads)}")


class HeadWeighting:
    """The multi-head loss and the validation metrics of one training run, sharing the head weights.

    `loss(pred, target, negatives)` is sum_h w_h * base(pred_h, target_h, negatives_h) / sum_h w_h.
    `metrics(pred, target)` scores every head in its own space (keys `<head>_mrr`, ...), their mean
    (`mrr`, ...: what early stopping monitors) and, when adaptive, moves the weights for the next epoch.
    A run needs a fresh one: it keeps the validation history of its weights."""

    def __init__(self, heads: list[Head], base: Loss, *, mode: Literal["fixed", "adaptive"] = "fixed",
                 weights: list[float] | None = None, window: int = 1, temperature: float = 2.0):
        if mode not in ("fixed", "adaptive"):
            raise ConfigError(f"head weighting must be 'fixed' or 'adaptive', got {mode!r}")
        if weights is not None and (len(weights) != len(heads) or any(not w > 0 for w in weights)):
            raise ConfigError(f"head weights must be {len(heads)} positive numbers, got {weights!r}")
        self.heads, self.base, self.mode = heads, base, mode
        self.window, self.temperature = window, temperature
        self.weights = torch.tensor(weights if weights is not None else [1.0] * len(heads), dtype=torch.float64)
        self.val_losses: list[list[float]] = []

    def loss(self, pred: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        total = pred.new_zeros((), dtype=torch.float32)
        for head, w in zip(self.heads, self.weights.tolist()):
            cols = head.columns
            neg = None if negatives is None else negatives[..., cols]
            total = total + w * self.base(pred[:, cols], target[:, cols], neg)
        return total / float(self.weights.sum())

    def metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        losses = []
        for head, w in zip(self.heads, self.weights.tolist()):
            cols = head.columns
            for key, value in retrieval_metrics(pred[:, cols], target[:, cols]).items():
                out[f"{head.name}_{key}"] = value
            losses.append(float(self.base(torch.as_tensor(pred[:, cols]), torch.as_tensor(target[:, cols]))))
            out[f"{head.name}_loss"] = losses[-1]
            out[f"weight_{head.name}"] = w  # the weight this epoch trained with
        for key in HEAD_METRICS:
            out[key] = float(np.mean([out[f"{h.name}_{key}"] for h in self.heads]))
        self.val_losses.append(losses)
        if self.mode == "adaptive" and len(self.val_losses) > self.window:
            now, before = np.array(self.val_losses[-1]), np.array(self.val_losses[-1 - self.window])
            ratio = torch.as_tensor(now / np.maximum(before, 1e-12))
            self.weights = len(self.heads) * torch.softmax(ratio / self.temperature, dim=0)
        return out


def weighting_for(heads: list[Head], train_cfg) -> HeadWeighting:
    """A fresh HeadWeighting as the training config sets it, on the loss it names."""
    if train_cfg.head_weights and len(train_cfg.head_weights) != len(heads):
        raise ConfigError(f"head_weights has {len(train_cfg.head_weights)} weight(s) but there are {len(heads)} target "
                          f"teachers ({', '.join(h.name for h in heads)})")
    return HeadWeighting(heads, make_loss(train_cfg.loss, train_cfg.temperature, train_cfg.triplet_margin),
                         mode=train_cfg.head_weighting, weights=list(train_cfg.head_weights) or None)


def head_columns(heads: list[Head]) -> dict[str, Any]:
    """What an artifact stores to serve one head: name -> [start, stop)."""
    return {h.name: [h.start, h.start + h.dim] for h in heads}


def encode_multi_teacher(text_pairs, input_teacher, target_teachers: list, cache_dir, *, batch_size: int = 64,
                         progress=None) -> tuple[PairData, list[Head]]:
    """Text pairs -> inputs in `input_teacher`'s space and, side by side, the targets in every target
    teacher's space (one head each), through the embedding cache. Groups as `cube.encoding` gives them."""
    from cube.encoding import EmbeddingCache, encode_texts, input_groups
    from cube.pairs import validate_pairs

    heads = make_heads([(t.name, t.dim) for t in target_teachers])
    cache = EmbeddingCache(cache_dir)
    try:
        x = encode_texts(list(text_pairs.inputs), input_teacher, cache, batch_size=batch_size, progress=progress)
        y = np.concatenate([encode_texts(list(text_pairs.targets), t, cache, batch_size=batch_size, progress=progress)
                            for t in target_teachers], axis=1)
    finally:
        cache.close()
    groups = (np.array(text_pairs.groups, dtype=str) if text_pairs.groups is not None
              else input_groups(text_pairs.inputs))
    question = None if text_pairs.question is None else np.array(text_pairs.question, dtype=bool)
    return validate_pairs(x, y, groups=groups, question=question), heads


def space_columns(metadata: dict[str, Any], name: str | None) -> slice | None:
    """The output columns a caller asks for with `target_space` from an artifact's metadata: a model
    with heads serves one head (its first, the default space, unless named); a model without heads
    serves all its columns and takes no `target_space`."""
    heads = metadata.get("heads")
    if not heads:
        if name is not None:
            raise ConfigError(f"target_space {name!r}: this model has one output space; leave target_space out")
        return None
    chosen = name if name is not None else next(iter(heads))
    if chosen not in heads:
        raise ConfigError(f"target_space {chosen!r} is not one of this model's heads: {', '.join(heads)}")
    start, stop = heads[chosen]
    return slice(start, stop)


class HeadView(nn.Module):
    """One head of a multi-head model as a model of its own: the columns of that teacher's space."""

    def __init__(self, model: nn.Module, columns: slice):
        super().__init__()
        self.model, self.columns = model, columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.columns]


def served(model: nn.Module, metadata: dict[str, Any], target_space: str | None = None) -> nn.Module:
    """The model as a caller gets it: a multi-head model's head `target_space` (default: its first),
    else the model itself (see `space_columns` for the names it takes)."""
    columns = space_columns(metadata, target_space)
    return model if columns is None else HeadView(model, columns)
