"""The multi-teacher experiment: one model with a head per teacher space, judged in each space beside
the model trained on that space alone and that space's baselines.

For every target teacher the ordinary experiment (`cube.experiment.run_experiment`) runs on the input
and that teacher's targets: the single-teacher model and every baseline, on the same split (a split
depends on the groups and the inputs, never on the targets). Then the multi-head model trains on all
targets at once under the same learning-rate budget, and is scored in each space separately. What
the other teachers added to a space is the paired difference, seed by seed, between the multi-head
model and the single-teacher one.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from cube.artifacts import save_model, write_json_atomic
from cube.config import ConfigError, RunConfig
from cube.experiment import (MODEL_DEFAULTS, ExperimentCancelled, ExperimentResult, fingerprint, run_experiment,
                             summarise, t95)
from cube.metrics import evaluate_predictions
from cube.models import build_model, flops_per_sample, linear_path, parameter_count
from cube.multiteacher import Head, HeadWeighting, head_columns, weighting_for
from cube.pairs import PairData, split_pairs
from cube.report import markdown_table, tuning_text
from cube.trainer import fit, predict
from cube.tuning import StopWhen, learning_rate_grid, tune

MULTI = "multi-head"  # the multi-head model's name in each space's table


def space_data(data: PairData, head: Head) -> PairData:
    """The pairs with only this head's targets."""
    return PairData(data.input, data.target[:, head.columns], data.groups, data.difficulty, data.question, data.source)


def start_from_identity(model: torch.nn.Module, heads: list[Head], input_space: str | None) -> None:
    """The head that predicts the input's own space starts, like a single-teacher model of that space,
    from the identity (its rows of the linear path); the other heads keep their initialisation."""
    path = linear_path(model)
    for head in heads:
        if path is not None and head.name == input_space and head.dim == path.in_features:
            with torch.no_grad():
                path.weight[head.columns] = torch.eye(head.dim)
                path.bias[head.columns] = 0.0


