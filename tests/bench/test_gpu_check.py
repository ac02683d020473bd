"""bench/gpu_check.sh on a machine without CUDA: it stops before its first step, non-zero, saying why."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run the whole check")
def test_gpu_check_stops_at_once_without_cuda(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHON": sys.executable, "OUT": str(out)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"gpu_check: no CUDA device: torch {torch.__version__}" in r.stderr
    assert r.stdout == "" and not out.exists()  # no step ran, nothing was started or written
