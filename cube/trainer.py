"""The training loop: AdamW, warm-up + cosine schedule, gradient clipping, early stopping on the
validation split, a checkpoint each epoch, exact resume, and callbacks.

The trainer knows nothing about the model beyond `model(x) -> y` and two optional hooks: a model
may define `param_groups(weight_decay)` (optimizer groups with their own weight decay) and
`penalty()` (a regularisation term of its last training forward, added to the loss).

It reports through callbacks: `on_epoch_end(EpochReport)` after every epoch (the service persists
progress, metrics and the checkpoints written and deleted there, and raises `StopTraining` to honour
a cancel request) and `on_step(step, total_steps)` every few steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from cube.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from cube.config import ConfigError, TrainConfig
from cube.curriculum import Curriculum, pair_difficulty
from cube.errors import CheckpointMismatch, TrainingDiverged
from cube.losses import make_loss, spread_penalty
from cube.metrics import retrieval_metrics
from cube.negatives import HardNegativeSampler


class StopTraining(Exception):
    """Raised by a callback to stop after the current epoch (e.g. a cancel request)."""


@dataclass
class EpochReport:
    epoch: int               # 1-based, epochs completed
    n_epochs: int
    step: int                # optimizer steps completed
    total_steps: int         # planned steps (early stopping may end sooner)
    train_loss: float
    val: dict[str, float]    # loss, recall_at_1, recall_at_10, mrr on the validation split
    improved: bool
    seconds: float           # wall time of this epoch
    resumed_from: int | None = None  # set on the first epoch after a resume
    checkpoint: Path | None = None   # the checkpoint written after this epoch (None without a checkpoint_dir)
    removed_checkpoints: tuple[Path, ...] = ()  # older checkpoints deleted to keep only the newest few


class Callback(Protocol):
    def on_epoch_end(self, report: EpochReport) -> None: ...


@dataclass
class TrainResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_score: float | None
    epochs_run: int
    stopped_early: bool
    cancelled: bool
    resumed_from: int | None
    device: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pins_host_batches(device: torch.device) -> bool:
    """Whether training batches are gathered into pinned (page-locked) host memory and copied with
    non_blocking=True: only for CUDA. From pinned memory the copy is a DMA the host need not wait
    for; from ordinary memory CUDA stages it and the host waits, whatever non_blocking says. On the
    CPU there is no copy at all."""
    return device.type == "cuda"


def batch_to(device: torch.device, source: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """source[idx] on `device`, for an index of any shape (hard negatives index (B, k)). On CUDA the
    rows are gathered straight into pinned memory, then copied without blocking; the pinned block
    comes from torch's caching host allocator, which keeps it until that copy has run, so the next
    batch's gather never overwrites a copy in flight."""
    pin = pins_host_batches(device)
    rows = source.shape[1:]
    staged = torch.empty((idx.numel(), *rows), dtype=source.dtype, pin_memory=pin)
    torch.index_select(source, 0, idx.reshape(-1), out=staged)
    return staged.view(*idx.shape, *rows).to(device, non_blocking=pin)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak: a pure function of the step, so resume
    needs no scheduler state."""
    warm = min(cfg.warmup_steps, max(1, total_steps // 10))
    if step < warm:
        return cfg.learning_rate * (step + 1) / warm
    progress = (step - warm) / max(1, total_steps - warm)
    return cfg.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _batches(n: int, batch_size: int, seed: int, epoch: int, pool: np.ndarray | None = None,
             weights: torch.Tensor | None = None) -> Iterable[torch.Tensor]:
    """Shuffled batches of the n training pairs, or of the pairs in `pool` (a curriculum's). With
    sample weights, as many draws with replacement, each pair in proportion to its weight."""
    # The shuffle depends only on (seed, epoch): a resumed run sees the same batches.
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    candidates = torch.arange(n) if pool is None else torch.as_tensor(pool)
    if weights is None:
        perm = candidates[torch.randperm(len(candidates), generator=gen)]
    else:
        w = weights[candidates]
        if not w.sum() > 0:
            raise ValueError("every pair this epoch may draw has sample weight 0")
        perm = candidates[torch.multinomial(w, len(candidates), True, generator=gen)]
    for start in range(0, len(perm), batch_size):
        yield perm[start : start + batch_size]


@torch.inference_mode()  # no autograd bookkeeping at all: the fastest eval path
def predict(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 1024, device: str | torch.device | None = None) -> np.ndarray:
    """Eval-mode predictions in batches, as float32 numpy."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    xs = torch.as_tensor(np.asarray(x, dtype=np.float32))
    out = [model(xs[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(xs), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _negative_sampler(x_tr: torch.Tensor, y_tr: torch.Tensor, cfg: TrainConfig, device) -> HardNegativeSampler | None:
    if not cfg.hard_negatives:
        return None
    if cfg.hard_negatives >= len(y_tr):
        raise ConfigError(f"hard_negatives={cfg.hard_negatives} needs more training pairs than that; got {len(y_tr)}")
    return HardNegativeSampler(x_tr, y_tr, cfg.hard_negatives, cfg.negative_max_cosine, device)


def monitor_score(val: dict[str, float], monitor: str) -> float:
    return -val["loss"] if monitor == "loss" else val[monitor]


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    *,
    callbacks: Iterable[Any] = (),
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    resume_from: str | Path | None = None,
    step_every: int = 25,
    fingerprint: str = "",
    difficulty: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    loss_fn: Callable | None = None,
    val_metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None,
    start_candidate: bool = False,
) -> TrainResult:
    """Train `model` in place; on return it holds the best validation epoch's weights.

    `difficulty` (one number per training pair, higher = harder) orders a curriculum; without it a
    curriculum computes one from the pairs (see cube/curriculum.py). `sample_weights` (one
    non-negative number per training pair) makes an epoch draw pairs in proportion to them instead
    of visiting each once. `loss_fn` (pred, target, negatives) replaces the loss `cfg.loss` names and
    `val_metrics` (pred, target) -> metrics the retrieval metrics of the validation split: a model
    with several read-out heads scores each head in its own space (cube/multiteacher.py). With
    `start_candidate` the weights the model starts with are epoch 0, a candidate like any epoch: a model that starts from a good map (a translation's Procrustes
    start) then never ends worse on validation than it began.

    Resumes from `resume_from` (a checkpoint directory an earlier run reported) if given, else from
    the newest checkpoint in `checkpoint_dir` when `resume`. `fingerprint` names the run (config and
    data); a checkpoint written under another fingerprint is refused rather than silently resumed."""
    cfg.validate()
    callbacks = list(callbacks)
    device = resolve_device(cfg.device)
    model.to(device)
    x_tr = torch.as_tensor(np.asarray(train[0], dtype=np.float32))
    y_tr = torch.as_tensor(np.asarray(train[1], dtype=np.float32))
    x_va, y_va = np.asarray(val[0], dtype=np.float32), np.asarray(val[1], dtype=np.float32)
    weights = None
    if sample_weights is not None:
        weights = torch.as_tensor(np.asarray(sample_weights, dtype=np.float64))
        if weights.shape != (len(x_tr),) or not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"sample_weights must be {len(x_tr)} non-negative numbers, not all zero")
    loss_fn = loss_fn or make_loss(cfg.loss, cfg.temperature, cfg.triplet_margin)
    sampler = _negative_sampler(x_tr, y_tr, cfg, device)
    # A model may give its parameters per-group weight decay (the cube's io_weight_decay).
    params = model.param_groups(cfg.weight_decay) if hasattr(model, "param_groups") else model.parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    curriculum = Curriculum(pair_difficulty(train[0], train[1], difficulty), cfg) if cfg.curriculum != "none" else None
    pool_size = (lambda e: curriculum.size(e)) if curriculum else (lambda e: len(x_tr))
    total_steps = sum(math.ceil(pool_size(e) / cfg.batch_size) for e in range(cfg.n_epochs))
    autocast = device.type == "cuda" and cfg.amp
    if device.type == "cuda":
        # cuDNN times its convolution algorithms once per input shape and keeps the fastest. Safe
        # here: every training batch has one shape (batch_size rows; only an epoch's last is
        # smaller), and predict's chunks of the training and validation splits a few more, so the
        # timing is paid a handful of times per run. The algorithm it picks may differ between
        # processes, so exact repeats stay a CPU promise (docs/learning.md).
        torch.backends.cudnn.benchmark = True

    state = TrainState(fingerprint=fingerprint)
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    resumed_from = None
    torch.manual_seed(cfg.seed)  # the fire-rate masks draw from the global generator
    ckpt = Path(resume_from) if resume_from else latest_checkpoint(checkpoint_dir) if (checkpoint_dir and resume) else None
    if ckpt is not None:
        state, best_weights = load_checkpoint(ckpt, model, optimizer, device)
        if fingerprint and state.fingerprint != fingerprint:
            raise CheckpointMismatch(f"{ckpt} is a checkpoint of a different run (other settings or data); "
                                     "use another output directory or delete that one")
        torch.set_rng_state(torch.tensor(state.rng_state, dtype=torch.uint8))
        if state.cuda_rng_state and device.type == "cuda":
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state.cuda_rng_state])
        resumed_from = state.epoch
    start_val = None
    if start_candidate and ckpt is None:
        start_val = evaluate_split(model, x_va, y_va, loss_fn, device, val_metrics)
        state.best_score, state.best_epoch = monitor_score(start_val, cfg.monitor), 0

    started = time.perf_counter()
    cancelled = stopped_early = False
    first_epoch_after_resume = resumed_from
    while state.epoch < cfg.n_epochs and not (cfg.early_stopping_patience and state.bad_epochs >= cfg.early_stopping_patience):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        # Mined from the model as it starts the epoch, so a resumed run mines the same negatives.
        mined = sampler.mine(predict(model, x_tr, device=device)) if sampler else None
        pool = curriculum.pairs(state.epoch) if curriculum else None
        for idx in _batches(len(x_tr), cfg.batch_size, cfg.seed, state.epoch, pool, weights):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, total_steps, cfg)
            xb, yb = batch_to(device, x_tr, idx), batch_to(device, y_tr, idx)
            negatives = None if mined is None else batch_to(device, y_tr, mined[idx])  # (B, k, D)
            if cfg.input_noise:  # std input_noise / sqrt(D): a noise vector of about that norm
                xb = xb + torch.randn_like(xb) * (cfg.input_noise / xb.shape[1] ** 0.5)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
                pred = model(xb)
                loss = loss_fn(pred, yb, negatives)
                if cfg.spread_penalty:
                    loss = loss + cfg.spread_penalty * spread_penalty(pred, yb)
                penalty = model.penalty() if hasattr(model, "penalty") else None
                if penalty is not None:
                    loss = loss + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            state.step += 1
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if state.step % step_every == 0:
                for cb in callbacks:
                    if hasattr(cb, "on_step"):
                        cb.on_step(state.step, total_steps)
        state.epoch += 1
        train_loss = total / max(1, count)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"the training loss became {train_loss} in epoch {state.epoch}; "
                                   "try a lower learning_rate or a grad_clip")
        val_scores = evaluate_split(model, x_va, y_va, loss_fn, device, val_metrics)
        score = monitor_score(val_scores, cfg.monitor)
        improved = state.best_score is None or score > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.bad_epochs = score, state.epoch, 0
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state.bad_epochs += 1
        record = {"epoch": state.epoch, "step": state.step, "train_loss": train_loss,
                  **{f"val_{k}": v for k, v in val_scores.items()}}
        state.history.append(record)
        state.rng_state = torch.get_rng_state().tolist()
        if device.type == "cuda":  # the fire-rate masks are drawn on the device there
            state.cuda_rng_state = [r.tolist() for r in torch.cuda.get_rng_state_all()]
        saved, removed = save_checkpoint(checkpoint_dir, model, optimizer, best_weights, state) if checkpoint_dir else (None, [])
        report = EpochReport(state.epoch, cfg.n_epochs, state.step, total_steps, record["train_loss"], val_scores,
                             improved, time.perf_counter() - t0, first_epoch_after_resume, saved, tuple(removed))
        first_epoch_after_resume = None
        try:
            for cb in callbacks:
                if hasattr(cb, "on_epoch_end"):
                    cb.on_epoch_end(report)
        except StopTraining:
            cancelled = True
            break
    else:
        stopped_early = state.epoch < cfg.n_epochs

    model.load_state_dict(best_weights)
    model.eval()
    return TrainResult(state.history, state.best_epoch, state.best_score, state.epoch, stopped_early, cancelled,
                       resumed_from, str(device), time.perf_counter() - started,
                       extra={} if start_val is None else {"start_val": start_val})


@torch.no_grad()
def evaluate_split(model: nn.Module, x: np.ndarray, y: np.ndarray, loss_fn, device,
                   metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None) -> dict[str, float]:
    pred = predict(model, x, device=device)
    # Validation loss in batches the size of training's would need the batch size; use the whole
    # split once (InfoNCE over all validation targets: a harder but stable number).
    loss = float(loss_fn(torch.as_tensor(pred), torch.as_tensor(y)))
    return {"loss": loss, **(metrics or retrieval_metrics)(pred, y)}
