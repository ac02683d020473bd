"""Offline command-line commands of the cube library: `train`, `transform`, `export`, `synth`, `encode`, `data`.

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

from cube.config import MODES, ConfigError, RunConfig, SplitConfig, TrainConfig, check_code_size, check_mode


class UsageError(Exception):
    """Bad command-line input: printed as `error: ...`, exit status 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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


def build_run_config(arch: str | None, config_file: str | None, overrides: list[str], mode: str | None = None) -> RunConfig:
    """Merge the config file and --set key=value overrides. Bare keys go to the section that has
    them (train, then split, else model); `model.x`, `train.x`, `split.x` are explicit."""
    raw: dict[str, Any] = load_config_file(config_file) if config_file else {}
    unknown = set(raw) - {"arch", "mode", "model", "train", "split"}
    if unknown:
        raise UsageError(f"config file: unknown section(s) {', '.join(sorted(unknown))}; known: arch, mode, model, train, split")
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
        run_mode = check_mode(mode or raw.get("mode", "dialogue"))
        check_code_size(run_mode, sections["model"].get("code_size"))  # below the data's dim: checked once loaded
        return RunConfig(
            arch=arch or raw.get("arch", "cube"),
            mode=run_mode,
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


TEXT_SUFFIXES = (".csv",)


def is_text_pair_file(path: str) -> bool:
    """CSV is always text; a JSONL file is text when its first record's `input` is a string (an
    embedding-pair JSONL holds lists of numbers there)."""
    p = Path(path)
    if p.suffix.lower() in TEXT_SUFFIXES:
        return True
    if p.suffix.lower() not in (".jsonl", ".ndjson"):
        return False
    with open(p, "rb") as f:
        for raw in f:
            if raw.strip():
                try:
                    first = json.loads(raw)
                except ValueError:
                    return True  # let the text loader report the line precisely
                return not (isinstance(first, dict) and isinstance(first.get("input"), list))
    return True


def default_embedding_cache() -> Path:
    from cube.teachers import default_cache_root

    return default_cache_root() / "embeddings"


def encode_file(path: str, args: argparse.Namespace):
    """Text pairs -> embedding pairs through the teacher and the on-disk cache, with a summary on stderr."""
    from cube.encoding import encode_text_pairs_with_stats
    from cube.teachers import TeacherNotAvailable, get_teacher
    from cube.textpairs import load_text_pairs

    text_pairs = load_text_pairs(path)
    try:
        teacher = get_teacher(args.teacher)
    except TeacherNotAvailable as exc:
        raise UsageError(str(exc)) from None
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_embedding_cache()
    print(f"{path}: {len(text_pairs)} pairs ({text_pairs.duplicates_dropped} duplicates dropped); "
          f"encoding with {teacher.name} ({teacher.dim}d), cache {cache_dir}", file=sys.stderr)
    data, stats = encode_text_pairs_with_stats(
        text_pairs, teacher, cache_dir, quality_threshold=args.quality_threshold, batch_size=args.batch_size,
        progress=lambda done, total: print(f"  encoded {done}/{total} new texts", file=sys.stderr))
    print(f"  {stats.texts} distinct texts: {stats.cache_hits} from the cache, {stats.encoded} encoded; "
          f"{stats.dropped_low_quality} pairs below the quality threshold dropped; {stats.pairs_out} pairs", file=sys.stderr)
    return data


def encode_translation_file(path: str, args: argparse.Namespace):
    """Texts (or text pairs) -> each text's vector by --teacher (input) and --target-teacher (target)."""
    from cube.teachers import TeacherNotAvailable, get_teacher
    from cube.translation import encode_translation, load_translation_texts

    targets = args.target_teacher or []
    if len(targets) != 1:
        raise UsageError(f"{path}: translation of text data needs one target teacher (target_teacher): "
                         f"--target-teacher NAME, the teacher whose space the model maps into; got {len(targets)}")
    if targets[0] == args.teacher:
        raise UsageError(f"target_teacher is the input teacher ({args.teacher}); translation needs two teachers")
    items = load_translation_texts(path)
    try:
        teacher, target = get_teacher(args.teacher), get_teacher(targets[0])
    except TeacherNotAvailable as exc:
        raise UsageError(str(exc)) from None
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_embedding_cache()
    print(f"{path}: {len(items)} distinct texts, {len(items.links)} pairs; encoding with {teacher.name} "
          f"({teacher.dim}d) -> {target.name} ({target.dim}d), cache {cache_dir}", file=sys.stderr)
    return encode_translation(items, teacher, target, cache_dir, batch_size=args.batch_size,
                              progress=lambda done, total: print(f"  encoded {done}/{total} new texts", file=sys.stderr))


def encode_multi_teacher_file(path: str, args: argparse.Namespace):
    """Text pairs -> inputs by --teacher, targets by every --target-teacher side by side (one head each)."""
    from cube.multiteacher import encode_multi_teacher
    from cube.teachers import TeacherNotAvailable, get_teacher
    from cube.textpairs import load_text_pairs

    if not is_text_pair_file(path):
        raise UsageError(f"{path}: multi-teacher distillation encodes text pairs (JSONL or CSV) with each teacher; "
                         "this file holds vectors")
    text_pairs = load_text_pairs(path)
    try:
        teacher, targets = get_teacher(args.teacher), [get_teacher(name) for name in args.target_teacher]
    except TeacherNotAvailable as exc:
        raise UsageError(str(exc)) from None
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_embedding_cache()
    print(f"{path}: {len(text_pairs)} pairs; inputs by {teacher.name} ({teacher.dim}d), targets by "
          + ", ".join(f"{t.name} ({t.dim}d)" for t in targets) + f", cache {cache_dir}", file=sys.stderr)
    return encode_multi_teacher(text_pairs, teacher, targets, cache_dir, batch_size=args.batch_size,
                                progress=lambda done, total: print(f"  encoded {done}/{total} new texts", file=sys.stderr))


def load_training_data(path: str, args: argparse.Namespace, mode: str = "dialogue"):
    """Embedding pairs (NPZ, Parquet, JSONL of vectors), or text pairs (JSONL, CSV) encoded by the
    teacher through the same cache as `cube encode` (translation: by both teachers)."""
    from cube.pairs import load_pairs_file

    if not Path(path).is_file():
        raise UsageError(f"data file {path} not found")
    if is_text_pair_file(path):
        return encode_translation_file(path, args) if mode == "translation" else encode_file(path, args)
    return load_pairs_file(path)


def cmd_train(args: argparse.Namespace) -> int:
    from cube.experiment import run_experiment
    from cube.pairs import concat_pairs
    from cube.report import collapse_warnings, text_table, tuning_text

    run = build_run_config(args.arch, args.config, args.set or [], mode=args.mode)
    targets = args.target_teacher or []
    if len(targets) > 1 and run.mode == "dialogue":
        return train_multi_teacher(run, args)
    if targets and run.mode != "translation":
        raise UsageError(f"--target-teacher (target_teacher) applies to mode translation (one) or to multi-teacher "
                         f"distillation in mode dialogue (two or more), not to {run.mode} with {len(targets)}")
    data = concat_pairs([load_training_data(path, args, run.mode) for path in args.data])
    if len(args.data) > 1:
        counts = np.bincount(data.source, minlength=len(args.data))
        print("pairs per file (after dropping pairs an earlier file already has): "
              + ", ".join(f"{p} {c}" for p, c in zip(args.data, counts)), file=sys.stderr)
    out = Path(args.out)
    result = run_experiment(data, run, out, seeds=args.seeds, callbacks=[ProgressBar()],
                            checkpoint_dir=out / "checkpoints", log=lambda m: print(m, file=sys.stderr))
    print(text_table(result.report))
    for line in collapse_warnings(result.report):
        print(line)
    print("\n" + tuning_text(result.report), end="")
    print(f"\nmodel: {out / 'model'}\nreport: {out / 'report.json'} ({out / 'report.md'}, {out / 'training.png'})")
    return 0


def train_multi_teacher(run, args: argparse.Namespace) -> int:
    """`cube train --target-teacher A --target-teacher B ...`: one model, a head per target teacher."""
    from cube.distillation import markdown, run_multi_teacher
    from cube.pairs import concat_pairs

    parts = [encode_multi_teacher_file(path, args) for path in args.data]
    heads = parts[0][1]
    data = concat_pairs([part for part, _ in parts])
    out = Path(args.out)
    result = run_multi_teacher(data, heads, run, out, seeds=args.seeds, input_space=args.teacher,
                               callbacks=[ProgressBar()], checkpoint_dir=out / "checkpoints",
                               log=lambda m: print(m, file=sys.stderr))
    print(markdown(result.report))
    print(f"model: {out / 'model'} (heads {', '.join(h.name for h in heads)}; cube transform --target-space NAME)\n"
          f"report: {out / 'report.json'} ({out / 'report.md'}; each space alone: {out / 'spaces'})")
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    from cube.artifacts import ArtifactError, load_model
    from cube.pairs import PairFileError, check_matrix
    from cube.trainer import predict

    try:
        model, desc = load_model(args.model)
    except ArtifactError as exc:
        raise UsageError(str(exc)) from None
    from cube.multiteacher import served

    model = served(model, desc.get("metadata") or {}, args.target_space)  # a multi-head model: one head
    model, d_in = autoencoder_side(model, desc["config"]["d_in"], args)
    try:
        loaded = np.load(args.input, allow_pickle=False)
        if not isinstance(loaded, np.ndarray):  # an .npz archive, not one array
            raise ValueError("expected a .npy file holding one [N, D] array, got an .npz archive")
        x = check_matrix("input", loaded)
    except (OSError, ValueError, EOFError) as exc:
        detail = exc.message if isinstance(exc, PairFileError) else str(exc)
        raise UsageError(f"{args.input}: {detail}") from None
    if x.shape[1] != d_in:
        raise UsageError(f"{args.input}: vectors have {x.shape[1]} dimensions, the model expects {d_in}")
    y = predict(model, x)
    try:
        np.save(args.output, y)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {y.shape[0]} vectors of {y.shape[1]} dimensions to {args.output}")
    return 0


def autoencoder_side(model, d_in: int, args: argparse.Namespace):
    """With --code or --from-code, an autoencoder's encoder or decoder and the width it takes; else
    the model itself."""
    if not (args.code or args.from_code):
        return model, d_in
    from cube.autoencoder import Autoencoder, Half

    flag = "--code" if args.code else "--from-code"
    if args.code and args.from_code:
        raise UsageError("--code and --from-code together would give the codes back unchanged; use one")
    if not isinstance(model, Autoencoder):
        raise UsageError(f"{flag} applies to autoencoders only; {args.model} is not one")
    return (Half(model, "encode"), d_in) if args.code else (Half(model, "decode"), model.code_size)


def cmd_export(args: argparse.Namespace) -> int:
    from cube.artifacts import ArtifactError
    from cube.onnx_export import ExportError, export_model_dir

    try:
        exported = export_model_dir(args.model, args.out)
    except ArtifactError as exc:
        raise UsageError(str(exc)) from None
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {exported.path} ({exported.path.stat().st_size:,} bytes); onnxruntime matches torch "
          f"to {exported.max_abs_diff:.2g} on random inputs")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    save_pairs_npz(args.out, nonlinear_pairs(args.n, args.dim, args.dim, seed=args.seed))
    print(f"wrote {args.n} synthetic pairs ({args.dim}d -> {args.dim}d, a known nonlinear map) to {args.out}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from cube.pairs import save_pairs_npz

    if not Path(args.data).is_file():
        raise UsageError(f"data file {args.data} not found")
    data = encode_file(args.data, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_pairs_npz(args.out, data)
    print(f"wrote {len(data)} pairs ({data.dim_in}d -> {data.dim_out}d, with group and difficulty) to {args.out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from cube.datasets import DatasetNotAvailable, build_dataset

    options = {}
    if args.pairs is not None:
        if args.name != "chitchat":
            raise UsageError(f"--pairs applies to chitchat only, not {args.name}")
        options["pairs"] = args.pairs
    try:
        n = build_dataset(args.name, args.out, **options)
    except DatasetNotAvailable as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {n} {args.name} text pairs to {args.out}")
    return 0


def add_teacher_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="minilm", help="teacher that encodes text pairs (default: minilm)")
    p.add_argument("--cache-dir", default=None, help="embedding cache directory (default: ~/.cache/cube/embeddings)")
    p.add_argument("--quality-threshold", type=float, default=None,
                   help="drop text pairs whose teacher cosine is below this")
    p.add_argument("--batch-size", type=int, default=64, help="teacher batch size")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on pair data and write it with its held-out report")
    p.add_argument("--data", required=True, action="append",
                   help="embedding pairs (NPZ, Parquet, JSONL of vectors) or text pairs (JSONL, CSV; encoded by "
                        "--teacher); repeat for several files (each pair keeps its file: --set source_weights=[...])")
    add_teacher_options(p)
    p.add_argument("--target-teacher", action="append", default=None,
                   help="translation of text data: the teacher whose space the model maps into (input: --teacher); "
                        "given two or more times in mode dialogue: multi-teacher distillation, a head per teacher")
    p.add_argument("--out", required=True, help="output directory (model/, report.json, report.md, training.png)")
    p.add_argument("--arch", choices=["cube", "linear", "mlp", "resmlp"], default=None, help="default: cube")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="what the pairs mean: dialogue (input -> its reply), autoencoder (each input through a code "
                        "of --set code_size=K numbers and back; a pair file's targets are ignored), translation "
                        "(default: dialogue)")
    p.add_argument("--config", help="JSON or TOML file with sections arch, mode, model, train, split")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)")
    p.add_argument("--seeds", type=positive_int, default=1, help="train every trainable method with N seeds (mean and 95%% interval)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("transform", help="map vectors through a trained model directory")
    p.add_argument("--model", required=True, help="model directory (model.json + model.safetensors)")
    p.add_argument("--input", required=True, help=".npy file of shape [N, D_in]")
    p.add_argument("--output", required=True, help=".npy file to write [N, D_out]")
    p.add_argument("--code", action="store_true", help="an autoencoder: write the codes [N, code_size], not reconstructions")
    p.add_argument("--from-code", action="store_true", help="an autoencoder: the input holds codes; decode them")
    p.add_argument("--target-space", default=None,
                   help="a multi-teacher model: the head (teacher) whose space to write (default: its first)")
    p.set_defaults(func=cmd_transform)

    p = sub.add_parser("export", help="export a trained model directory to ONNX (checked with onnxruntime)")
    p.add_argument("--model", required=True, help="model directory (model.json + model.safetensors)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx: input `input` [batch, d_in], output `output`")
    p.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("synth", help="write synthetic pairs with a known nonlinear map (for demos)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("encode", help="encode a text-pair file (JSONL/CSV) into embedding pairs (NPZ) with a teacher")
    p.add_argument("--data", required=True, help="text pairs: JSONL or CSV with input, target[, group]")
    p.add_argument("--out", required=True, help="NPZ to write: input, target, group, difficulty")
    add_teacher_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("data", help="write a real text-pair dataset as JSONL (chitchat, wordnet)")
    p.add_argument("name", choices=["chitchat", "wordnet"])
    p.add_argument("--out", required=True, help="JSONL to write, e.g. data/chitchat.jsonl")
    p.add_argument("--pairs", choices=["question", "all"], default=None,
                   help="chitchat: question turns -> reply (default, about 25k) or every adjacent turn -> reply "
                        "(about 121k; each row says whether it is a question turn)")
    p.set_defaults(func=cmd_data)

    from cube.sweep_cli import add_command as add_sweep

    add_sweep(sub)
