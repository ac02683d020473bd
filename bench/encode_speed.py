"""Teacher encoding speed: cube.teachers vs sentence-transformers' `encode`, side by side in one run.

Same model directory (the bundled all-MiniLM-L6-v2), same texts, same batch size, same device and
thread count; both produce unit vectors. Runs alternate (ours, theirs, ours, ...) so a noisy machine
hurts both alike; the median of the repeats is reported, with the largest difference between the two
libraries' vectors as a check that both compute the same thing.

    .venv/bin/python bench/encode_speed.py [--n 1000] [--batch-size 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def sample_texts(n: int) -> list[str]:
    """Real chat turns (questions and replies) from chitchat-dataset: varied lengths, like real use."""
    from cube.datasets import chitchat_pairs

    texts, seen = [], set()
    for pair in chitchat_pairs():
        for t in (pair["input"], pair["target"]):
            if t not in seen:
                seen.add(t)
                texts.append(t)
        if len(texts) >= n:
            break
    return texts[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    from cube.teachers import get_teacher

    texts = sample_texts(args.n)
    ours = get_teacher("minilm", device="cpu")
    theirs = SentenceTransformer(str(ours.directory), device="cpu", local_files_only=True)
    theirs.max_seq_length = ours.spec.max_length
    ours.encode(texts[:64], batch_size=args.batch_size)  # load and warm up both
    theirs.encode(texts[:64], batch_size=args.batch_size)

    times: dict[str, list[float]] = {"cube.teachers": [], "sentence-transformers": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        a = ours.encode(texts, batch_size=args.batch_size)
        times["cube.teachers"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = theirs.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        times["sentence-transformers"].append(time.perf_counter() - t0)
    diff = float(np.abs(a - b).max())

    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"{len(texts)} chitchat texts (mean {words:.1f} words), batch {args.batch_size}, CPU, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} alternating runs; max |difference| {diff:.1e}\n")
    print("| encoder | seconds | texts/s | relative |")
    print("|---|---|---|---|")
    base = statistics.median(times["sentence-transformers"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {len(texts) / med:.0f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
