"""Curriculum: train on the easiest pairs first, then on harder and harder ones.

A pair's difficulty is 1 - the teacher cosine of its input and target (PairData.difficulty, written
by `cube encode` and the service for text pairs); embedding pairs without one get it from their own
vectors when input and target share a space. Schedule `linear`: epoch e (0-based) draws its batches
from the easiest fraction

    f(e) = start + (1 - start) * min(1, e / curriculum_epochs)

of the training pairs, so the pool grows linearly from `curriculum_start` to all pairs at epoch
`curriculum_epochs` and stays there.
"""
from __future__ import annotations

import math

import numpy as np

from cube.config import ConfigError, TrainConfig


def pair_difficulty(inputs: np.ndarray, targets: np.ndarray, difficulty: np.ndarray | None) -> np.ndarray:
    """The given difficulty, else 1 - cos(input, target) when the spaces agree; else ConfigError."""
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    if difficulty is not None:
        if len(difficulty) != len(inputs):
            raise ValueError(f"difficulty has {len(difficulty)} values for {len(inputs)} pairs")
        return np.asarray(difficulty, dtype=np.float64)
    if inputs.shape[1] != targets.shape[1]:
        raise ConfigError(
            f"curriculum needs a per-pair difficulty: these pairs have none (no 'difficulty' array or column), and "
            f"it cannot be computed from the pairs themselves because input ({inputs.shape[1]}d) and target "
            f"({targets.shape[1]}d) are different spaces; add a difficulty (e.g. 1 - teacher cosine) or set curriculum=none")
    x = inputs / np.maximum(np.linalg.norm(inputs, axis=1, keepdims=True), 1e-12)
    y = targets / np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)
    return 1.0 - (x.astype(np.float64) * y).sum(axis=1)


def curriculum_fraction(epoch: int, cfg: TrainConfig) -> float:
    """Share of the training pairs (the easiest) that 0-based `epoch` trains on."""
    if cfg.curriculum == "none":
        return 1.0
    return cfg.curriculum_start + (1.0 - cfg.curriculum_start) * min(1.0, epoch / cfg.curriculum_epochs)


class Curriculum:
    """Which training pairs each epoch may draw from, easiest first (ties keep their file order)."""

    def __init__(self, difficulty: np.ndarray, cfg: TrainConfig):
        self.order = np.argsort(np.asarray(difficulty), kind="stable")
        self.cfg = cfg

    def size(self, epoch: int) -> int:
        return max(1, min(len(self.order), math.ceil(curriculum_fraction(epoch, self.cfg) * len(self.order) - 1e-9)))

    def pairs(self, epoch: int) -> np.ndarray:
        """Indices of the pairs of 0-based `epoch`: the easiest `size(epoch)`."""
        return self.order[: self.size(epoch)]
