"""Baselines, all with one interface: `fit(train, val) -> self`, `predict(x) -> y` (numpy float32).

identity     y = x (only when the spaces have the same size)
mean         y = the mean training target (a constant: high mean cosine, chance-level recall)
ridge        closed-form ridge regression; lambda chosen on the validation split's MRR
lowrank      reduced-rank ridge regression; rank and lambda chosen on the validation split's MRR
procrustes   orthogonal map between the centred spaces; between spaces of different sizes the
             smaller one is zero-padded, so the map is semi-orthogonal (W W^T = I on the smaller side)

The trained baselines (linear, mlp, resmlp in `cube.models`) go through the same trainer, loss and
learning-rate tuning as the cube (`cube.tuning`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cube.metrics import retrieval_metrics

Pairs = tuple[np.ndarray, np.ndarray]


class Identity:
    name = "identity"

    def fit(self, train: Pairs, val: Pairs) -> "Identity":
        if train[0].shape[1] != train[1].shape[1]:
            raise ValueError("identity needs input and target of the same dimension")
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)


class MeanTarget:
    name = "mean"

    def fit(self, train: Pairs, val: Pairs) -> "MeanTarget":
        self.mean = train[1].astype(np.float64).mean(axis=0)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.tile(self.mean.astype(np.float32), (len(x), 1))


@dataclass
class Ridge:
    lambdas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
    name: str = "ridge"
    chosen: dict[str, Any] = field(default_factory=dict)

    def fit(self, train: Pairs, val: Pairs) -> "Ridge":
        x, y = train[0].astype(np.float64), train[1].astype(np.float64)
        self.mx, self.my = x.mean(0), y.mean(0)
        xc, yc = x - self.mx, y - self.my
        # One eigendecomposition of X^T X serves every lambda.
        evals, evecs = np.linalg.eigh(xc.T @ xc)
        xty = evecs.T @ (xc.T @ yc)
        best = None
        for lam in self.lambdas:
            for choice, w in self.candidates(xc, evecs @ (xty / (evals + lam)[:, None]), lam):
                score = retrieval_metrics((val[0] - self.mx) @ w + self.my, val[1])["mrr"]
                if best is None or score > best[0]:
                    best = (score, choice, w)
        score, choice, self.w = best
        self.lam = choice["lambda"]
        self.chosen = {**choice, "val_mrr": score}
        return self

    def candidates(self, xc: np.ndarray, w: np.ndarray, lam: float):
        """(what was chosen, map) pairs to score on validation for one lambda's ridge map `w`."""
        yield {"lambda": lam}, w

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mx) @ self.w + self.my).astype(np.float32)


@dataclass
class LowRankAffine(Ridge):
    """y = my + (x - mx) B_r: the ridge map restricted to the r directions of the target space its
    fitted values use most (closed-form reduced-rank regression). Rank and lambda on validation MRR."""

    ranks: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    name: str = "lowrank"

    def candidates(self, xc: np.ndarray, w: np.ndarray, lam: float):
        full = min(w.shape)
        # The fitted values' principal directions in the target space: B_r = B V_r V_r^T.
        _, _, vt = np.linalg.svd(xc @ w, full_matrices=False)
        for r in sorted({r for r in self.ranks if r < full} | {full}):
            yield {"lambda": lam, "rank": r}, (w @ vt[:r].T) @ vt[:r]

    def fit(self, train: Pairs, val: Pairs) -> "LowRankAffine":
        super().fit(train, val)
        self.rank = self.chosen["rank"]
        return self


class Procrustes:
    """Orthogonal W minimising ||(X - mx) W - (Y - my)||: W = U V^T from the thin SVD of Xc^T Yc.

    When the sizes differ, W (d_in x d_out) is the Procrustes map of the zero-padded smaller space:
    its rows (d_in < d_out) or columns (d_in > d_out) are orthonormal, so it keeps every distance of
    the smaller space. Nothing to tune: the centring is fixed and the map is unique."""

    name = "procrustes"

    def fit(self, train: Pairs, val: Pairs) -> "Procrustes":
        x, y = train[0].astype(np.float64), train[1].astype(np.float64)
        self.mx, self.my = x.mean(0), y.mean(0)
        u, _, vt = np.linalg.svd((x - self.mx).T @ (y - self.my), full_matrices=False)
        self.w = u @ vt
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mx) @ self.w + self.my).astype(np.float32)
