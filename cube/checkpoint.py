"""Training checkpoints: everything needed to resume a run to the same result, without pickle.

    DIR/epoch-0003/model.safetensors      model weights after epoch 3
    DIR/epoch-0003/best.safetensors       weights of the best validation epoch so far
    DIR/epoch-0003/optimizer.safetensors  optimizer tensors (flattened "state.<param>.<name>")
    DIR/epoch-0003/state.json             epoch, step, optimizer groups, early-stopping state, history
    DIR/latest                            name of the newest complete checkpoint (atomic pointer)

A checkpoint directory is complete before `latest` points at it, so a crash mid-save leaves the
previous checkpoint usable. Only the newest `keep` checkpoints are kept; `save_checkpoint` says which
it wrote and which it deleted, so a caller that lists checkpoints never reads this layout.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


@dataclass
class TrainState:
    """The trainer's progress besides weights: what resuming needs to continue identically."""

    epoch: int = 0                 # epochs completed
    step: int = 0                  # optimizer steps completed
    best_score: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    rng_state: list[int] = field(default_factory=list)  # torch CPU generator state (bytes as ints)
    cuda_rng_state: list[list[int]] = field(default_factory=list)  # one per CUDA device, when training there
    fingerprint: str = ""          # what run wrote it (config + data); a different run must not resume it


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, slots in state_dict["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    best_weights: dict[str, torch.Tensor], state: TrainState, keep: int = 2) -> tuple[Path, list[Path]]:
    """Write the checkpoint of `state.epoch`; returns its directory and the older ones deleted."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state.epoch:04d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in best_weights.items()}, str(tmp / "best.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"train_state": state.__dict__, "optimizer": opt_meta}))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(name)
    os.replace(pointer, root / LATEST)
    by_epoch = sorted((p for p in root.glob("epoch-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    removed = by_epoch[:-keep]
    for old in removed:
        shutil.rmtree(old, ignore_errors=True)
    return final, removed


def is_checkpoint(path: str | Path) -> bool:
    """A complete checkpoint directory (what `save_checkpoint` returned, still on disk)."""
    return (Path(path) / "state.json").is_file()


def latest_checkpoint(directory: str | Path) -> Path | None:
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    path = Path(directory) / pointer.read_text().strip()
    return path if is_checkpoint(path) else None


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    device: str | torch.device = "cpu") -> tuple[TrainState, dict[str, torch.Tensor]]:
    """Restore model and optimizer in place; return the train state and the best weights."""
    path = Path(path)
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=str(device)), strict=True)
    meta = json.loads((path / "state.json").read_text())
    opt_tensors = load_file(str(path / "optimizer.safetensors"), device=str(device))
    optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, meta["optimizer"]))
    best = load_file(str(path / "best.safetensors"), device=str(device))
    return TrainState(**meta["train_state"]), best
