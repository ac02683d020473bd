"""The same tuning budget for every trained method, chosen on the validation split only.

A method (the cube, the linear map, the MLP, the residual MLP) is trained once per learning rate of
`learning_rate_grid(cfg)`, each run stopping early on validation and keeping its best epoch; the run
with the best validation score (`cfg.monitor`) wins. So every method gets `cfg.tuning_budget`
learning rates and its own number of epochs, and nothing here ever sees the test split.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from cube.config import TrainConfig
from cube.trainer import StopTraining, TrainResult, fit, monitor_score

Pairs = tuple[np.ndarray, np.ndarray]
LR_STEP = 4.0  # the grid's ratio between neighbouring learning rates


def learning_rate_grid(cfg: TrainConfig) -> list[float]:
    """cfg.learning_rate first, then / 4, x 4, / 16, x 16, ... until the budget is spent."""
    exponents = [0]
    k = 1
    while len(exponents) < cfg.tuning_budget:
        exponents.append(-k)
        if len(exponents) < cfg.tuning_budget:
            exponents.append(k)
        k += 1
    return [float(cfg.learning_rate * LR_STEP**e) for e in exponents]


class StopWhen:
    """A callback that ends training after the current epoch once `should_stop()` says so."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def on_epoch_end(self, report) -> None:
        if self.should_stop():
            raise StopTraining()


@dataclass
class Tuned:
    model: nn.Module                  # the winning run's model, at its best validation epoch
    result: TrainResult
    cfg: TrainConfig                  # cfg with the chosen learning rate
    trials: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False

    def summary(self) -> dict[str, Any]:
        return {"learning_rate": self.cfg.learning_rate, "best_epoch": self.result.best_epoch,
                "epochs_run": self.result.epochs_run, "trials": self.trials}


def tune(
    build: Callable[[], nn.Module],
    train: Pairs,
    val: Pairs,
    cfg: TrainConfig,
    *,
    callbacks: Iterable[Any] = (),
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    fingerprint: str = "",
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = lambda msg: None,
    per_trial: Callable[[], dict[str, Any]] | None = None,
    **fit_kwargs: Any,
) -> Tuned:
    """Train `build()` at every learning rate of the grid (same seed) and keep the best on validation.

    The first run, at cfg.learning_rate, carries `callbacks`, `checkpoint_dir` and `resume_from` (the
    progress a user watches, and resume); the others are asked `should_stop` after every epoch.
    `per_trial()` gives each trial fresh keyword arguments for `fit` (state a run must not share)."""
    best: tuple[float, nn.Module, TrainResult, TrainConfig] | None = None
    trials = []
    for i, lr in enumerate(learning_rate_grid(cfg)):
        trial_cfg = replace(cfg, learning_rate=lr)
        torch.manual_seed(cfg.seed)
        model = build()
        t0 = time.perf_counter()
        result = fit(model, train, val, trial_cfg, callbacks=callbacks if i == 0 else [StopWhen(should_stop)],
                     checkpoint_dir=checkpoint_dir if i == 0 else None, resume_from=resume_from if i == 0 else None,
                     fingerprint=fingerprint, **fit_kwargs, **(per_trial() if per_trial else {}))
        score = result.best_score if result.best_score is not None else float("-inf")
        trial = {"learning_rate": lr, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                 f"val_{cfg.monitor}": score, "seconds": round(time.perf_counter() - t0, 1)}
        if "start_val" in result.extra:  # the start was a candidate: what it scored, and the best trained epoch
            trial[f"val_{cfg.monitor}_at_start"] = monitor_score(result.extra["start_val"], cfg.monitor)
            trial[f"val_{cfg.monitor}_best_trained_epoch"] = max(
                (monitor_score({k[4:]: v for k, v in h.items() if k.startswith("val_")}, cfg.monitor) for h in result.history),
                default=None)
        trials.append(trial)
        log(f"  learning rate {lr:g}: best validation {cfg.monitor} {score:.4f} at epoch {result.best_epoch}")
        if result.cancelled:
            return Tuned(model, result, trial_cfg, trials, cancelled=True)
        if best is None or score > best[0]:  # a tie keeps the earlier run: the given learning rate first
            best = (score, model, result, trial_cfg)
    if best is None:  # learning_rate_grid always holds cfg.learning_rate; an empty grid is a bug
        raise ValueError("the learning-rate grid is empty")
    return Tuned(best[1], best[2], best[3], trials)