def paired_difference(multi: list[dict[str, float]], single: list[dict[str, float]]) -> dict[str, Any]:
    """Mean of (multi - single) per metric over seeds paired by index, with its 95% interval."""
    diffs = {k: [m[k] - s[k] for m, s in zip(multi, single)] for k in ("recall_at_1", "recall_at_10", "mrr")}
    out: dict[str, Any] = {}
    for key, values in diffs.items():
        mean = float(np.mean(values))
        if len(values) > 1:
            half = t95(len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
            out[key] = {"mean": mean, "interval": [mean - half, mean + half]}
        else:
            out[key] = {"mean": mean}
    return out


def run_multi_teacher(data: PairData, heads: list[Head], run: RunConfig, out_dir: str | Path, *, seeds: int = 1,
                      input_space: str | None = None, single: dict[str, dict[str, Any]] | None = None,
                      callbacks: Iterable[Any] = (), checkpoint_dir: str | Path | None = None,
                      resume_from: str | Path | None = None, log: Callable[[str], None] = lambda msg: None,
                      should_stop: Callable[[], bool] = lambda: False) -> ExperimentResult:
    """Train and judge the multi-head model; write model/, report.json and report.md in `out_dir`
    (and each space's own experiment under spaces/<teacher>/).

    The multi-head model trains first, and its first run carries `callbacks` and checkpoints (what a
    user watches, and resume), as the main model of `run_experiment` does; then each space's own
    experiment. `should_stop` is asked throughout (ExperimentCancelled). The first head is the model's
    default space: the report's top-level `methods` and `intervals` are that space's table (what a
    promotion gate reads); `spaces` holds every space's.

    `single` (teacher -> report of its own experiment, from an earlier call on the same data, run and
    seeds) saves training the single-teacher models and baselines again, e.g. to compare weightings."""
    if data.dim_out != sum(h.dim for h in heads):
        raise ConfigError(f"the targets have {data.dim_out} columns but the heads need {sum(h.dim for h in heads)}")
    weighting_for(heads, run.train)  # head_weights of the wrong length fail now, before any training
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = split_pairs(data, run.split)
    tr, va, te = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    config = {"d_in": data.dim_in, "d_out": data.dim_out, **MODEL_DEFAULTS.get(run.arch, {}), **run.model}

    def build() -> torch.nn.Module:
        model = build_model(run.arch, config)
        start_from_identity(model, heads, input_space)
        return model

    def fresh() -> dict[str, Any]:
        w: HeadWeighting = weighting_for(heads, run.train)
        return {"loss_fn": w.loss, "val_metrics": w.metrics}

    log(f"training the {len(heads)}-head {run.arch} ({parameter_count(build()):,} parameters), head weights "
        f"{run.train.head_weighting}, learning rates {', '.join(f'{lr:g}' for lr in learning_rate_grid(run.train))}")
    train, val = (tr.input, tr.target), (va.input, va.target)
    tuned = tune(build, train, val, run.train, per_trial=fresh, log=log, callbacks=callbacks,
                 checkpoint_dir=checkpoint_dir, resume_from=resume_from, should_stop=should_stop,
                 fingerprint=fingerprint(data, run, {**config, "heads": head_columns(heads)}))
    if tuned.cancelled or should_stop():
        raise ExperimentCancelled(tuned.result.epochs_run)
    runs = [(tuned.model, tuned.result)]
    for i in range(1, seeds):
        cfg = replace(tuned.cfg, seed=run.train.seed + i)
        torch.manual_seed(cfg.seed)
        model = build()
        result = fit(model, train, val, cfg, callbacks=[StopWhen(should_stop)], **fresh())
        if result.cancelled or should_stop():
            raise ExperimentCancelled(result.epochs_run)
        runs.append((model, result))

    single = dict(single or {})
    for head in heads:
        if head.name not in single:
            log(f"space {head.name} ({head.dim}d) alone: {run.arch} and every baseline")
            single[head.name] = run_experiment(space_data(data, head), run, out / "spaces" / head.name, seeds=seeds,
                                               log=log, should_stop=should_stop).report

    spaces: dict[str, Any] = {}
    for head in heads:
        cols, mean_target = head.columns, tr.target[:, head.columns].astype(np.float64).mean(axis=0)
        multi_runs = [evaluate_predictions(predict(model, te.input)[:, cols], te.target[:, cols], mean_target)
                      for model, _ in runs]
        alone = single[head.name]
        methods, intervals = dict(alone["methods"]), dict(alone["intervals"])
        methods[MULTI], ci = summarise(multi_runs)
        if ci:
            intervals[MULTI] = ci
        spaces[head.name] = {"dim": head.dim, "methods": methods, "intervals": intervals,
                             "added": paired_difference(multi_runs, alone["runs"][run.arch]),
                             "single": run.arch, "runs": {MULTI: multi_runs}}
    model, result = runs[0]
    default = spaces[heads[0].name]
    report = {
        "mode": "multi_teacher", "main": MULTI, "arch": run.arch, "seeds": seeds,
        "default_space": heads[0].name, "methods": default["methods"], "intervals": default["intervals"],
        "n": {"train": len(tr), "val": len(va), "test": len(te)},
        "input_space": input_space, "heads": [{"name": h.name, "dim": h.dim} for h in heads],
        "weighting": {"mode": run.train.head_weighting, "weights": list(run.train.head_weights) or [1.0] * len(heads)},
        "spaces": spaces,
        "tuning": {"budget": run.train.tuning_budget, "learning_rates": learning_rate_grid(run.train),
                   "monitor": run.train.monitor, "chosen": {MULTI: tuned.summary()}},
        "info": {MULTI: {"parameters": parameter_count(model), "flops_per_sample": flops_per_sample(model),
                         "best_epoch": result.best_epoch, "epochs_run": result.epochs_run}},
        "model": {"arch": run.arch, "config": config},
        "train": run.train.to_dict(), "split": run.split.to_dict(),
        "history": result.history,
    }
    save_model(model, out / "model", run.arch, config,
               metadata={"heads": head_columns(heads), "input_space": input_space,
                         "methods": {name: s["methods"][MULTI] for name, s in spaces.items()}, "n": report["n"]})
    write_json_atomic(out / "report.json", report)
    (out / "report.md").write_text(markdown(report))
    log(f"wrote {out / 'report.json'}")
    return ExperimentResult(report, model, result, config)


def markdown(report: dict[str, Any]) -> str:
    """One table per space: the multi-head model beside that space's single-teacher model and baselines."""
    n, seeds = report["n"], report["seeds"]
    heads = ", ".join(f"{h['name']} ({h['dim']}d)" for h in report["heads"])
    parts = [f"# Multi-teacher evaluation\n\nOne {report['arch']} with a read-out head per teacher space: {heads}; "
             f"head weights {report['weighting']['mode']}. {n['train']} training, {n['val']} validation, "
             f"{n['test']} test pairs; each space is scored on its own. "
             + (f"Mean ± 95% interval over {seeds} seeds.\n" if seeds > 1 else "One seed.\n")]
    for name, space in report["spaces"].items():
        table = markdown_table({"methods": space["methods"], "intervals": space["intervals"], "main": MULTI})
        added = ", ".join(f"{k} {v['mean']:+.3f}" + (f" [{v['interval'][0]:+.3f}, {v['interval'][1]:+.3f}]"
                                                     if "interval" in v else "")
                          for k, v in space["added"].items())
        parts.append(f"## {name} space ({space['dim']}d)\n\n{table}\n\nWhat the other teachers added "
                     f"({MULTI} minus the {space['single']} trained on this space alone, paired by seed): {added}\n")
    parts.append(tuning_text(report))
    return "\n".join(parts)
