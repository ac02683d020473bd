"""Training losses for embedding -> embedding maps. All take predictions and targets (B, D); the
retrieval losses also take optional extra negatives (B, k, D): real targets of other pairs, e.g.
mined hard ones (see cube/negatives.py)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES = ("infonce", "triplet", "cosine", "mse")

# pred, target, negatives (B, k, D) or None -> scalar
Loss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def cosine_loss(pred: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """1 - mean cosine similarity between each prediction and its target (negatives unused)."""
    return 1.0 - F.cosine_similarity(pred, target, dim=-1).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
    return F.mse_loss(pred, target)


def _negative_cosines(anchor: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Cosine of each unit anchor (B, D) with each of its own negatives (B, k, D) -> (B, k)."""
    return torch.einsum("bd,bkd->bk", anchor, F.normalize(negatives, dim=-1))


def info_nce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float = 0.05,
                  negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE: each prediction must pick its own target among the batch's targets plus its own
    extra negatives (cross-entropy over cosine similarities / temperature). The loss for retrieval."""
    anchor = F.normalize(pred, dim=-1)
    logits = anchor @ F.normalize(target, dim=-1).T  # (B, B): the in-batch negatives
    if negatives is not None:
        logits = torch.cat([logits, _negative_cosines(anchor, negatives)], dim=1)  # (B, B + k)
    labels = torch.arange(pred.shape[0], device=pred.device)
    return F.cross_entropy(logits.float() / temperature, labels)


def triplet_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.2,
                 negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over (anchor, negative) of max(0, margin - cos(anchor, positive) + cos(anchor, negative)).

    The anchor is the prediction and the positive its true target; the negatives are every other
    target of the batch (random targets of other pairs, as batches are shuffled) plus the given
    extra ones (B, k, D), e.g. mined. The in-batch ones stay even with mined negatives: with the
    mined ones alone, the cube collapsed on synthetic data (every prediction in one direction; likely
    away from the few targets that are many pairs' nearest, which satisfies all the margins)."""
    anchor = F.normalize(pred, dim=-1).float()
    positive = F.normalize(target, dim=-1).float()
    pos = (anchor * positive).sum(dim=-1, keepdim=True)  # (B, 1)
    B = pred.shape[0]
    hinge = F.relu(margin - pos + anchor @ positive.T)  # (B, B); the diagonal is the pair itself
    off_diagonal = ~torch.eye(B, dtype=torch.bool, device=pred.device)
    total, count = (hinge * off_diagonal).sum(), B * (B - 1)
    if negatives is not None:
        extra = F.relu(margin - pos + _negative_cosines(anchor, negatives.float()))  # (B, k)
        total, count = total + extra.sum(), count + extra.numel()
    return total / max(1, count)


def spread_penalty(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Collapse guard, a variance hinge as in VICReg: the mean over dimensions of how far the
    per-dimension standard deviation of the batch's (unit) predictions falls below that of its
    (unit) targets. Zero while the predictions spread at least as much as the targets."""
    def std(a: torch.Tensor) -> torch.Tensor:
        # eps keeps the gradient finite when a dimension has collapsed to a constant
        return torch.sqrt(F.normalize(a.float(), dim=-1).var(dim=0, correction=0) + 1e-8)

    return F.relu(std(target).detach() - std(pred)).mean()


def make_loss(name: str, temperature: float = 0.05, margin: float = 0.2) -> Loss:
    """The loss function a TrainConfig names: loss(pred, target, negatives=None)."""
    if name == "infonce":
        return lambda p, t, negatives=None: info_nce_loss(p, t, temperature, negatives)
    if name == "triplet":
        return lambda p, t, negatives=None: triplet_loss(p, t, margin, negatives)
    if name == "cosine":
        return cosine_loss
    if name == "mse":
        return mse_loss
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
