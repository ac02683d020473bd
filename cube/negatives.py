"""Hard negatives mined among the training targets: for each training pair, the k targets of other
pairs nearest (by cosine) to the model's current prediction, i.e. the wrong answers the model finds
most plausible right now. The trainer mines once per epoch from eval-mode predictions.

False-negative guard: a target is never a negative of pair i when it is pair i's own target, when its
cosine to pair i's target is above `max_cosine` (the same reply in other words, or the same text
twice), or when its pair has the same input as pair i (another valid answer to the same question).

Exact search: a chunked matmul against the unit training targets and `topk`, with no index
library. FAISS's exact inner-product index measured 1.1-1.35x faster at 100k targets of 384d on a
busy machine (bench/RESULTS.md); mining stays a small share of an epoch of the cube either way.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SAME_INPUT = 1.0 - 1e-5      # input cosine above which two pairs ask the same question
CHUNK_VALUES = 1 << 25       # similarities held at once (128 MiB of float32)


class HardNegativeSampler:
    def __init__(self, inputs: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, k: int,
                 max_cosine: float = 0.95, device: str | torch.device = "cpu"):
        n = len(targets)
        if not 1 <= k < n:
            raise ValueError(f"hard negatives: k must be from 1 to {n - 1} (the training pairs less one), got {k}")
        self.k = k
        self.max_cosine = max_cosine
        self.device = torch.device(device)
        self.inputs = F.normalize(torch.as_tensor(inputs, dtype=torch.float32), dim=-1).to(self.device)
        self.targets = F.normalize(torch.as_tensor(targets, dtype=torch.float32), dim=-1).to(self.device)
        self.n = self.targets.shape[0]
        self.chunk = max(1, CHUNK_VALUES // max(1, self.n))

    def excluded(self, rows: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """(b,) pair indices and (b, m) candidate indices -> (b, m) True where cand may not be a negative."""
        t = torch.einsum("bd,bmd->bm", self.targets[rows], self.targets[cand])
        x = torch.einsum("bd,bmd->bm", self.inputs[rows], self.inputs[cand])
        return (cand == rows[:, None]) | (t > self.max_cosine) | (x > SAME_INPUT)

    def _excluded_all(self, rows: torch.Tensor) -> torch.Tensor:
        """(b,) pair indices -> (b, N): the guard against every training target at once."""
        t = self.targets[rows] @ self.targets.T
        x = self.inputs[rows] @ self.inputs.T
        own = torch.zeros_like(t, dtype=torch.bool)
        own[torch.arange(len(rows), device=self.device), rows] = True
        return own | (t > self.max_cosine) | (x > SAME_INPUT)

    @torch.no_grad()
    def mine(self, predictions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, D) predictions of the training inputs, in training order -> (N, k) int64 indices of
        each pair's hardest admissible negatives, hardest first (on the CPU).

        A pair with fewer than k admissible targets gets its own index as filler: a negative equal
        to the positive, which the triplet loss ignores (constant hinge) and InfoNCE counts as a
        second copy of the positive."""
        pred = F.normalize(torch.as_tensor(predictions, dtype=torch.float32), dim=-1)
        if pred.shape[0] != self.n:
            raise ValueError(f"expected {self.n} predictions (one per training pair), got {pred.shape[0]}")
        m = min(self.n, 2 * self.k + 16)  # candidates: enough that the guard rarely leaves fewer than k
        out = []
        for start in range(0, self.n, self.chunk):
            rows = torch.arange(start, min(start + self.chunk, self.n), device=self.device)
            sims = pred[start : start + len(rows)].to(self.device) @ self.targets.T  # (b, N)
            cand = sims.topk(m, dim=1).indices  # sorted, hardest first
            bad = self.excluded(rows, cand)
            # stable sort puts the admissible candidates first and keeps their hardest-first order
            keep = torch.sort(bad.to(torch.int8), dim=1, stable=True).indices[:, : self.k]
            chosen = cand.gather(1, keep)
            short = (~bad).sum(dim=1) < self.k
            if short.any():  # rare: redo those rows against every target
                few = short.nonzero().squeeze(1)
                masked = sims[few].masked_fill(self._excluded_all(rows[few]), float("-inf"))
                top = masked.topk(self.k, dim=1)
                chosen[few] = torch.where(torch.isfinite(top.values), top.indices, rows[few, None])
            out.append(chosen.cpu())
        return torch.cat(out)
