"""Hyperparameter sweeps with Optuna: how a trial draws its settings, trains once on the training
split and reports every epoch's validation score to the pruner, and the pruners a sweep may use.

A trial trains one model at one point of the search space (no baselines, no test split): the test
split is read once, by the final experiment of the chosen settings (`cube.experiment`), where every
baseline gets its usual tuning budget. `cube sweep` (cube.sweep_cli) runs trials in-process; the
service runs each as a training job on its workers (app.services.sweeps).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from typing import Any, Callable, Iterable

import numpy as np

from cube.config import ConfigError, RunConfig, TrainConfig
from cube.pairs import PairData
from cube.search_space import Dimension, SearchSpace, sample, split_point
from cube.trainer import StopTraining, TrainResult, fit

# The validation metric a sweep maximises -> the trainer's monitor (early stopping, best epoch).
OBJECTIVES = {"val_mrr": "mrr", "val_recall_at_10": "recall_at_10"}
PRUNERS = ("none", "median", "halving")


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return OBJECTIVES[objective]


def make_pruner(spec: dict[str, Any] | None):
    """An Optuna pruner from {"kind": "none" | "median" | "halving", ...} (default halving: on chitchat
    it trained 55% fewer epochs than no pruning to the same best validation score, median 7%;
    bench/RESULTS.md, "Sweeps"):
    median: stop a trial whose score at an epoch is below the median of earlier trials at that epoch,
      once `startup_trials` trials have finished and after `warmup_epochs` epochs (defaults 3, 2);
    halving: asynchronous successive halving from `min_epochs` (1), keeping 1/`reduction_factor` (3)."""
    import optuna

    spec = dict(spec or {"kind": "halving"})
    kind = spec.pop("kind", "halving")
    allowed = {"none": set(), "median": {"startup_trials", "warmup_epochs"},
               "halving": {"min_epochs", "reduction_factor"}}
    if kind not in allowed:
        raise ConfigError(f"pruner.kind must be one of {', '.join(PRUNERS)}, got {kind!r}")
    unknown = set(spec) - allowed[kind]
    if unknown:
        raise ConfigError(f"pruner {kind!r} takes {', '.join(sorted(allowed[kind])) or 'no options'}; "
                          f"got {', '.join(sorted(unknown))}")
    for key, value in spec.items():
        low = 2 if key == "reduction_factor" else (1 if key == "min_epochs" else 0)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 1000:
            raise ConfigError(f"pruner.{key} must be an integer from {low} to 1000, got {value!r}")
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.get("startup_trials", 3),
                                           n_warmup_steps=spec.get("warmup_epochs", 2))
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.get("min_epochs", 1),
                                                  reduction_factor=spec.get("reduction_factor", 3))


def suggester(trial) -> Callable[[Dimension], Any]:
    """Draw each dimension with the Optuna trial. A one-value choice is fixed, not a parameter;
    list choices (grids) go to Optuna as their JSON text, which it can store."""
    def suggest(dim: Dimension) -> Any:
        if dim.is_range:
            if dim.integer:
                return trial.suggest_int(dim.key, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
            return trial.suggest_float(dim.key, float(dim.low), float(dim.high), step=dim.step, log=dim.log)
        if len(dim.choices) == 1:
            return dim.choices[0]
        if any(isinstance(c, list) for c in dim.choices):
            return json.loads(trial.suggest_categorical(dim.key, [json.dumps(c) for c in dim.choices]))
        return trial.suggest_categorical(dim.key, list(dim.choices))

    return suggest


def trial_config(base: RunConfig, point: dict[str, Any], objective: str) -> RunConfig:
    """The base run with the point's settings: one learning rate (the point's), early stopping and the
    best epoch on the sweep's objective. Raises ConfigError for a combination the model refuses."""
    arch, model, train = split_point(point, base.arch)
    cfg = TrainConfig.from_dict({**base.train.to_dict(), **train, "monitor": check_objective(objective), "tuning_budget": 1})
    # Another family drops the base's model options, but not an autoencoder's bottleneck.
    kept = base.model if arch == base.arch else {k: v for k, v in base.model.items() if k == "code_size"}
    return replace(base, arch=arch, model={**kept, **model}, train=cfg)


