"""Sweeps measured: what pruning saves, and what a second worker buys.

    python bench/sweep.py pruning [--data chitchat|synthetic] [--trials 12] [--epochs 8] [--train-pairs N]
                                  [--pruners median halving]
    python bench/sweep.py workers [--trials 4] [--epochs 6]
    python bench/sweep.py quality --data chitchat [--hours 2] [--seeds 3] [--epochs 8]

pruning: the same search (space below, the same sampler seed) run in this process without pruning
and with each pruner (median, successive halving, at their defaults); prints each run's best
validation score, the epochs it trained in all, and its wall time. Validation only: nothing here reads a test split.

workers: a sweep on the embedded service (SQLite, the SQL broker, `cube worker` processes with one
torch thread each, so two workers use the two cores without fighting) with `max_parallel=2`, once
with one worker and once with two; prints the wall time from POST to the registered version and
each trial's start and end, which show whether trials overlapped.

quality: does a search find a better cube? A search of at most `--hours` (successive halving, the
space QUALITY_SPACE) on the training split, scored on validation; then the chosen cube and the
default cube, each with the same learning-rate budget chosen on validation (cube.tuning, 3 rates
around its own), trained with `--seeds` seeds and judged once on the test split. Prints R@10 and
MRR with 95% intervals and whether the chosen cube's R@10 is above the default's outside both
intervals.

Data: chitchat question -> reply pairs encoded by minilm (bench/quality.py's loader and split), or
synthetic 64d pairs with a known nonlinear map (`--data synthetic`, minutes instead of hours).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cube.config import RunConfig, SplitConfig, TrainConfig  # noqa: E402
from cube.pairs import PairData, split_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = {
    "grid": [[4, 4, 4], [4, 4, 6]],
    "channels": [8, 16],
    "steps": {"low": 2, "high": 6, "step": 2},
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
}


# The quality search: the cube's shape and learning settings (the default cube is one of its points).
QUALITY_SPACE = {
    "grid": [[4, 4, 4], [4, 4, 6], [6, 6, 6]],
    "channels": [8, 16, 32],
    "steps": {"low": 2, "high": 8, "step": 2},
    "hidden": [16, 32, 64],
    "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
    "temperature": {"low": 0.02, "high": 0.1, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
}


def load(which: str, train_pairs: int) -> PairData:
    if which == "synthetic":
        from cube.synthetic import nonlinear_pairs

        return nonlinear_pairs(n=6000, d_in=64, d_out=64, seed=0)
    from bench.quality import load_chitchat, subsample_groups
    from cube.commands import default_embedding_cache

    data = load_chitchat(ROOT / "data" / "chitchat.jsonl", default_embedding_cache())
    if train_pairs:
        split = split_pairs(data, SplitConfig(seed=0))
        keep = np.concatenate([subsample_groups(data, split.train, train_pairs, seed=0), split.val, split.test])
        data = data.subset(np.sort(keep))
    return data


def search(data: PairData, trials: int | None, epochs: int, pruner: str, seed: int, space: dict = SPACE,
           timeout: float | None = None) -> dict:
    """One in-process search; returns its best validation score and point, epochs trained and wall time."""
    import optuna

    from cube.search_space import parse_space
    from cube.sweep import make_objective, make_pruner, trial_row

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = RunConfig(train=TrainConfig(n_epochs=epochs, early_stopping_patience=0, tuning_budget=1, device="cpu"))
    split = split_pairs(data, base.split)
    space = parse_space(space)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=make_pruner({"kind": pruner}))

    def show(study_, trial) -> None:
        row = trial_row(trial)  # every epoch a trial ran was reported to the pruner: `epochs` counts them
        print(f"  [{pruner}] trial {row['number']}: {row['state']} after {row['epochs']} epoch(s), "
              f"best val MRR {max(trial.intermediate_values.values()):.4f}; {row['params']}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    study.optimize(make_objective(data, split, space, base, "val_mrr"), n_trials=trials, timeout=timeout,
                   callbacks=[show])
    return {"best": study.best_value, "point": study.best_trial.user_attrs["point"], "trials": len(study.trials),
            "epochs": sum(len(t.intermediate_values) for t in study.trials), "seconds": time.perf_counter() - t0,
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)}


def cmd_pruning(args) -> None:
    data = load(args.data, args.train_pairs)
    print(f"{len(data)} pairs ({args.data}); {args.trials} trials of {args.epochs} epochs; space {SPACE}", file=sys.stderr)
    rows = {kind: search(data, args.trials, args.epochs, kind, args.seed) for kind in ("none", *args.pruners)}
    print("| pruner | best val MRR | epochs trained | pruned trials | wall s |\n|---|---|---|---|---|")
    for kind, r in rows.items():
        print(f"| {kind} | {r['best']:.4f} | {r['epochs']} | {r['pruned']} | {r['seconds']:.0f} |")
    for kind in args.pruners:
        saved = 1 - rows[kind]["epochs"] / rows["none"]["epochs"]
        gap = rows["none"]["best"] - rows[kind]["best"]
        print(f"{kind} pruner: {saved:.0%} fewer epochs; best val MRR {gap:+.4f} below the unpruned search "
              f"(target: >= 40% fewer, within 0.005)")


def cmd_workers(args) -> None:
    from app.migrate import upgrade
    from tests.e2e.test_service_e2e import Service, wait_for

    data = load(args.data, args.train_pairs)
    rows = []
    for n_workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "data"
            root.mkdir()
            db = f"sqlite:///{root / 'cube.db'}"
            upgrade(db)
            service = Service(db, f"sqla+sqlite:///{root / 'broker.db'}", root)
            try:
                for _ in range(n_workers):
                    service.start_worker()
                ds = service.upload(data)
                t0 = time.time()
                r = service.client.post("/v1/sweeps", json={
                    "dataset_id": ds, "model": "bench", "search_space": SPACE, "n_trials": args.trials,
                    "max_parallel": 2, "pruner": {"kind": "none"},
                    "hyperparameters": {"n_epochs": args.epochs, "early_stopping_patience": 0, "tuning_budget": 1}})
                assert r.status_code == 202, r.text
                sweep_id = r.json()["id"]
                done = wait_for(lambda: (s := service.client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "running"
                                and s, 4 * 3600, "the sweep", interval=1.0)
                wall = time.time() - t0
                assert done["status"] == "succeeded", done
                trials = service.client.get(f"/v1/sweeps/{sweep_id}/trials").json()["data"]
            finally:
                service.close()
        spans = [(t["number"], t["started_at"] - t0, t["finished_at"] - t0) for t in trials]
        overlap = sum(max(0.0, min(a[2], b[2]) - max(a[1], b[1])) for i, a in enumerate(spans) for b in spans[i + 1:])
        rows.append((n_workers, wall, overlap, spans))
        print(f"{n_workers} worker(s): {wall:.0f} s; trials (start, end) s: "
              + ", ".join(f"#{n} {s:.0f}-{e:.0f}" for n, s, e in spans), file=sys.stderr, flush=True)
    print("| workers | sweep wall s (POST -> version) | trial-seconds overlapping | trials (start-end s) |\n|---|---|---|---|")
    for n, wall, overlap, spans in rows:
        print(f"| {n} | {wall:.0f} | {overlap:.0f} | " + ", ".join(f"#{k} {s:.0f}-{e:.0f}" for k, s, e in spans) + " |")
    print(f"\ntwo workers: {rows[0][1] / rows[1][1]:.2f}x the speed of one (CUBE_TORCH_THREADS=1 per worker)")


def cmd_quality(args) -> None:
    from dataclasses import replace

    import torch

    from cube.experiment import summarise
    from cube.metrics import evaluate_predictions
    from cube.models import build_model
    from cube.sweep import final_config
    from cube.trainer import fit, predict
    from cube.tuning import tune

    data = load(args.data, args.train_pairs)
    found = search(data, None, args.epochs, "halving", args.seed, QUALITY_SPACE, timeout=args.hours * 3600)
    print(f"search: {found['trials']} trials in {found['seconds'] / 60:.0f} min, best val MRR {found['best']:.4f}: "
          f"{found['point']}", file=sys.stderr, flush=True)
    base = RunConfig(train=TrainConfig(n_epochs=args.epochs, device="cpu"))  # tuning_budget 3, early stopping on
    chosen = final_config(base, found["point"], "val_mrr")
    split = split_pairs(data, base.split)
    tr, va, te = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    target_mean = tr.target.astype(np.float64).mean(axis=0)
    rows = {}
    searched = {k: v for k, v in found["point"].items() if k != "learning_rate"}
    for name, run, settings in (("default cube", base, "defaults"), ("chosen cube", chosen, searched)):
        config = {"d_in": data.dim_in, "d_out": data.dim_out, **run.model}
        tuned = tune(lambda: build_model("cube", config), (tr.input, tr.target), (va.input, va.target), run.train)
        models = [tuned.model]
        for i in range(1, args.seeds):
            cfg = replace(tuned.cfg, seed=run.train.seed + i)
            torch.manual_seed(cfg.seed)
            model = build_model("cube", config)
            fit(model, (tr.input, tr.target), (va.input, va.target), cfg)
            models.append(model)
        scores = [evaluate_predictions(predict(m, te.input), te.target, target_mean) for m in models]  # test: once each
        rows[name] = (summarise(scores), tuned.cfg.learning_rate, settings)
        print(f"{name}: learning rate {tuned.cfg.learning_rate:g}, {settings}", file=sys.stderr, flush=True)
    print(f"| cube | settings | test R@10 (95% interval) | test MRR |\n|---|---|---|---|")
    for name, ((mean, ci), lr, settings) in rows.items():
        interval = f" ({ci['recall_at_10'][0]:.3f}-{ci['recall_at_10'][1]:.3f})" if ci else ""
        print(f"| {name} | {settings}, lr {lr:g} | {mean['recall_at_10']:.3f}{interval} | {mean['mrr']:.3f} |")
    (d_mean, d_ci), (c_mean, c_ci) = rows["default cube"][0], rows["chosen cube"][0]
    apart = bool(d_ci and c_ci) and c_ci["recall_at_10"][0] > d_ci["recall_at_10"][1]
    print(f"\nchosen - default R@10: {c_mean['recall_at_10'] - d_mean['recall_at_10']:+.3f}; "
          f"{'outside' if apart else 'NOT outside'} both 95% intervals ({args.seeds} seeds each)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["pruning", "workers", "quality"])
    ap.add_argument("--data", choices=["chitchat", "synthetic"], default="synthetic")
    ap.add_argument("--train-pairs", type=int, default=0,
                    help="chitchat: a smaller set, about N pairs of bench/quality.py's training conversations plus all "
                         "its validation and test conversations, then split again 80/10/10 by conversation (0: all)")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hours", type=float, default=2.0, help="quality: the search's time budget")
    ap.add_argument("--seeds", type=int, default=3, help="quality: seeds of each cube on the test split")
    ap.add_argument("--pruners", nargs="+", choices=["median", "halving"], default=["median", "halving"],
                    help="pruning: the pruners run beside the unpruned search")
    args = ap.parse_args()
    {"pruning": cmd_pruning, "workers": cmd_workers, "quality": cmd_quality}[args.what](args)


if __name__ == "__main__":
    main()
