"""Training losses for embedding -> embedding maps. All take predictions and targets (B, D)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity between each prediction and its target."""
    return 1.0 - F.cosine_similarity(pred, target, dim=-1).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def info_nce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE with in-batch negatives: each prediction must pick its own target among the batch's
    targets (cross-entropy over cosine similarities / temperature). The loss for retrieval."""
    logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T / temperature  # (B, B)
    labels = torch.arange(pred.shape[0], device=pred.device)
    return F.cross_entropy(logits.float(), labels)


def make_loss(name: str, temperature: float = 0.05):
    """The loss function a TrainConfig names."""
    if name == "infonce":
        return lambda p, t: info_nce_loss(p, t, temperature)
    if name == "cosine":
        return cosine_loss
    if name == "mse":
        return mse_loss
    raise ValueError(f"unknown loss {name!r}; known: infonce, cosine, mse")
