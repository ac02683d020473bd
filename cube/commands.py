"""Offline command-line commands of the cube library: `train`, `transform`, `synth`.

The service's CLI (`app.cli`) mounts these beside its own commands, so `cube train ...` works with
or without the service. Errors a user can cause exit with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from cube.config import ConfigError, RunConfig, SplitConfig, TrainConfig


class UsageError(Exception):
    """Bad command-line input: printed as `error: ...`, exit status 2."""


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file {path} not found")
    try:
        if p.suffix == ".toml":
            return tomllib.loads(p.read_text())
        return json.loads(p.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}") from None


def build_run_config(arch: str | None, config_file: str | None, overrides: list[str]) -> RunConfig:
    """Merge the config file and --set key=value overrides. Bare keys go to the section that has
    them (train, then split, else model); `model.x`, `train.x`, `split.x` are explicit."""
    raw: dict[str, Any] = load_config_file(config_file) if config_file else {}
    unknown = set(raw) - {"arch", "model", "train", "split"}
    if unknown:
        raise UsageError(f"config file: unknown section(s) {', '.join(sorted(unknown))}; known: arch, model, train, split")
    sections = {name: dict(raw.get(name, {})) for name in ("model", "train", "split")}
    train_keys = {f.name for f in fields(TrainConfig)}
    split_keys = {f.name for f in fields(SplitConfig)}
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        if "." in key:
            section, key = key.split(".", 1)
            if section not in sections:
                raise UsageError(f"--set {item}: unknown section {section!r}; use model., train. or split.")
        else:
            section = "train" if key in train_keys else "split" if key in split_keys else "model"
        sections[section][key] = parse_value(value)
    try:
        return RunConfig(
            arch=arch or raw.get("arch", "cube"),
            model=sections["model"],
            train=TrainConfig.from_dict(sections["train"]),
            split=SplitConfig.from_dict(sections["split"]),
        )
    except (ConfigError, TypeError) as exc:
        raise UsageError(str(exc)) from None


class ProgressBar:
    """Epoch progress on stderr with the latest validation figures."""

    def __init__(self):
        self.bar = None

    def on_epoch_end(self, report) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=report.n_epochs, initial=report.epoch - 1, unit="epoch", file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{report.train_loss:.3f}", val_r10=f"{report.val['recall_at_10']:.3f}",
                             val_mrr=f"{report.val['mrr']:.3f}")
        if report.epoch >= report.n_epochs:
            self.bar.close()


def load_training_data(path: str, args: argparse.Namespace):
    """Pairs from an NPZ file (text files are encoded by a teacher; see `cube encode`)."""
    from cube.pairs import load_pairs_npz

    if not Path(path).is_file():
        raise UsageError(f"data file {path} not found")
    return load_pairs_npz(path)


def cmd_train(args: argparse.Namespace) -> int:
    from cube.experiment import run_experiment
    from cube.report import text_table

    run = build_run_config(args.arch, args.config, args.set or [])
    data = load_training_data(args.data, args)
    out = Path(args.out)
    result = run_experiment(data, run, out, seeds=args.seeds, callbacks=[ProgressBar()],
                            checkpoint_dir=out / "checkpoints", log=lambda m: print(m, file=sys.stderr))
    print(text_table(result.report))
    print(f"\nmodel: {out / 'model'}\nreport: {out / 'report.json'} ({out / 'report.md'}, {out / 'training.png'})")
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    from cube.artifacts import ArtifactError, load_model
    from cube.pairs import PairFileError, check_matrix
    from cube.trainer import predict

    try:
        model, desc = load_model(args.model)
    except ArtifactError as exc:
        raise UsageError(str(exc)) from None
    try:
        x = check_matrix("input", np.load(args.input, allow_pickle=False))
    except (OSError, ValueError, EOFError) as exc:
        detail = exc.message if isinstance(exc, PairFileError) else str(exc)
        raise UsageError(f"{args.input}: {detail}") from None
    d_in = desc["config"]["d_in"]
    if x.shape[1] != d_in:
        raise UsageError(f"{args.input}: vectors have {x.shape[1]} dimensions, the model expects {d_in}")
    y = predict(model, x)
    np.save(args.output, y)
    print(f"wrote {y.shape[0]} vectors of {y.shape[1]} dimensions to {args.output}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    save_pairs_npz(args.out, nonlinear_pairs(args.n, args.dim, args.dim, seed=args.seed))
    print(f"wrote {args.n} synthetic pairs ({args.dim}d -> {args.dim}d, a known nonlinear map) to {args.out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on pair data and write it with its held-out report")
    p.add_argument("--data", required=True, help="pairs: NPZ with input/target arrays")
    p.add_argument("--out", required=True, help="output directory (model/, report.json, report.md, training.png)")
    p.add_argument("--arch", choices=["cube", "linear", "mlp"], default=None, help="default: cube")
    p.add_argument("--config", help="JSON or TOML file with sections arch, model, train, split")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)")
    p.add_argument("--seeds", type=int, default=1, help="train every trainable method with N seeds (mean and 95%% interval)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("transform", help="map vectors through a trained model directory")
    p.add_argument("--model", required=True, help="model directory (model.json + model.safetensors)")
    p.add_argument("--input", required=True, help=".npy file of shape [N, D_in]")
    p.add_argument("--output", required=True, help=".npy file to write [N, D_out]")
    p.set_defaults(func=cmd_transform)

    p = sub.add_parser("synth", help="write synthetic pairs with a known nonlinear map (for demos)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)
