"""Ablation on chitchat: the base cube, each learning method switched on alone and all together,
beside every tuned baseline, on one split and the same seeds.

    .venv/bin/python bench/ablation.py [--seeds 3] [--epochs 4] [--rows NAME ...] [--threads N]
    .venv/bin/python bench/ablation.py --extra data/chitchat-all.jsonl --encode-only   # warm the cache
    .venv/bin/python bench/ablation.py --report          # the table from the runs recorded so far

Data: `cube data chitchat` question turn -> reply pairs (minilm, through the embedding cache), split
80/10/10 by conversation id with seed 0, as bench/quality.py. Rows marked "+ other turns" also
train on the other turn -> reply pairs (`cube data chitchat --pairs all`) of a seeded random
`--extra-fraction` of the training conversations (a CPU budget: encoding all 82k further texts
takes over an hour here), combined as `cube train --data q.jsonl --data all.jsonl
--set eval_filter=question` does; their validation and test pairs are the same question turns, so
every row is scored on the same pairs.

Protocol (the same for every row):
- a row is a method (cube, linear, mlp, resmlp) plus settings; closed-form baselines (identity,
  ridge with lambda on validation, Procrustes) have no seeds;
- a tuned row (every baseline and the base cube) tries the learning rates of
  `cube.tuning.learning_rate_grid` (TUNE_FROM, budget 3) on seed 0 and keeps the best validation
  MRR; its other seeds run at that rate. A row that switches methods on (the method's own setting
  is the one given here) runs at TUNE_FROM for the cube (the rate bench/quality.py --sweep chose on
  validation for the base cube) or at the chosen rate of the linear row, and runs seed 0 only, as a
  screen on validation against the base's seed 0 at that rate, unless it is named in --full
  (default: "cube + all methods");
- every run stops early on validation MRR (at most --epochs epochs, patience 2) and keeps its best
  epoch; nothing is chosen on the test split. Each run's test metrics are computed when it ends and
  only read by --report;
- pairs/s: training pairs per second of wall time, validation passes included.

Each finished run is appended to OUT/runs.jsonl, so an interrupted bench resumes where it stopped
and rows can be added later; a row whose settings the library does not know yet is skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.quality import load_chitchat  # noqa: E402
from cube.baselines import Identity, Procrustes, Ridge  # noqa: E402
from cube.commands import default_embedding_cache  # noqa: E402
from cube.config import CubeConfig, SplitConfig, TrainConfig  # noqa: E402
from cube.experiment import summarise  # noqa: E402
from cube.metrics import evaluate_predictions, retrieval_metrics  # noqa: E402
from cube.models import build_model, parameter_count  # noqa: E402
from cube.pairs import PairData, concat_pairs, split_pairs  # noqa: E402
from cube.trainer import fit, predict  # noqa: E402
from cube.tuning import learning_rate_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The base cube: bench/RESULTS.md ("Quality on chitchat") measured it 5x faster than the default
# grid and better on validation.
BASE_CUBE = {"grid": [4, 4, 6], "channels": 16, "steps": 4}
TUNE_FROM = 5e-4  # the grid is 5e-4, 1.25e-4, 2e-3 for every tuned row
BASE = "cube (base)"


def row(name, arch, settings=None, *, base=None, extra=None) -> dict:
    """base: the row whose chosen learning rate this one reuses (None: tuned itself);
    extra: train on the other turns too, {"weight": w[, "max_difficulty": d]}."""
    return {"name": name, "arch": arch, "settings": settings or {}, "base": base, "extra": extra}


BASELINE_ROWS = [
    row("linear", "linear"),
    row("mlp", "mlp", {"hidden": 1024, "input_norm": True}),
    row("resmlp", "resmlp", {"hidden": 1024}),
    row(BASE, "cube"),
]
# One learning method switched on at a time: (name, settings, part of "all methods"), with the
# settings docs/learning.md describes. Triplet is another loss, not an addition, so "all methods"
# keeps InfoNCE (with the mined negatives).
METHODS: list[tuple[str, dict, bool]] = [
    ("hard negatives", {"hard_negatives": 8}, True),
    ("triplet + hard negatives", {"loss": "triplet", "hard_negatives": 8}, False),
    ("curriculum", {"curriculum": "linear", "curriculum_epochs": 3}, True),
    ("dropout", {"dropout": 0.1}, True),
    ("steps jitter", {"steps_jitter": 1}, True),
    ("state penalty", {"state_penalty": 0.1}, True),
    ("low-rank read-in", {"read_in": "lowrank", "read_in_rank": 32}, True),
    ("read-in/out weight decay", {"io_weight_decay": 0.1}, True),
    ("input noise", {"input_noise": 0.1}, True),
    ("collapse guard", {"spread_penalty": 0.1}, True),
]
EXPANSION_ROWS = [
    row("linear + other turns", "linear", base="linear", extra={"weight": 1.0}),
    row("linear + other turns, weight 0.25", "linear", base="linear", extra={"weight": 0.25}),
    row("linear + other turns, teacher cosine >= 0.3", "linear", base="linear", extra={"weight": 1.0, "max_difficulty": 0.7}),
    row("cube + other turns", "cube", base=BASE, extra={"weight": 1.0}),
    row("cube + other turns, weight 0.25", "cube", base=BASE, extra={"weight": 0.25}),
]


def all_rows() -> list[dict]:
    """In the order they run, most telling first (a bench cut short still has the comparison)."""
    merged: dict = {}
    for _, settings, in_all in METHODS:
        if in_all and known("cube", settings) is not None:  # what has landed
            merged.update(settings)
    together = [row("cube + all methods", "cube", merged, base=BASE)] if merged else []
    alone = [row(f"cube + {name}", "cube", settings, base=BASE) for name, settings, _ in METHODS]
    linear_more = [r for r in EXPANSION_ROWS if r["arch"] == "linear"]
    cube_more = [r for r in EXPANSION_ROWS if r["arch"] == "cube"]
    return BASELINE_ROWS + together + linear_more + alone + cube_more


def known(arch: str, settings: dict) -> tuple[dict, dict] | None:
    """(model settings, train settings), or None when a key is not a setting of this library."""
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    model_keys = {f.name for f in dataclasses.fields(CubeConfig)} if arch == "cube" else {"hidden", "input_norm"}
    model = {k: v for k, v in settings.items() if k in model_keys and k not in train_keys}
    train = {k: v for k, v in settings.items() if k in train_keys}
    return (model, train) if len(model) + len(train) == len(settings) else None


def run_key(name: str, seed: int, lr: float) -> str:
    return f"{name}|{seed}|{lr:.3g}"


def load_runs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def best_lr(runs, name: str) -> float | None:
    """The learning rate of the row's seed-0 run with the best validation MRR."""
    first = [r for r in runs if r["row"] == name and r["seed"] == 0]
    return max(first, key=lambda r: r["val"]["mrr"])["learning_rate"] if first else None


