"""Model artifacts: safetensors weights plus a JSON description that rebuilds the model.

    DIR/model.safetensors   the state dict (tensors only; loading never unpickles)
    DIR/model.json          {"format": 1, "arch", "config", "metadata"}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cube.models import build_model

FORMAT_VERSION = 1
WEIGHTS, DESCRIPTION = "model.safetensors", "model.json"


class ArtifactError(ValueError):
    """A model directory is missing, incomplete or inconsistent."""


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of every tensor (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_model(model: nn.Module, directory: str | Path, arch: str, config: dict[str, Any], metadata: dict | None = None) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state_dict_for_saving(model), str(out / WEIGHTS))
    write_json_atomic(out / DESCRIPTION, {"format": FORMAT_VERSION, "arch": arch, "config": config, "metadata": metadata or {}})
    return out


def read_description(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / DESCRIPTION
    if not path.is_file():
        raise ArtifactError(f"{path} not found: not a model directory")
    try:
        desc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None
    if desc.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported artifact format {desc.get('format')!r}")
    return desc


def load_model(directory: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its JSON description and load the weights (strictly)."""
    desc = read_description(directory)
    model = build_model(desc["arch"], desc["config"])
    weights = Path(directory) / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"{weights} not found")
    state = load_file(str(weights), device=device)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), desc
