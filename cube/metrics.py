"""Held-out metrics for embedding -> embedding maps.

Retrieval: each prediction ranks all targets of the split by cosine; its own target's rank gives
recall@k and MRR. Ties are broken at the average position, so a constant or degenerate predictor
cannot score by ties. Mean cosine alone is misleading on anisotropic embeddings (a constant output
scores high), so it is always reported beside the centred cosine and the constant predictor's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _unit(a: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.double(), dim=-1)


def target_ranks(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, chunk: int = 1024) -> np.ndarray:
    """0-based rank of each row's own target among all targets, by cosine (mean position for ties)."""
    p, t = _unit(torch.as_tensor(pred)), _unit(torch.as_tensor(target))
    ranks = []
    for start in range(0, p.shape[0], chunk):  # chunks bound memory at chunk x N similarities
        sims = p[start : start + chunk] @ t.T  # (b, N)
        own = sims[torch.arange(sims.shape[0]), torch.arange(start, start + sims.shape[0])][:, None]
        greater = (sims > own).sum(dim=1).double()
        ties = (sims == own).sum(dim=1).double() - 1.0
        rank = greater + ties / 2.0
        # A non-finite prediction (a diverged model) compares false with everything: rank it last,
        # never first.
        rank[~torch.isfinite(sims).all(dim=1)] = float(t.shape[0] - 1)
        ranks.append(rank)
    return torch.cat(ranks).numpy()


def retrieval_metrics(pred, target) -> dict[str, float]:
    ranks = target_ranks(pred, target)
    return {
        "recall_at_1": float(np.mean(ranks < 1)),
        "recall_at_10": float(np.mean(ranks < 10)),
        "mrr": float(np.mean(1.0 / (1.0 + ranks))),
    }


def evaluate_predictions(pred, target, train_target_mean) -> dict[str, float]:
    """Every metric of the report for one method on one split."""
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64))
    t = torch.as_tensor(np.asarray(target, dtype=np.float64))
    mu = torch.as_tensor(np.asarray(train_target_mean, dtype=np.float64))[None, :]
    out = retrieval_metrics(p, t)
    out["mean_cosine"] = float(F.cosine_similarity(p, t, dim=-1).mean())
    out["centered_cosine"] = float(F.cosine_similarity(p - mu, t - mu, dim=-1).mean())
    out["constant_cosine"] = float(F.cosine_similarity(mu.expand_as(t), t, dim=-1).mean())
    # Collapse alarm: spread of the (unit) predictions per dimension, relative to the targets'.
    pred_spread = _unit(p).std(dim=0).mean()
    target_spread = _unit(t).std(dim=0).mean()
    out["output_spread"] = float(pred_spread / target_spread) if target_spread > 0 else 0.0
    return out


# Collapse alarm: a method whose output spread is below this share of the targets' is flagged in the
# report. The mean-target baseline is a constant (spread 0) by construction and is never flagged.
COLLAPSE_SPREAD = 0.5


def collapsed(methods: dict[str, dict[str, float]]) -> list[str]:
    """Names of the methods whose output spread fell below COLLAPSE_SPREAD x the targets'."""
    return sorted(name for name, m in methods.items() if name != "mean" and m.get("output_spread", 1.0) < COLLAPSE_SPREAD)