def extra_turns(path: Path, q: PairData, train_groups: set, fraction: float, cache_dir: Path) -> PairData:
    """The non-question turn pairs of a seeded `fraction` of the training conversations, encoded."""
    from cube.encoding import encode_text_pairs_with_stats
    from cube.teachers import get_teacher
    from cube.textpairs import TextPairs, load_text_pairs

    every = load_text_pairs(path)
    chosen = sorted(train_groups)
    chosen = set(np.random.default_rng(0).permutation(chosen)[: round(fraction * len(chosen))])
    keep = [i for i, (g, flag) in enumerate(zip(every.groups, every.question)) if g in chosen and not flag]
    subset = TextPairs([every.inputs[i] for i in keep], [every.targets[i] for i in keep], [every.groups[i] for i in keep],
                       0, [False] * len(keep))
    t0 = time.perf_counter()
    data, stats = encode_text_pairs_with_stats(subset, get_teacher("minilm"), cache_dir)
    print(f"other turns of {len(chosen)} training conversations: {len(data)} pairs; {stats.cache_hits} texts from the "
          f"cache, {stats.encoded} encoded ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return data


def train_run(arch, model_cfg, cfg: TrainConfig, tr: PairData, va: PairData, te: PairData, target_mean, weights=None):
    torch.manual_seed(cfg.seed)
    model = build_model(arch, model_cfg)
    result = fit(model, (tr.input, tr.target), (va.input, va.target), cfg, sample_weights=weights)
    best = result.history[result.best_epoch - 1]
    return {
        "learning_rate": cfg.learning_rate, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "parameters": parameter_count(model), "seconds": round(result.seconds, 1), "train_pairs": len(tr),
        "pairs_per_s": round(result.epochs_run * len(tr) / result.seconds),
        "val": {k[4:]: best[k] for k in ("val_recall_at_1", "val_recall_at_10", "val_mrr")},
        "test": evaluate_predictions(predict(model, te.input), te.target, target_mean),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "chitchat.jsonl"))
    ap.add_argument("--extra", default=str(ROOT / "data" / "chitchat-all.jsonl"),
                    help="`cube data chitchat --pairs all` output, for the '+ other turns' rows")
    ap.add_argument("--extra-fraction", type=float, default=0.3)
    ap.add_argument("--encode-only", action="store_true", help="encode the data (into the cache) and exit")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rows", nargs="*", default=None, help="only these rows (default: all)")
    ap.add_argument("--full", nargs="*", default=["cube + all methods"],
                    help="rows that reuse a base's rate but still run every seed")
    ap.add_argument("--runs", nargs="*", default=None, metavar="LR:SEED",
                    help="only these (learning rate, seed) runs of the selected rows, e.g. to run a row's tries "
                         "in parallel processes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--report", action="store_true", help="print the table from OUT/runs.jsonl and exit")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-ablation"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.jsonl"
    if args.report:
        print_report(list({run_key(r["row"], r["seed"], r["learning_rate"]): r for r in load_runs(runs_path)}.values()))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python bench/ablation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_embedding_cache()

    data = load_chitchat(Path(args.data), cache_dir)
    split = split_pairs(data, SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=0))
    tr, va, te = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    assert not (set(tr.groups) & set(te.groups) or set(tr.groups) & set(va.groups) or set(va.groups) & set(te.groups))
    extra = None
    if args.extra and Path(args.extra).is_file():
        extra = extra_turns(Path(args.extra), data, set(tr.groups), args.extra_fraction, cache_dir)
    if args.encode_only:
        return
    target_mean = tr.target.astype(np.float64).mean(axis=0)
    dims = {"d_in": data.dim_in, "d_out": data.dim_out}
    print(f"split by conversation: {len(tr)} train, {len(va)} validation, {len(te)} test pairs", file=sys.stderr)
    base_cfg = TrainConfig(n_epochs=args.epochs, early_stopping_patience=2, device="cpu", learning_rate=TUNE_FROM,
                           tuning_budget=3)

    def training_set(spec: dict | None) -> tuple[PairData, np.ndarray | None]:
        """The question pairs of the training conversations, plus (spec) the other turns, weighted."""
        if spec is None:
            return tr, None
        q = PairData(data.input, data.target, data.groups, data.difficulty, np.ones(len(data), bool))
        more = extra if "max_difficulty" not in spec else extra.subset(np.flatnonzero(extra.difficulty <= spec["max_difficulty"]))
        both = concat_pairs([q, more])
        both_split = split_pairs(both, SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=0, eval_filter="question"))
        # The same validation and test pairs as every other row.
        assert np.array_equal(both.target[both_split.test], te.target) and np.array_equal(both.target[both_split.val], va.target)
        train = both.subset(both_split.train)
        return train, np.where(train.source == 0, 1.0, spec["weight"])

    def record(entry: dict) -> None:
        with runs_path.open("a") as f:
            f.write(json.dumps({**entry, "command": command}) + "\n")

    done = {run_key(r["row"], r["seed"], r["learning_rate"]): r for r in load_runs(runs_path)}
    for baseline in (Identity(), Ridge(), Procrustes()):
        if run_key(baseline.name, 0, 0) in done or (args.rows and baseline.name not in args.rows):
            continue
        t0 = time.perf_counter()
        baseline.fit((tr.input, tr.target), (va.input, va.target))
        seconds = time.perf_counter() - t0
        val = retrieval_metrics(baseline.predict(va.input), va.target)
        chosen = {"lambda": baseline.lam} if isinstance(baseline, Ridge) else {}
        entry = {"row": baseline.name, "arch": baseline.name, "settings": chosen, "seed": 0,
                 "learning_rate": 0, "val": {k: val[k] for k in ("recall_at_1", "recall_at_10", "mrr")},
                 "test": evaluate_predictions(baseline.predict(te.input), te.target, target_mean),
                 "pairs_per_s": None, "seconds": round(seconds, 1), "train_pairs": len(tr)}
        record(entry)
        done[run_key(baseline.name, 0, 0)] = entry

    for spec in all_rows():
        name, arch = spec["name"], spec["arch"]
        if args.rows and name not in args.rows:
            continue
        split_settings = known(arch, {**(BASE_CUBE if arch == "cube" else {}), **spec["settings"]})
        if split_settings is None:
            print(f"skipping {name}: {sorted(spec['settings'])} are not all settings of this library", file=sys.stderr)
            continue
        if spec["extra"] and extra is None:
            print(f"skipping {name}: no {args.extra}", file=sys.stderr)
            continue
        model_s, train_s = split_settings
        model_cfg = {**dims, **model_s}
        cfg = replace(base_cfg, **train_s)
        if spec["base"] is None:
            lrs, seeds = learning_rate_grid(cfg), range(args.seeds)
        else:
            # Cube rows run at TUNE_FROM, the rate bench/quality.py --sweep chose on validation for this
            # base cube, so they need not wait for the base's own tuning here (2 shared cores).
            lr = TUNE_FROM if spec["base"] == BASE else best_lr(done.values(), spec["base"])
            if lr is None:
                print(f"skipping {name}: {spec['base']} has not run yet", file=sys.stderr)
                continue
            lrs, seeds = [lr], range(args.seeds if name in args.full else 1)
        train, weights = training_set(spec["extra"])

        def run_once(lr: float, seed: int) -> None:
            key = run_key(name, seed, lr)
            # Other processes may share OUT (rows run in parallel): read what they finished.
            done.update({run_key(r["row"], r["seed"], r["learning_rate"]): r for r in load_runs(runs_path)})
            if key in done or (args.runs is not None and f"{lr:g}:{seed}" not in args.runs):
                return
            entry = {"row": name, "arch": arch, "settings": spec["settings"], "extra": spec["extra"], "seed": seed,
                     **train_run(arch, model_cfg, replace(cfg, learning_rate=lr, seed=seed), train, va, te, target_mean, weights)}
            record(entry)
            done[key] = entry
            print(f"{name} lr {lr:g} seed {seed}: val MRR {entry['val']['mrr']:.4f} R@10 {entry['val']['recall_at_10']:.4f}, "
                  f"best epoch {entry['best_epoch']}/{entry['epochs_run']}, {entry['pairs_per_s']} pairs/s",
                  file=sys.stderr, flush=True)

        for lr in lrs:  # seed 0 at every rate of the budget
            run_once(lr, 0)
        chosen = best_lr(done.values(), name)
        if args.runs is not None and chosen is None:
            continue
        for seed in seeds:
            run_once(chosen, seed)
    print_report(list(done.values()))


