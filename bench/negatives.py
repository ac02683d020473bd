"""Exact top-k nearest targets for hard-negative mining: the sampler's chunked matmul + topk against
FAISS's exact inner-product index (IndexFlatIP), on the same unit vectors.

    python bench/negatives.py [--targets 100000] [--queries 100000] [--dim 384] [--k 8]

FAISS is optional (`pip install faiss-cpu`); without it only the matmul path is timed. Both search
for the same number of candidates (2k + 16, what the sampler takes before its false-negative guard),
and the script checks they agree. It also times the sampler's whole `mine` (search + guard).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from cube.negatives import CHUNK_VALUES, HardNegativeSampler


def matmul_topk(queries: torch.Tensor, targets: torch.Tensor, m: int) -> torch.Tensor:
    chunk = max(1, CHUNK_VALUES // targets.shape[0])
    return torch.cat([(queries[i : i + chunk] @ targets.T).topk(m, dim=1).indices
                      for i in range(0, len(queries), chunk)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=8)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    targets = F.normalize(torch.randn(args.targets, args.dim, generator=gen), dim=-1)
    inputs = F.normalize(torch.randn(args.targets, args.dim, generator=gen), dim=-1)
    queries = F.normalize(targets[: args.queries] + 0.5 * torch.randn(args.queries, args.dim, generator=gen) / args.dim**0.5, dim=-1)
    m = 2 * args.k + 16
    print(f"{args.queries:,} queries x {args.targets:,} targets x {args.dim}d, top-{m}, "
          f"{torch.get_num_threads()} torch threads")

    t0 = time.perf_counter()
    ours = matmul_topk(queries, targets, m)
    t_mm = time.perf_counter() - t0
    print(f"matmul + topk (chunked):  {t_mm:7.2f} s  {args.queries / t_mm:9,.0f} queries/s")

    try:
        import faiss
    except ImportError:
        print("faiss not installed: skipped")
    else:
        index = faiss.IndexFlatIP(args.dim)
        index.add(targets.numpy())
        t0 = time.perf_counter()
        _, theirs = index.search(queries.numpy(), m)
        t_fs = time.perf_counter() - t0
        agree = float((np.sort(theirs, axis=1) == np.sort(ours.numpy(), axis=1)).mean())
        print(f"faiss IndexFlatIP:        {t_fs:7.2f} s  {args.queries / t_fs:9,.0f} queries/s "
              f"({faiss.omp_get_max_threads()} threads; same neighbours: {agree:.4f})")

    if args.queries == args.targets:
        sampler = HardNegativeSampler(inputs, targets, args.k)
        t0 = time.perf_counter()
        sampler.mine(queries)
        t_mine = time.perf_counter() - t0
        print(f"sampler.mine (k={args.k}, with guard): {t_mine:7.2f} s")


if __name__ == "__main__":
    main()
