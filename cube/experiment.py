"""One experiment: split the pairs, train the chosen model, fit every baseline on the same split, and
judge them all on the held-out test split. Used by `cube train` and by the service's worker.

The test split is touched only here, once, after training: the learning rate of every trained method
(`cube.tuning`, the same budget for each), early stopping and ridge's lambda use the validation split.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from cube import autoencoder, translation
from cube.artifacts import save_model, write_json_atomic
from cube.baselines import Identity, MeanTarget, Procrustes, Ridge
from cube.config import ConfigError, RunConfig, check_code_size
from cube.metrics import COLLAPSE_SPREAD, collapsed, evaluate_predictions
from cube.models import build_model, flops_per_sample, mlp_hidden_for_params, parameter_count
from cube.pairs import PairData, split_pairs
from cube.report import write_markdown, write_plot
from cube.trainer import TrainResult, fit, predict
from cube.tuning import StopWhen, learning_rate_grid, tune

# Options a model gets unless the run sets them (artifacts store the full config, so this can change).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"mlp": {"input_norm": True}}

METRICS = ("recall_at_1", "recall_at_10", "mrr", "mean_cosine", "centered_cosine", "constant_cosine", "output_spread")

# Two-sided 95% Student-t quantiles by degrees of freedom (n - 1), for the seed intervals.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042}


def t95(df: int) -> float:
    return _T95.get(df) or _T95[max(k for k in _T95 if k <= df)]


@dataclass
class ExperimentResult:
    report: dict[str, Any]
    model: torch.nn.Module
    train_result: TrainResult
    model_config: dict[str, Any]


def summarise(runs: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, list[float]] | None]:
    """Mean of each metric over seeds, and the 95% interval when there are several."""
    mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    if len(runs) < 2:
        return mean, None
    half = {k: t95(len(runs) - 1) * float(np.std([r[k] for r in runs], ddof=1)) / math.sqrt(len(runs)) for k in runs[0]}
    return mean, {k: [mean[k] - half[k], mean[k] + half[k]] for k in runs[0]}


def fingerprint(data: PairData, run: RunConfig, model_config: dict[str, Any]) -> str:
    """Names a run by its settings and data, so a checkpoint is only resumed by the run that wrote it."""
    h = hashlib.sha256(json.dumps([run.arch, model_config, run.train.to_dict(), run.split.to_dict()], sort_keys=True).encode())
    arrays = [data.input, data.target]
    if run.train.curriculum != "none" and data.difficulty is not None:  # it orders the batches
        arrays.append(data.difficulty)
    for extra in (data.source, data.question):  # which pairs are weighted, which are scored
        if extra is not None:
            arrays.append(extra)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def run_experiment(
    data: PairData,
    run: RunConfig,
    out_dir: str | Path,
    *,
    seeds: int = 1,
    callbacks: Iterable[Any] = (),
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    log: Callable[[str], None] = lambda msg: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ExperimentResult:
    """Train `run.arch` and every baseline; write the model, report.json, report.md and the plot.

    Callbacks see the main model's epochs; `should_stop` is asked between the later stages (the
    baselines train without callbacks), so a cancel request is honoured there too. The main model
    checkpoints into `checkpoint_dir` and resumes from `resume_from` (another directory's
    checkpoint, e.g. an earlier attempt's) or else from `checkpoint_dir`'s newest."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    code_size = check_code_size(run.mode, run.model.get("code_size"), data.dim_in)
    if code_size:  # each vector is its own target, through the bottleneck
        data = autoencoder.reconstruction_pairs(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = split_pairs(data, run.split)
    tr, va, te = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    train, val = (tr.input, tr.target), (va.input, va.target)
    target_mean = tr.target.astype(np.float64).mean(axis=0)
    same_space = data.dim_in == data.dim_out
    log(f"split: {len(tr)} train, {len(va)} validation, {len(te)} test pairs"
        + (" (validation and test: question rows only)" if run.split.eval_filter == "question" else ""))
    weights = source_weights(tr, run.train.source_weights)
    build = autoencoder.pca_started(tr.input, code_size) if code_size else build_model
    # Translation: every method with a linear path starts at Procrustes, its start an epoch-0 candidate,
    # and the report adds the recovery ratio.
    translating = run.mode == "translation"
    if translating:
        build = translation.ProcrustesStart(train)
        judge = translation.judge(te, target_mean)
    else:
        def judge(pred: np.ndarray) -> dict[str, float]:
            return evaluate_predictions(pred, te.target, target_mean)
    fit_options = {"difficulty": tr.difficulty, "sample_weights": weights, "start_candidate": translating}

    results: dict[str, list[dict[str, float]]] = {}
    info: dict[str, Any] = {}
    tuning: dict[str, Any] = {}

    def train_seeds(arch: str, config: dict[str, Any], what: str, **first_run: Any) -> list[tuple[torch.nn.Module, TrainResult]]:
        """Tune the learning rate on the first seed (validation only), then train the other seeds at
        the chosen rate. `first_run` (callbacks, checkpoints) goes to the first seed's first trial."""
        log(f"training {what}: {parameter_count(build_model(arch, config)):,} parameters, "
            f"learning rates {', '.join(f'{lr:g}' for lr in learning_rate_grid(run.train))}")
        tuned = tune(lambda: build(arch, config), train, val, run.train, should_stop=should_stop, log=log,
                     **fit_options, **first_run)
        if tuned.cancelled or should_stop():
            raise ExperimentCancelled(tuned.result.epochs_run)
        tuning[arch] = tuned.summary()
        runs = [(tuned.model, tuned.result)]
        for i in range(1, seeds):
            cfg = replace(tuned.cfg, seed=run.train.seed + i)
            torch.manual_seed(cfg.seed)
            model = build(arch, config)
            result = fit(model, train, val, cfg, callbacks=[StopWhen(should_stop)], **fit_options)
            if result.cancelled or should_stop():
                raise ExperimentCancelled(result.epochs_run)
            runs.append((model, result))
        results[arch] = [judge(predict(model, te.input)) for model, _ in runs]
        return runs

    # The model the user asked for: its first run carries callbacks and checkpoints (resumable).
    defaults = {**MODEL_DEFAULTS.get(run.arch, {}), **(translation.MODEL_DEFAULTS.get(run.arch, {}) if translating else {})}
    model_config = {"d_in": data.dim_in, "d_out": data.dim_out, **defaults, **run.model}
    run_id = fingerprint(data, run, model_config)
    main_model, main_result = train_seeds(run.arch, model_config, run.arch, callbacks=callbacks,
                                          checkpoint_dir=checkpoint_dir, resume_from=resume_from, fingerprint=run_id)[0]
    info[run.arch] = {"parameters": parameter_count(main_model), "flops_per_sample": flops_per_sample(main_model),
                      "best_epoch": main_result.best_epoch, "epochs_run": main_result.epochs_run}

    # Closed-form baselines: deterministic, one run each.
    # (An autoencoder's are PCA at its code size and the mean: x -> x maps have no bottleneck.)
    # (A translation's add the low-rank affine map, and Procrustes between spaces of any sizes.)
    fixed = ([MeanTarget(), autoencoder.PCA(code_size)] if code_size else
             translation.fixed_baselines(same_space) if translating else
             [MeanTarget(), Ridge()] + ([Identity(), Procrustes()] if same_space else []))
    for baseline in fixed:
        baseline.fit(train, val)
        results[baseline.name] = [judge(baseline.predict(te.input))]
    info.update({b.name: b.chosen for b in fixed if b.name in ("ridge", "pca", "lowrank")})

    # Trained baselines: the same trainer, loss, schedule and tuning budget as the main model.
    n_main = parameter_count(main_model)
    matched = (autoencoder.matched_mlp_hidden(data.dim_in, code_size, n_main) if code_size
               else mlp_hidden_for_params(data.dim_in, data.dim_out, n_main))
    trained_specs = {"linear": {}, "mlp": {"hidden": matched, **MODEL_DEFAULTS["mlp"]},
                     "resmlp": translation.MODEL_DEFAULTS["resmlp"] if translating else {}}
    for arch, extra in trained_specs.items():
        if arch == run.arch:
            continue
        config = {"d_in": data.dim_in, "d_out": data.dim_out, **extra, **({"code_size": code_size} if code_size else {})}
        model, result = train_seeds(arch, config, f"baseline {arch}")[0]
        info[arch] = {"parameters": parameter_count(model), **extra, "best_epoch": result.best_epoch}

    methods, intervals = {}, {}
    for name, runs in results.items():
        methods[name], ci = summarise(runs)
        if ci:
            intervals[name] = ci
    report = {
        "n": {"train": len(tr), "val": len(va), "test": len(te)},
        "data": data_summary(data, tr, run),
        "main": run.arch,
        "mode": run.mode,
        "seeds": seeds,
        "tuning": {"budget": run.train.tuning_budget, "learning_rates": learning_rate_grid(run.train),
                   "monitor": run.train.monitor, "chosen": tuning},
        "methods": methods,
        "intervals": intervals,
        "runs": results,  # each method's metrics per seed, in seed order (paired comparisons)
        "collapse_alarm": {"threshold": COLLAPSE_SPREAD, "methods": collapsed(methods)},
        "info": info,
        "model": {"arch": run.arch, "config": model_config},
        "train": run.train.to_dict(),
        "split": run.split.to_dict(),
        "history": main_result.history,
    }
    if translating:
        report["translation"] = translation.summary(te, build.started, start_candidate=True)
    save_model(main_model, out / "model", run.arch, model_config, metadata={"methods": methods, "n": report["n"]})
    write_json_atomic(out / "report.json", report)
    write_markdown(report, out / "report.md")
    write_plot(main_result.history, out / "training.png", title=f"{run.arch} on {len(tr)} training pairs")
    log(f"wrote {out / 'report.json'}")
    return ExperimentResult(report, main_model, main_result, model_config)


def source_weights(tr: PairData, weights: list[float]) -> np.ndarray | None:
    """Each training pair's sampling weight from its source's entry in `weights` (None: uniform)."""
    n_sources = 1 if tr.source is None else int(tr.source.max()) + 1
    if not weights:
        return None
    if len(weights) != n_sources:
        raise ConfigError(f"source_weights has {len(weights)} weight(s) but the data comes from {n_sources} file(s)")
    per_pair = np.asarray(weights, dtype=np.float64)[tr.source if tr.source is not None else np.zeros(len(tr), int)]
    if not per_pair.any():
        raise ConfigError("source_weights gives every training pair weight 0")
    return per_pair


def data_summary(data: PairData, tr: PairData, run: RunConfig) -> dict[str, Any]:
    """What the report was computed on: pairs per source file, weights, and which rows were scored."""
    summary: dict[str, Any] = {"eval_filter": run.split.eval_filter}
    if data.source is not None:
        summary["pairs_per_source"] = np.bincount(data.source).tolist()
        summary["train_pairs_per_source"] = np.bincount(tr.source, minlength=len(summary["pairs_per_source"])).tolist()
    if run.train.source_weights:
        summary["source_weights"] = list(run.train.source_weights)
    if data.question is not None:
        summary["question_pairs"] = int(data.question.sum())
    return summary


class ExperimentCancelled(Exception):
    """Training stopped on request; nothing was evaluated or saved."""

    def __init__(self, epochs_run: int):
        super().__init__(f"cancelled after {epochs_run} epoch(s)")
        self.epochs_run = epochs_run


def load_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