def print_report(runs: list[dict]) -> None:
    """One row per method: test metrics over the seeds at the chosen rate (mean ± 95% interval)."""
    rows: dict[str, list[dict]] = {}
    for r in runs:
        rows.setdefault(r["row"], []).append(r)
    print("| method | settings | train pairs | lr (chosen on val) | seeds | val MRR | val R@10 | test R@1 | test R@10 "
          "| test MRR | best epochs | pairs/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, entries in rows.items():
        lr = best_lr(entries, name)
        kept = sorted((r for r in entries if r["learning_rate"] == lr), key=lambda r: r["seed"])
        mean, ci = summarise([r["test"] for r in kept])
        val = np.mean([r["val"]["recall_at_10"] for r in kept])
        val_mrr = np.mean([r["val"]["mrr"] for r in kept])

        def cell(key: str) -> str:
            return f"{mean[key]:.3f} ± {(ci[key][1] - ci[key][0]) / 2:.3f}" if ci else f"{mean[key]:.3f}"

        settings = ", ".join(f"{k}={v}" for k, v in kept[0]["settings"].items()) or "-"
        epochs = ",".join(str(r.get("best_epoch", "-")) for r in kept)
        pps = "closed form" if kept[0]["pairs_per_s"] is None else f"{int(np.mean([r['pairs_per_s'] for r in kept])):,}"
        print(f"| {name} | {settings} | {kept[0].get('train_pairs', '-'):,} | {f'{lr:g}' if lr else '-'} | {len(kept)} | "
              f"{val_mrr:.3f} | {val:.3f} | {cell('recall_at_1')} | {cell('recall_at_10')} | {cell('mrr')} | {epochs} | {pps} |")


if __name__ == "__main__":
    main()
