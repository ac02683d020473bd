"""Held-out quality on chitchat: the cube beside every baseline, on one split by conversation.

    .venv/bin/python bench/quality.py [--seeds 3] [--train-pairs N] [--epochs E] [--cube KEY=VALUE ...]
    .venv/bin/python bench/quality.py --sweep   # pick cube settings: prints VALIDATION figures only

Data: `cube data chitchat` pairs (question turn -> reply), encoded by the minilm teacher through the
embedding cache, split 80/10/10 by conversation id (no chat in two splits). The test split (about
2,500 pairs) ranks each question's true reply among all test replies; it is read once, after every
method has trained, and never used to choose anything. Ridge's lambda, early stopping and `--sweep`
use the validation split.

Methods: identity, mean target, ridge, Procrustes (closed form, deterministic), and the linear map,
a parameter-matched MLP and the cube, trained with the same trainer, InfoNCE loss and schedule over
`--seeds` seeds (mean and 95% Student-t interval). `--train-pairs` subsamples whole training
conversations and `--epochs` caps training, because the cube trains at a few hundred pairs per
second on 2 CPU cores; the figures say what was run.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cube.baselines import Identity, MeanTarget, Procrustes, Ridge  # noqa: E402
from cube.commands import default_embedding_cache, parse_value  # noqa: E402
from cube.config import SplitConfig, TrainConfig  # noqa: E402
from cube.experiment import summarise  # noqa: E402
from cube.metrics import evaluate_predictions  # noqa: E402
from cube.models import build_model, mlp_hidden_for_params, parameter_count  # noqa: E402
from cube.pairs import PairData, split_pairs  # noqa: E402
from cube.report import markdown_table  # noqa: E402
from cube.trainer import fit, predict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Candidate cube settings for --sweep, judged on validation MRR with one seed.
SWEEP = {
    "default": {},
    "default-lr5e-4": {"learning_rate": 5e-4},
    "grid4x4x6-lr5e-4": {"grid": [4, 4, 6], "learning_rate": 5e-4},
    "grid4x4x6-c16-t4-lr5e-4": {"grid": [4, 4, 6], "channels": 16, "steps": 4, "learning_rate": 5e-4},
}
TRAIN_KEYS = {"learning_rate", "n_epochs", "batch_size", "temperature", "weight_decay"}


def load_chitchat(path: Path, cache_dir: Path) -> PairData:
    from cube.datasets import build_dataset
    from cube.encoding import encode_text_pairs_with_stats
    from cube.teachers import get_teacher
    from cube.textpairs import load_text_pairs

    if not path.is_file():
        print(f"building {path}", file=sys.stderr)
        build_dataset("chitchat", path)
    text_pairs = load_text_pairs(path)
    t0 = time.perf_counter()
    data, stats = encode_text_pairs_with_stats(text_pairs, get_teacher("minilm"), cache_dir)
    print(f"{len(data)} pairs; {stats.cache_hits} texts from the cache, {stats.encoded} encoded "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return data


def subsample_groups(data: PairData, idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """About n pairs of `idx`, taking whole conversations in a seeded random order."""
    if not n or n >= len(idx):
        return idx
    groups = data.groups[idx]
    order = np.random.default_rng(seed).permutation(np.unique(groups))
    keep, count = set(), 0
    sizes = dict(zip(*np.unique(groups, return_counts=True)))
    for g in order:
        if count >= n:
            break
        keep.add(g)
        count += sizes[g]
    return idx[np.isin(groups, list(keep))]


def split_settings(settings: dict) -> tuple[dict, dict]:
    model = {k: v for k, v in settings.items() if k not in TRAIN_KEYS}
    train = {k: v for k, v in settings.items() if k in TRAIN_KEYS}
    return model, train


def train_one(arch: str, config: dict, cfg: TrainConfig, tr: PairData, va: PairData):
    torch.manual_seed(cfg.seed)
    model = build_model(arch, config)
    t0 = time.perf_counter()
    result = fit(model, (tr.input, tr.target), (va.input, va.target), cfg)
    return model, result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "chitchat.jsonl"))
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train-pairs", type=int, default=0, help="subsample training conversations to about N pairs (0: all)")
    ap.add_argument("--epochs", type=int, default=TrainConfig().n_epochs)
    ap.add_argument("--cube", action="append", default=[], metavar="KEY=VALUE",
                    help="settings of a second, tuned cube (model fields or learning_rate etc.); repeatable")
    ap.add_argument("--sweep", nargs="*", metavar="NAME", default=None,
                    help="compare SWEEP cube settings (all, or those named) on the validation split only")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-quality"))
    args = ap.parse_args()
    command = "python bench/quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    torch.set_num_threads(max(1, torch.get_num_threads()))

    data = load_chitchat(Path(args.data), Path(args.cache_dir) if args.cache_dir else default_embedding_cache())
    split = split_pairs(data, SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=0))
    train_idx = subsample_groups(data, split.train, args.train_pairs, seed=0)
    tr, va, te = data.subset(train_idx), data.subset(split.val), data.subset(split.test)
    leaks = set(tr.groups) & set(te.groups) | set(tr.groups) & set(va.groups) | set(va.groups) & set(te.groups)
    assert not leaks and len(te) >= 2000, (len(leaks), len(te))
    dims = {"d_in": data.dim_in, "d_out": data.dim_out}
    base_cfg = TrainConfig(n_epochs=args.epochs, device="cpu")
    print(f"split by conversation: {len(tr)} train (of {len(split.train)}), {len(va)} validation, {len(te)} test pairs",
          file=sys.stderr)

    if args.sweep is not None:
        print("| cube settings | parameters | val R@10 | val MRR | best epoch | seconds |\n|---|---|---|---|---|---|")
        for name, settings in SWEEP.items():
            if args.sweep and name not in args.sweep:
                continue
            model_s, train_s = split_settings(settings)
            model, result, secs = train_one("cube", {**dims, **model_s}, replace(base_cfg, **train_s), tr, va)
            best = result.history[result.best_epoch - 1]
            print(f"| {name} {settings} | {parameter_count(model):,} | {best['val_recall_at_10']:.3f} | "
                  f"{best['val_mrr']:.3f} | {result.best_epoch} | {secs:.0f} |", flush=True)
        return

    target_mean = tr.target.astype(np.float64).mean(axis=0)
    results: dict[str, list[dict]] = {}
    info: dict[str, dict] = {}
    for baseline in (Identity(), MeanTarget(), Ridge(), Procrustes()):
        baseline.fit((tr.input, tr.target), (va.input, va.target))
        results[baseline.name] = [evaluate_predictions(baseline.predict(te.input), te.target, target_mean)]

    tuned = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.cube)}
    trained = {"cube": ({**dims}, {})}
    if tuned:
        model_s, train_s = split_settings(tuned)
        trained["cube-tuned"] = ({**dims, **model_s}, train_s)
    cube_params = parameter_count(build_model("cube", dims))
    trained["linear"] = ({**dims}, {})
    trained["mlp"] = ({**dims, "hidden": mlp_hidden_for_params(data.dim_in, data.dim_out, cube_params)}, {})
    for name, (config, train_s) in trained.items():
        arch = "cube" if name.startswith("cube") else name
        for seed in range(args.seeds):
            cfg = replace(base_cfg, seed=seed, **train_s)
            model, result, secs = train_one(arch, config, cfg, tr, va)
            results.setdefault(name, []).append(evaluate_predictions(predict(model, te.input), te.target, target_mean))
            info.setdefault(name, {"parameters": parameter_count(model), "config": config, "train": train_s,
                                   "best_epochs": [], "seconds": []})
            info[name]["best_epochs"].append(result.best_epoch)
            info[name]["seconds"].append(round(secs))
            print(f"{name} seed {seed}: best epoch {result.best_epoch}/{result.epochs_run}, {secs:.0f} s, "
                  f"test R@10 {results[name][-1]['recall_at_10']:.3f}", file=sys.stderr, flush=True)

    methods, intervals = {}, {}
    for name, runs in results.items():
        methods[name], ci = summarise(runs)
        if ci:
            intervals[name] = ci
    report = {"n": {"train": len(tr), "val": len(va), "test": len(te)}, "main": None, "seeds": args.seeds,
              "methods": methods, "intervals": intervals, "info": info, "command": command,
              "train": base_cfg.to_dict()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))

    best_linear = max(methods[m]["recall_at_10"] for m in ("linear", "ridge", "procrustes"))
    print(f"`{command}`\n\n{len(tr)} training, {len(va)} validation, {len(te)} test pairs (split by conversation); "
          f"trained methods: {args.seeds} seeds, at most {args.epochs} epochs, early stopping on validation MRR.\n")
    print(markdown_table(report))
    print()
    for name in trained:
        i = info[name]
        print(f"- {name}: {i['parameters']:,} parameters, best epochs {i['best_epochs']}, seconds per seed {i['seconds']}")
    print(f"- identity R@10 {methods['identity']['recall_at_10']:.3f}; best method "
          f"{max(methods, key=lambda m: methods[m]['recall_at_10'])}; best linear baseline R@10 {best_linear:.3f}; "
          f"cube - identity {100 * (methods['cube']['recall_at_10'] - methods['identity']['recall_at_10']):+.1f} points, "
          f"cube - best linear {100 * (methods['cube']['recall_at_10'] - best_linear):+.1f} points")


if __name__ == "__main__":
    main()
