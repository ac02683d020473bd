"""ONNX export of a model directory, so a trained map runs where torch and this service do not.

The graph has one input `input` (float32 [batch, d_in]) and one output `output` (float32
[batch, d_out]); the batch axis is dynamic. It is the eval-mode forward pass (the cube's expected,
deterministic update), traced by torch's exporter and checked against torch on random inputs with
onnxruntime before it is kept. The file is written to a temp name and renamed, so a reader never
sees half a file.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT, OUTPUT = "input", "output"
FORMATS = ("onnx",)
# float32 accumulation order differs between torch's and onnxruntime's kernels; on trained models the
# outputs agree to about 1e-6 (tests/cube/test_onnx_export.py checks 1e-5).
CHECK_TOLERANCE = 1e-4
CHECK_ROWS = 8


class ExportError(RuntimeError):
    """The exporter failed, or its graph does not compute what the model does."""


@dataclass
class Exported:
    path: Path
    max_abs_diff: float   # onnxruntime vs torch on CHECK_ROWS random unit vectors


def export_onnx(model: nn.Module, d_in: int, out: str | Path, *, metadata: dict[str, str] | None = None) -> Exported:
    """Write `model` as ONNX to `out` and check it with onnxruntime; raise ExportError if they differ."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    model = model.to("cpu").eval()
    example = torch.randn(2, d_in)
    try:
        # The exporter prints its progress; a CLI or a server log wants none of it.
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        proto = program.model_proto
        for key, value in (metadata or {}).items():
            proto.metadata_props.add(key=key, value=str(value))
        onnx.save_model(proto, str(tmp))
        diff = max_abs_diff(model, tmp, d_in)
        if not diff <= CHECK_TOLERANCE:
            raise ExportError(f"the exported graph differs from the model by {diff:.3g} (tolerance {CHECK_TOLERANCE:g})")
        os.replace(tmp, out)
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # the exporter raises many kinds; all mean "no usable graph"
        tmp.unlink(missing_ok=True)
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    return Exported(out, diff)


def max_abs_diff(model: nn.Module, onnx_path: str | Path, d_in: int, rows: int = CHECK_ROWS) -> float:
    """Largest |onnxruntime - torch| over `rows` random unit vectors."""
    x = np.random.default_rng(0).standard_normal((rows, d_in)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = run_onnx(onnx_path, x)
    return float(np.abs(got - expected).max())


def run_onnx(onnx_path: str | Path, x: np.ndarray) -> np.ndarray:
    """The graph's output for float32 input x [N, d_in], on onnxruntime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


def export_model_dir(model_dir: str | Path, out: str | Path) -> Exported:
    """A model directory (model.json + model.safetensors) as ONNX at `out`."""
    from cube.artifacts import load_model

    model, desc = load_model(model_dir)
    cfg = desc["config"]
    return export_onnx(model, int(cfg["d_in"]), out,
                       metadata={"arch": desc["arch"], "d_in": cfg["d_in"], "d_out": cfg["d_out"]})
