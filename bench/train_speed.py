"""Training speed of the cube: vectorised program vs a per-cell Python loop of the same rule, and
achieved FLOP/s vs this device's own dense matmul, all measured in one run.

    python bench/train_speed.py [--device cpu|cuda] [--quick]

Achieved FLOP/s = training samples/s x 3 x the model's `flops_per_sample()` (its forward pass's
multiply-adds x 2; forward + backward counted as 3x the forward). The peak it is compared with is
measured here, not read from a data sheet: a dense square matmul in the dtype training computes in,
float32 on the CPU, bfloat16 on CUDA (training runs under bf16 autocast there, with
cudnn.benchmark on, as cube.trainer.fit does); CUDA also prints the float32 matmul for reference.
On the CPU figures are in GFLOP/s, on CUDA in TFLOP/s.

The per-cell loop is what the prototype did: visit every cell in Python, gather its 3x3x3
neighbourhood, run the cell MLP on it. It uses the very same weights, and the script first checks
that it computes the same outputs as the vectorised model (max abs difference printed).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cube import CubeConfig, CubeModel
from cube.lattice import pad_grid
from cube.losses import info_nce_loss


def per_cell_loop_step(model: CubeModel, s: torch.Tensor) -> torch.Tensor:
    """One update of every cell, one cell at a time (26-neighbour learned perception, MLP cell)."""
    cfg, rule = model.cfg, model.cell_rule
    B, C, X, Y, Z = s.shape
    w1 = rule.perceive.conv.weight.reshape(rule.width, -1)  # (H, C*27)
    b1 = rule.perceive.conv.bias
    w2, b2 = rule.fc_out.weight.reshape(C, -1), rule.fc_out.bias  # (C, H)
    g = s.mean(dim=(2, 3, 4)) @ rule.fc_global.weight.T if rule.fc_global is not None else 0.0
    padded = pad_grid(s, cfg.boundary)
    cells = []
    for x in range(X):
        for y in range(Y):
            for z in range(Z):
                neighbourhood = padded[:, :, x : x + 3, y : y + 3, z : z + 3].reshape(B, -1)  # (B, C*27)
                h = F.relu(neighbourhood @ w1.T + b1 + g)
                ds = h @ w2.T + b2
                if model.training:
                    fire = (torch.rand(B, 1, device=s.device) < cfg.fire_rate).to(ds.dtype)
                else:
                    fire = cfg.fire_rate
                cells.append(s[:, :, x, y, z] + fire * ds)
    return torch.stack(cells, dim=-1).view(B, C, X, Y, Z)


def per_cell_loop_forward(model: CubeModel, x: torch.Tensor) -> torch.Tensor:
    s0 = model.embed(x)
    s = s0
    for _ in range(model.cfg.steps):
        s = per_cell_loop_step(model, s)
    delta = (s - s0).movedim(1, -1).reshape(x.shape[0], -1)
    return model.skip_path(x) + model.read_out(delta)


def train_rate(forward, model, batch: int, steps: int, device: torch.device, amp: bool) -> float:
    """Training samples per second over `steps` optimizer steps (after one warm-up step)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = F.normalize(torch.randn(batch, model.cfg.d_in, device=device), dim=-1)
    y = F.normalize(torch.randn(batch, model.cfg.d_out, device=device), dim=-1)

    def one_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = info_nce_loss(forward(model, x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def matmul_gflops(device: torch.device, n: int = 2048, reps: int = 10, dtype=torch.float32) -> float:
    """Dense n x n matmul GFLOP/s in `dtype`: the peak this device reaches in practice."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def vectorised(model, x):
    return model(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    amp = device.type == "cuda"
    if amp:
        torch.backends.cudnn.benchmark = True  # as cube.trainer.fit on CUDA: one batch shape per row
    torch.manual_seed(0)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, autocast bf16: {amp}")

    # Same rule, same weights: the loop and the vectorised program must agree before we time them.
    check = CubeModel(CubeConfig(d_in=384, d_out=384)).eval()
    with torch.no_grad():
        for p in check.cell_rule.parameters():
            p.add_(0.05 * torch.randn_like(p))
        xs = F.normalize(torch.randn(2, 384), dim=-1)
        diff = (check(xs) - per_cell_loop_forward(check, xs)).abs().max().item()
    print(f"per-cell loop vs vectorised, same weights: max |difference| = {diff:.2e}")
    assert diff < 1e-3, "the loop does not implement the same rule"

    unit, scale = ("TFLOP/s", 1e3) if device.type == "cuda" else ("GFLOP/s", 1.0)
    n = 8192 if device.type == "cuda" else 2048
    peak = matmul_gflops(device, n=n, reps=20 if amp else 10)
    print(f"dense float32 matmul ({n}x{n}): {peak / scale:,.1f} {unit}")
    if amp:
        peak = matmul_gflops(device, n=n, reps=100, dtype=torch.bfloat16)
        print(f"dense bfloat16 matmul ({n}x{n}): {peak / scale:,.1f} {unit} (the peak below: training runs under bf16 autocast)")
    quick = args.quick
    rows = []
    for name, cfg, batch in [
        ("default 4x4x6, 384->384", CubeConfig(), 256 if device.type == "cpu" else 1024),
        ("8x8x12 (the first default), 384->384", CubeConfig(grid=(8, 8, 12), channels=8, steps=8), 256 if device.type == "cpu" else 1024),
        ("large 16x16x16, 384->384", CubeConfig(grid=(16, 16, 16), channels=8, steps=8), 32 if device.type == "cpu" else 512),
    ]:
        model = CubeModel(cfg).to(device).train()
        rate = train_rate(vectorised, model, batch, 2 if quick else 5, device, amp)
        flops = 3 * model.flops_per_sample()  # forward + backward ~ 3x forward
        gflops = rate * flops / 1e9
        rows.append((name, model.parameter_count(), rate, gflops, gflops / peak))
        print(f"{name}: {model.parameter_count():,} parameters, {model.flops_per_sample() / 1e6:.1f} MFLOP/sample forward; "
              f"training {rate:,.0f} samples/s (batch {batch}), {gflops / scale:,.2f} {unit} = {100 * gflops / peak:.1f}% of matmul")

    # The prototype's way: per-cell Python loop, batch size 1; and the loop batched over samples.
    model = CubeModel(CubeConfig()).to(device).train()
    loop1 = train_rate(per_cell_loop_forward, model, 1, 1 if quick else 3, device, amp)
    loop32 = train_rate(per_cell_loop_forward, model, 32, 1, device, amp)
    vec = rows[0][2]
    print(f"per-cell loop, batch 1 (the prototype): {loop1:.2f} samples/s -> vectorised is {vec / loop1:,.0f}x faster")
    print(f"per-cell loop, batch 32 (loop over cells only): {loop32:.1f} samples/s -> vectorised is {vec / loop32:,.0f}x faster")


if __name__ == "__main__":
    main()
