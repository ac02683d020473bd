#!/usr/bin/env bash
# The GPU path in one run. From the repository root, on a machine with an NVIDIA GPU:
#
#     bench/gpu_check.sh                 # figures under $OUT (default ./gpu-check-out)
#
# 1. nvidia-smi: the GPU, its driver and CUDA version                      -> $OUT/nvidia-smi.txt
# 2. bench/train_speed.py --device cuda: training samples/s and achieved TFLOP/s against the
#    GPU's measured bf16 matmul                                             -> $OUT/train_speed.txt
# 3. the embedded service (SQLite + SQL broker, in $OUT/service): `cube up` with transforms on
#    CUDA (CUBE_TRANSFORM_DEVICE=cuda) and a `cube worker --device cuda` on queue training.cuda;
#    one tiny job with "device": "cuda" through them, then /v1/transform timed on its model
#    (bench/gpu_service_check.py)                                          -> $OUT/service.json
#
# Exits non-zero at the first step that fails (with the service's logs); without a CUDA device it
# stops at once, saying so. PYTHON (default .venv/bin/python) runs it all; PORT (default 8765) is
# the API's port.
set -euo pipefail

PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-./gpu-check-out}
PORT=${PORT:-8765}

fail() { echo "gpu_check: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

[ -f bench/gpu_check.sh ] || fail "run it from the repository root"
command -v "$PY" >/dev/null || fail "no Python at $PY (set PYTHON to the project's interpreter)"
"$PY" -c '
import sys, torch
if not torch.cuda.is_available():
    build = torch.version.cuda or "none"
    sys.exit(f"gpu_check: no CUDA device: torch {torch.__version__} (CUDA build: {build}) sees none; "
             "run this on a machine with an NVIDIA GPU and a CUDA build of torch")
' || exit 1
command -v nvidia-smi >/dev/null || fail "torch sees a GPU but nvidia-smi is not on PATH"
mkdir -p "$OUT"

step "the GPU"
nvidia-smi | tee "$OUT/nvidia-smi.txt"

step "training speed on CUDA (bench/train_speed.py --device cuda)"
"$PY" bench/train_speed.py --device cuda | tee "$OUT/train_speed.txt"

step "a tiny job through a CUDA worker, and transforms on CUDA (embedded service, port $PORT)"
SERVICE="$OUT/service"
rm -rf "$SERVICE" && mkdir -p "$SERVICE"
for name in $(compgen -e | grep '^CUBE_' || true); do unset "$name"; done  # the embedded default, nothing else
export CUBE_DATA_DIR="$SERVICE"
CUBE_TRANSFORM_DEVICE=cuda "$PY" -m app.cli up --port "$PORT" --data-dir "$SERVICE" >"$SERVICE/up.log" 2>&1 &
UP=$!
"$PY" -m app.cli worker --device cuda --concurrency 1 --max-tasks-per-child 1 >"$SERVICE/worker-cuda.log" 2>&1 &
WORKER=$!

stop_service() {
    local rc=$? pid
    kill -TERM "$WORKER" "$UP" 2>/dev/null || true
    for pid in "$WORKER" "$UP"; do  # `cube up` stops its own worker; give each 30 s, then kill
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        echo "gpu_check: FAILED; the service's logs end:" >&2
        tail -n 30 "$SERVICE/up.log" "$SERVICE/worker-cuda.log" >&2 || true
    fi
}
trap stop_service EXIT

"$PY" bench/gpu_service_check.py --url "http://127.0.0.1:$PORT" --out "$OUT"

step "done: figures in $OUT (nvidia-smi.txt, train_speed.txt, service.json)"
