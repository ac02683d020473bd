"""Cube inference on CPU: eager PyTorch vs the other runtimes tried, side by side in one run.

One cube (the default config unless --config says otherwise) with random weights and a non-zero cell
rule (a fresh cube's last layer is zero, which would make every runtime agree trivially), the same
random unit inputs for every runtime. Runtimes:

    eager        CubeModel.forward under torch.inference_mode (what cube.trainer.predict runs)
    fast         cube.fast_inference.accelerate: the eval-only rewrite the service uses
    jit          torch.jit.trace + freeze + optimize_for_inference of the eager model
    compile      torch.compile (inductor, freezing on) of the eager model, one graph per batch size
    onnxruntime  the ONNX export (cube.onnx_export) on onnxruntime's CPU provider, same thread count
    eager-bf16   the eager model under CPU autocast to bfloat16 (this CPU has avx512_bf16)

For each thread count and batch size the runtimes take turns (rounds of about --seconds each) so a
noisy machine slows them alike; vectors/s is the median over --rounds, and max |diff| the largest
difference from eager's output over the measured batch sizes (random unit inputs).

    .venv/bin/python bench/infer_speed.py [--threads 1,2] [--batches 1,64] [--rounds 5] [--clock wall|cpu]
                                          [--skip compile,eager-bf16] [--config '{"cell": "gated"}']
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cube import CubeConfig, CubeModel  # noqa: E402
from cube.fast_inference import accelerate  # noqa: E402

RUNTIMES = ("eager", "fast", "jit", "compile", "onnxruntime", "eager-bf16")


def random_cube(config: dict) -> CubeModel:
    torch.manual_seed(0)
    model = CubeModel(CubeConfig(**config)).eval()
    with torch.no_grad():
        for p in model.cell_rule.parameters():  # fc_out starts at zero: give the cell rule something to do
            p.add_(0.1 * torch.randn_like(p))
    return model


def unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def build(name: str, model: CubeModel, batches: list[int], threads: int, tmp: Path) -> tuple[Callable, float]:
    """(forward(x) -> y as a float32 tensor, seconds it took to build and warm up at every batch size)."""
    t0 = time.perf_counter()
    d = model.cfg.d_in
    if name == "eager":
        fn = model
    elif name == "fast":
        fn = accelerate(model)
    elif name == "jit":
        with torch.no_grad():
            traced = torch.jit.trace(model, unit_rows(max(batches), d, 1))
            fn = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    elif name == "compile":
        import torch._inductor.config as inductor

        inductor.freezing = True  # weights are constants: lets inductor pack them for oneDNN
        fn = torch.compile(model, dynamic=False)
    elif name == "onnxruntime":
        import onnxruntime as ort

        from cube.onnx_export import INPUT, OUTPUT, export_onnx

        path = export_onnx(model, d, tmp / "cube.onnx").path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def fn(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])
    elif name == "eager-bf16":
        def fn(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x).float()
    else:
        raise ValueError(name)
    with torch.inference_mode():
        for b in batches:  # compiles, packs and warms up at every batch size before timing
            for _ in range(3):
                fn(unit_rows(b, d, 2))
    return fn, time.perf_counter() - t0


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def throughput(fn: Callable, x: torch.Tensor, seconds: float, clock: Callable[[], float]) -> float:
    """Vectors/s over repeated calls for about `seconds` on `clock`."""
    n, t0 = 0, clock()
    with torch.inference_mode():
        while True:
            fn(x)
            n += 1
            elapsed = clock() - t0
            if elapsed >= seconds:
                return n * len(x) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="{}", help='CubeConfig overrides as JSON, e.g. \'{"cell": "gated"}\'')
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="per runtime per round")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="cpu: this process's CPU time, which leaves out the time other processes on a shared "
                         "machine took (meaningful at 1 thread; at n threads it counts every thread)")
    ap.add_argument("--skip", default="", help="comma-separated runtimes to leave out")
    args = ap.parse_args()
    config = json.loads(args.config)
    batches = [int(b) for b in args.batches.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    names = [n for n in RUNTIMES if n not in skip]
    model = random_cube(config)
    check = unit_rows(max(batches), model.cfg.d_in, 3)

    print(f"cube {json.dumps(config) if config else '(default config)'}: {model.parameter_count():,} parameters, "
          f"{model.flops_per_sample() / 1e6:.1f} MFLOP/vector; torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; median of {args.rounds} rounds of "
          f"{args.seconds:g} s ({args.clock} clock) per runtime, runtimes alternating\n")
    print("| threads | runtime | build + warm-up s | " + " | ".join(f"batch {b} vectors/s (x eager)" for b in batches)
          + " | max abs diff |")
    print("|---|---|---|" + "---|" * len(batches) + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            built = {name: build(name, model, batches, threads, Path(tmp)) for name in names}
            with torch.inference_mode():
                expected = model(check)
                diffs = {name: float((fn(check) - expected).abs().max()) for name, (fn, _) in built.items()}
                for b in batches:  # batch 1 may take another path than batch 64 (e.g. a compiled graph)
                    expected_b = model(check[:b])
                    for name, (fn, _) in built.items():
                        diffs[name] = max(diffs[name], float((fn(check[:b]) - expected_b).abs().max()))
            rates: dict[tuple[str, int], list[float]] = {}
            for b in batches:
                x = unit_rows(b, model.cfg.d_in, 4)
                for _ in range(args.rounds):
                    for name, (fn, _) in built.items():
                        rates.setdefault((name, b), []).append(throughput(fn, x, args.seconds, CLOCKS[args.clock]))
            for name, (_, build_s) in built.items():
                cells = []
                for b in batches:
                    rate = statistics.median(rates[(name, b)])
                    cells.append(f"{rate:,.0f} ({rate / statistics.median(rates[('eager', b)]):.2f}x)")
                print(f"| {threads} | {name} | {build_s:.1f} | " + " | ".join(cells) + f" | {diffs[name]:.1e} |")


if __name__ == "__main__":
    main()