def draw(trial, space: SearchSpace, base: RunConfig, objective: str) -> RunConfig:
    """The trial's settings; the whole point (fixed values too) is kept as the trial's `point`."""
    point = sample(space, suggester(trial))
    trial.set_user_attr("point", point)
    return trial_config(base, point, objective)


class PruningReporter:
    """Trainer callback: report each epoch's validation score to the trial and stop when the
    pruner says so (`pruned` tells a pruned run from a finished one)."""

    def __init__(self, trial, monitor: str):
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_epoch_end(self, report) -> None:
        self.trial.report(float(report.val[self.monitor]), report.epoch)
        if self.trial.should_prune():
            self.pruned = True
            raise StopTraining()


def train_trial(data: PairData, split, run: RunConfig, *, callbacks: Iterable[Any] = (), **fit_kwargs: Any
                ) -> tuple[Any, TrainResult]:
    """Train the run's model once on the training split, scored on validation (the test split is
    not touched). Returns the model and the trainer's result (best_score: the objective)."""
    import torch

    from cube.experiment import MODEL_DEFAULTS, source_weights
    from cube.models import build_model

    tr, va = data.subset(split.train), data.subset(split.val)
    config = {"d_in": data.dim_in, "d_out": data.dim_out, **MODEL_DEFAULTS.get(run.arch, {}), **run.model}
    torch.manual_seed(run.train.seed)
    if "code_size" in config:  # started as PCA, like run_experiment's autoencoders
        from cube.autoencoder import pca_started

        model = pca_started(tr.input, config["code_size"])(run.arch, config)
    else:
        model = build_model(run.arch, config)
    result = fit(model, (tr.input, tr.target), (va.input, va.target), run.train, callbacks=callbacks,
                 difficulty=tr.difficulty, sample_weights=source_weights(tr, run.train.source_weights), **fit_kwargs)
    return model, result


def make_objective(data: PairData, split, space: SearchSpace, base: RunConfig, objective: str,
                   callbacks: Iterable[Any] = ()) -> Callable[[Any], float]:
    """Optuna's objective for a search run in this process (`cube sweep`, a job's "auto", the
    benches): draw the trial's settings, train them once (`train_trial`), report every epoch to the
    pruner, and raise optuna.TrialPruned when it stops the trial. `callbacks` see every epoch too."""
    def run(trial) -> float:
        import optuna

        trial_run = draw(trial, space, base, objective)
        reporter = PruningReporter(trial, trial_run.train.monitor)
        _, result = train_trial(data, split, trial_run, callbacks=[reporter, *callbacks])
        if reporter.pruned:
            raise optuna.TrialPruned()
        return float(result.best_score)

    return run


def final_config(base: RunConfig, point: dict[str, Any], objective: str) -> RunConfig:
    """The chosen settings for the final experiment: the base's tuning budget again, so the chosen
    model's learning rate is re-checked on validation exactly as every baseline's is."""
    run = trial_config(base, point, objective)
    return replace(run, train=replace(run.train, tuning_budget=base.train.tuning_budget))


def importances(study) -> dict[str, float] | None:
    """Optuna's importance of each searched setting (fANOVA), once two trials have completed."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or not complete[0].params:
        return None
    try:
        with warnings.catch_warnings():  # a warning when few trials differ; the figures still stand
            warnings.simplefilter("ignore")
            return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError):  # e.g. every completed trial drew the same point
        return None


def trial_row(t) -> dict[str, Any]:
    """One trial for sweep.json and the API: number, the drawn settings, value and state."""
    epochs = len(t.intermediate_values)
    return {"number": t.number, "params": t.user_attrs.get("point", t.params), "value": t.value,
            "state": t.state.name.lower(), "epochs": epochs}


def data_digest(data: PairData) -> str:
    """A short fingerprint of the pairs, so a continued sweep is known to use the same data."""
    import hashlib

    h = hashlib.sha256()
    for a in (data.input, data.target):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]
