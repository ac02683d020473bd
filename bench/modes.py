"""The cube's other modes, each against its own strongest baseline, on chitchat.

    OMP_NUM_THREADS=1 .venv/bin/python bench/modes.py autoencoder [--texts 8000] [--seeds 3] [--k 16 32 64] [--loss L]
    OMP_NUM_THREADS=1 .venv/bin/python bench/modes.py translation [--pairs 4000] [--seeds 3] [--epochs 10]
    OMP_NUM_THREADS=1 .venv/bin/python bench/modes.py multi-teacher [--pairs 4000] [--seeds 3] [--epochs 12]

autoencoder: MiniLM vectors of the distinct texts (questions and replies) of the first chitchat
conversations, until `--texts` texts; each text is in the conversation where it first appears, and
the split is by conversation (80/10/10). For each code size k, `cube.experiment.run_experiment` in
mode autoencoder: the cube autoencoder and the linear, MLP (parameter-matched) and residual MLP
autoencoders, all started from PCA-k and trained with the same learning-rate budget chosen on
validation, `--seeds` seeds each; PCA-k and the mean as closed-form baselines. Test split, read once:
reconstruction cosine (mean cosine of x and its reconstruction), and R@1 / R@10 / MRR of each
reconstruction finding its original among all test originals.

translation: MiniLM (384d) -> mpnet (768d) on the texts of `chitchat_subset` (the question -> reply
rows of the first conversations, about `--pairs` rows). Every distinct text is one item, encoded by
both teachers through the embedding cache, in the conversation where it first appears; the split
is by conversation, 80/10/10. `cube.experiment.run_experiment` in mode translation: the cube,
the linear map, the parameter-matched MLP and the residual MLP, each started at the Procrustes map
of the training split with that start as their epoch-0 candidate, trained with the same learning-rate
budget chosen on validation, `--seeds` seeds each; Procrustes (zero-padded, semi-orthogonal), ridge
(lambda on validation), low-rank affine (rank and lambda on validation) and the mean as closed-form
baselines. The test split, read once: R@1 / R@10 of each text's own mpnet vector among all test
texts' mpnet vectors, and the recovery ratio of question -> reply R@10 (translated questions against
natively encoded replies, over native questions against them).

multi-teacher: the question -> reply rows of `chitchat_subset` (`--pairs`), questions encoded by
MiniLM, replies by MiniLM and by mpnet. `cube.distillation.run_multi_teacher`: one default cube with a
MiniLM head and an mpnet head, once with fixed and once with adaptive head weights, beside the cube
trained on each space alone and that space's baselines (`run_experiment`: ridge, identity and
Procrustes in MiniLM's space, the tuned linear map, MLP and residual MLP), same split, same
learning-rate budget, `--seeds` seeds; each space scored on its own test targets (read once).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHITCHAT = ROOT / "data" / "chitchat.jsonl"

# A small cube: the bench trains 3 code sizes x 4 methods x (3 learning rates + 2 seeds) on 2 shared cores.
AUTOENCODER_CUBE = {"grid": [4, 4, 4], "channels": 8, "hidden": 16, "steps": 3}


def chitchat_texts(path: Path, n_texts: int) -> tuple[list[str], list[str]]:
    """The distinct texts (input and target sides) of the first conversations of a `cube data chitchat`
    file, whole conversations only, until at least `n_texts`; each with its first conversation."""
    if not path.is_file():
        from cube.datasets import build_dataset

        print(f"building {path}", file=sys.stderr)
        build_dataset("chitchat", path)
    first_group: dict[str, str] = {}
    last_group = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if len(first_group) >= n_texts and row["group"] != last_group:
                break
            for text in (row["input"], row["target"]):
                first_group.setdefault(text, row["group"])
            last_group = row["group"]
    return list(first_group), list(first_group.values())


def encode_minilm(texts: list[str]) -> np.ndarray:
    from cube.commands import default_embedding_cache
    from cube.encoding import EmbeddingCache, EncodeStats, encode_texts
    from cube.teachers import get_teacher

    cache, stats, t0 = EmbeddingCache(default_embedding_cache()), EncodeStats(), time.perf_counter()
    try:
        x = encode_texts(texts, get_teacher("minilm"), cache, stats=stats)
    finally:
        cache.close()
    print(f"{len(texts)} texts: {stats.cache_hits} from the cache, {stats.encoded} encoded "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return x


def cmd_autoencoder(args: argparse.Namespace) -> int:
    from cube.config import RunConfig, TrainConfig
    from cube.experiment import run_experiment
    from cube.pairs import PairData
    from cube.report import text_table

    texts, groups = chitchat_texts(Path(args.data), args.texts)
    x = encode_minilm(texts)
    data = PairData(x, x, np.array(groups))
    train = TrainConfig(n_epochs=args.epochs, early_stopping_patience=3, loss=args.loss)
    out = Path(args.out)
    summary = {"texts": len(texts), "seeds": args.seeds, "cube": AUTOENCODER_CUBE, "train": train.to_dict(), "k": {}}
    for k in args.k:
        t0 = time.perf_counter()
        run = RunConfig(arch="cube", mode="autoencoder", model={**AUTOENCODER_CUBE, "code_size": k}, train=train)
        result = run_experiment(data, run, out / f"k{k}", seeds=args.seeds, log=lambda m: print(m, file=sys.stderr))
        report = result.report
        summary["n"] = report["n"]
        summary["k"][k] = {"methods": report["methods"], "intervals": report["intervals"], "info": report["info"],
                           "tuning": report["tuning"]["chosen"], "seconds": round(time.perf_counter() - t0)}
        print(f"\nk = {k} ({summary['k'][k]['seconds']} s)\n{text_table(report)}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + autoencoder_markdown(summary))
    return 0


def cmd_multi_teacher(args: argparse.Namespace) -> int:
    """One cube with a MiniLM head and an mpnet head, reading MiniLM questions, against the cube trained
    on each space alone and that space's baselines: once with fixed and once with adaptive head weights
    (two configurations, each under the same learning-rate budget; nothing is chosen on test)."""
    from cube.commands import default_embedding_cache
    from cube.config import RunConfig, TrainConfig
    from cube.distillation import MULTI, run_multi_teacher
    from cube.experiment import load_report
    from cube.multiteacher import encode_multi_teacher
    from cube.teachers import get_teacher
    from cube.textpairs import TextPairs

    rows = chitchat_subset(args.data, args.pairs)
    pairs = TextPairs([r["input"] for r in rows], [r["target"] for r in rows], [r["group"] for r in rows])
    minilm, mpnet = get_teacher("minilm"), get_teacher("mpnet")
    t0 = time.perf_counter()
    data, heads = encode_multi_teacher(pairs, minilm, [minilm, mpnet], default_embedding_cache())
    print(f"{len(data)} pairs encoded ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    out = Path(args.out)
    summary: dict = {"pairs": len(data), "seeds": args.seeds, "weightings": {}}
    single = None
    for weighting in ("fixed", "adaptive"):
        t0 = time.perf_counter()
        run = RunConfig(train=TrainConfig(n_epochs=args.epochs, early_stopping_patience=3, head_weighting=weighting))
        report = run_multi_teacher(data, heads, run, out / weighting, seeds=args.seeds, input_space="minilm",
                                   single=single, log=lambda m: print(m, file=sys.stderr)).report
        single = {h.name: load_report(out / "fixed" / "spaces" / h.name / "report.json") for h in heads}
        summary["n"] = report["n"]
        summary["weightings"][weighting] = {
            "seconds": round(time.perf_counter() - t0), "tuning": report["tuning"]["chosen"][MULTI],
            "weights_per_epoch": [{h.name: e[f"val_weight_{h.name}"] for h in heads} for e in report["history"]],
            "spaces": {name: {k: space[k] for k in ("methods", "intervals", "added")} for name, space in report["spaces"].items()}}
        print((out / weighting / "report.md").read_text(), flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + multi_teacher_markdown(summary))
    return 0


def multi_teacher_markdown(summary: dict) -> str:
    """Per space: the multi-head cube (fixed, adaptive), the cube alone and the baselines, R@1 / R@10 /
    MRR with 95% intervals; and what the other teacher added, paired by seed."""
    from cube.distillation import MULTI

    order = ["cube", "linear", "mlp", "resmlp", "ridge", "procrustes", "identity", "mean"]
    lines = []
    for name in summary["weightings"]["fixed"]["spaces"]:
        lines += [f"{name} space:", "", "| method | R@1 | R@10 | MRR |", "|---|---|---|---|"]
        rows = [(f"{MULTI} cube, {w} weights", res["spaces"][name], MULTI) for w, res in summary["weightings"].items()]
        alone = summary["weightings"]["fixed"]["spaces"][name]
        rows += [(m + (" (this space alone)" if m == "cube" else ""), alone, m) for m in order if m in alone["methods"]]
        for label, space, key in rows:
            m, ci = space["methods"][key], space["intervals"].get(key)

            def cell(metric: str) -> str:
                return f"{m[metric]:.3f}" + (f" [{ci[metric][0]:.3f}, {ci[metric][1]:.3f}]" if ci else "")

            lines.append(f"| {label} | {cell('recall_at_1')} | {cell('recall_at_10')} | {cell('mrr')} |")
        for w, res in summary["weightings"].items():
            added = res["spaces"][name]["added"]
            lines.append(f"\n{w} weights, {MULTI} minus the cube alone (paired by seed): " + ", ".join(
                f"{k} {v['mean']:+.3f}" + (f" [{v['interval'][0]:+.3f}, {v['interval'][1]:+.3f}]" if "interval" in v else "")
                for k, v in added.items()))
        lines.append("")
    return "\n".join(lines)


def autoencoder_markdown(summary: dict) -> str:
    """One table per k: reconstruction cosine, R@1, R@10, MRR with 95% intervals over seeds."""
    order = ["cube", "linear", "mlp", "resmlp", "pca", "mean"]
    lines = []
    for k, res in summary["k"].items():
        lines += [f"k = {k}:", "", "| method | reconstruction cosine | R@1 | R@10 | MRR |", "|---|---|---|---|---|"]
        for name in order:
            m, ci = res["methods"][name], res["intervals"].get(name)

            def cell(key: str) -> str:
                return f"{m[key]:.3f}" + (f" [{ci[key][0]:.3f}, {ci[key][1]:.3f}]" if ci else "")

            lines.append(f"| {name} | {cell('mean_cosine')} | {cell('recall_at_1')} | {cell('recall_at_10')} | {cell('mrr')} |")
        lines.append("")
    return "\n".join(lines)


def chitchat_subset(path: str | Path, n_pairs: int) -> list[dict]:
    """The rows of the first conversations of a `cube data chitchat` file, in file order, whole
    conversations only, until at least `n_pairs` rows: a deterministic subset others can reuse (its
    vectors are in the embedding cache once encoded)."""
    path = Path(path)
    if not path.is_file():
        from cube.datasets import build_dataset

        print(f"building {path}", file=sys.stderr)
        build_dataset("chitchat", path)
    rows: list[dict] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if len(rows) >= n_pairs and row["group"] != rows[-1]["group"]:
                break
            rows.append(row)
    return rows


def _interval(report: dict, method: str, key: str) -> str:
    value = report["methods"][method][key]
    ci = report["intervals"].get(method, {}).get(key)
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{value:.4f}"


def translation_table(report: dict) -> str:
    """Per method: R@1, R@10, recovery ratio (mean and 95% interval over seeds where trained)."""
    order = ["cube", "resmlp", "mlp", "linear", "procrustes", "lowrank", "ridge", "mean"]
    lines = ["| method | R@1 | R@10 | recovery ratio | chosen on validation |", "|---|---|---|---|---|"]
    for name in [m for m in order if m in report["methods"]]:
        chosen = report["tuning"]["chosen"].get(name)
        what = (f"lr {chosen['learning_rate']:g}, best epoch {chosen['best_epoch']}" if chosen
                else ", ".join(f"{k} {v:g}" for k, v in report["info"].get(name, {}).items() if k != "val_mrr"))
        lines.append(f"| {name} | {_interval(report, name, 'recall_at_1')} | {_interval(report, name, 'recall_at_10')} "
                     f"| {_interval(report, name, 'recovery_ratio')} | {what or '-'} |")
    return "\n".join(lines)


def start_table(report: dict) -> str:
    """Did training beat the Procrustes start on validation? Per trained method and learning rate."""
    monitor = report["tuning"]["monitor"]
    lines = [f"| method | learning rate | validation {monitor} at the start (epoch 0) | best trained epoch's | "
             "best epoch |", "|---|---|---|---|---|"]
    for name, chosen in report["tuning"]["chosen"].items():
        for t in chosen["trials"]:
            lines.append(f"| {name} | {t['learning_rate']:g} | {t[f'val_{monitor}_at_start']:.4f} | "
                         f"{t[f'val_{monitor}_best_trained_epoch']:.4f} | {t['best_epoch']} |")
    return "\n".join(lines)


def cmd_translation(args: argparse.Namespace) -> int:
    from cube.commands import default_embedding_cache
    from cube.config import RunConfig, TrainConfig
    from cube.experiment import run_experiment
    from cube.teachers import get_teacher
    from cube.translation import encode_translation, text_items

    rows = chitchat_subset(args.data, args.pairs)
    items = text_items([(r["input"], r["target"]) for r in rows], [r["group"] for r in rows])
    t0 = time.perf_counter()
    data = encode_translation(items, get_teacher("minilm"), get_teacher("mpnet"), default_embedding_cache(),
                              progress=lambda done, total: print(f"  encoded {done}/{total}", file=sys.stderr))
    print(f"{len(rows)} rows of {len({r['group'] for r in rows})} conversations: {len(items)} texts, "
          f"{len(items.links)} question -> reply links; encoded in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    train = TrainConfig(n_epochs=args.epochs, early_stopping_patience=args.patience, tuning_budget=args.budget)
    run = RunConfig(arch="cube", mode="translation", train=train)
    t0 = time.perf_counter()
    result = run_experiment(data, run, Path(args.out), seeds=args.seeds, log=lambda m: print(m, file=sys.stderr))
    report = result.report
    t = report["translation"]
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/modes.py " + shlex.join(sys.argv[1:])
    print(f"`{command}` ({time.perf_counter() - t0:.0f} s of training)\n\n"
          f"{report['n']['train']} / {report['n']['val']} / {report['n']['test']} texts (train / validation / "
          f"test); {t['test_links']} question -> reply links in the test split, native mpnet question -> reply "
          f"R@10 {t['native_qa_recall_at_10']:.4f}; {args.seeds} seeds.\n")
    print(translation_table(report) + "\n")
    print(start_table(report))
    return 0


def mode_parser(sub, name: str, help: str, *, epochs: int, func) -> argparse.ArgumentParser:
    """A subcommand with the options every mode's bench has: its data, seeds, epochs and output."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--data", default=str(CHITCHAT), help="a `cube data chitchat` JSONL (built if missing)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=epochs, help="at most this many epochs per run (early stopping)")
    p.add_argument("--out", default=str(ROOT / "runs" / f"modes-{name}"))
    p.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = mode_parser(sub, "autoencoder", "cube vs PCA vs linear/MLP/residual-MLP autoencoders at several code sizes",
                    epochs=20, func=cmd_autoencoder)
    p.add_argument("--texts", type=int, default=8000, help="distinct texts to take from the first conversations")
    p.add_argument("--k", type=int, nargs="+", default=[16, 32, 64], help="code sizes")
    p.add_argument("--loss", choices=["infonce", "cosine", "mse"], default="infonce",
                   help="the trained methods' loss (infonce: retrieval; cosine, mse: reconstruction)")
    p = mode_parser(sub, "translation", "MiniLM -> mpnet on chitchat texts", epochs=10, func=cmd_translation)
    p.add_argument("--pairs", type=int, default=4000, help="rows of the first conversations (whole conversations)")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--budget", type=int, default=3, help="learning rates tried per trained method")
    p = mode_parser(sub, "multi-teacher", "one cube with a MiniLM and an mpnet head vs the cube on each space alone",
                    epochs=12, func=cmd_multi_teacher)
    p.add_argument("--pairs", type=int, default=4000, help="question -> reply rows of the first conversations")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
