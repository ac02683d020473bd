""""auto" that searches: a training job whose architecture or learning rate says "auto" runs a small
built-in sweep inside the job before its experiment.

Which values search (any other "auto" still means the setting's default):
    architecture.kind "auto"                            cube, MLP, residual MLP or linear map
    architecture.grid / channels / steps / hidden "auto"  a few sizes each (AUTO_CHOICES)
    hyperparameters.learning_rate "auto"                1e-4 .. 3e-3, log scale

The search runs on the job's worker: Optuna (TPE, successive-halving pruner) over at most `n_trials` short trials
(AUTO_TRIAL_EPOCHS epochs each, on the training split, scored on validation), stopped by a time
budget. Its study lives in the service's database under the job's id, so an attempt that resumes a
job after its worker died continues the search instead of starting it again. The chosen settings
then run as the job's experiment (every baseline at the same learning rates, the test split read once;
the baselines get no search of their own), and the report records the search.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from app.errors import InvalidContent
from app.settings import Settings

AUTO_CHOICES: dict[str, Any] = {
    "kind": ["cube", "mlp", "resmlp", "linear"],
    "grid": [[4, 4, 4], [4, 4, 6], [6, 6, 6]],
    "channels": [8, 16, 32],
    "steps": [2, 4, 6],
    "hidden": [16, 32, 64],
    "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
}
AUTO_TRIAL_EPOCHS = 8


def auto_space(kind: str, shape: dict[str, Any], hyperparameters: dict[str, Any]) -> dict[str, Any] | None:
    """The search space a job's "auto" values ask for (search_space format), or None."""
    space = {}
    if kind == "auto":
        space["arch"] = AUTO_CHOICES["kind"]
    for key in ("grid", "channels", "steps", "hidden"):
        if shape.get(key) == "auto":
            space[key] = AUTO_CHOICES[key]
    if hyperparameters.get("learning_rate") == "auto":
        space["learning_rate"] = AUTO_CHOICES["learning_rate"]
    return space or None


def check_space(space: dict[str, Any], check: Callable[[str, dict[str, Any], int], None], batch_size: int) -> None:
    """The largest model the search may try must fit the service's caps (a 422 otherwise)."""
    from cube.search_space import SearchSpaceError, check_size, parse_space

    try:
        check_size(parse_space(space), check, batch_size)
    except SearchSpaceError as exc:
        raise InvalidContent(f"\"auto\" would try a model too big: {exc.message}", param=f"architecture.{exc.key}",
                             code="invalid_architecture") from None


def budget(num_pairs: int) -> int:
    """Trials for a data size: more on small sets, where a trial is cheap."""
    return 10 if num_pairs <= 20_000 else 6 if num_pairs <= 200_000 else 4


def search(settings: Settings, job, data, base, *, should_stop: Callable[[], bool], note: Callable[[str], None]):
    """Run the built-in sweep; return (the chosen RunConfig, a summary for the report). Raises
    ExperimentCancelled when a cancel arrives."""
    import optuna

    from cube.config import ConfigError
    from cube.experiment import ExperimentCancelled
    from cube.pairs import split_pairs
    from cube.search_space import parse_space
    from app.services.sweeps import storage
    from cube.sweep import final_config, importances, make_objective, make_pruner, trial_row
    from cube.tuning import StopWhen

    space = parse_space(job.auto_search)
    objective = "val_recall_at_10" if base.train.monitor == "recall_at_10" else "val_mrr"
    study = optuna.create_study(study_name=f"auto-{job.id}", storage=storage(settings), load_if_exists=True,
                                direction="maximize", pruner=make_pruner({"kind": "halving"}))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):  # a dead attempt's
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    study.sampler = optuna.samplers.TPESampler(seed=base.train.seed + len(study.trials))
    n_trials = budget(len(data))
    remaining = max(0, n_trials - len(study.trials))
    note(f"\"auto\": searching {', '.join(space.to_json())} over {n_trials} trial(s) of at most {AUTO_TRIAL_EPOCHS} "
         f"epochs ({n_trials - remaining} done before), budget {settings.auto_search_seconds:g} s")
    split = split_pairs(data, base.split)
    short = replace(base, train=replace(base.train, n_epochs=min(base.train.n_epochs, AUTO_TRIAL_EPOCHS)))

    run_trial = make_objective(data, split, space, short, objective, callbacks=[StopWhen(should_stop)])

    def objective_fn(trial) -> float:
        value = run_trial(trial)
        if should_stop():  # the trial stopped at a cancel request: the job ends, not just the trial
            raise ExperimentCancelled(0)
        return value

    def tell_user(study_, trial) -> None:
        row = trial_row(trial)
        value = "" if row["value"] is None else f": {objective} {row['value']:.4f}"
        note(f"\"auto\" trial {row['number']} {row['state']}{value} ({row['params']})")

    study.optimize(objective_fn, n_trials=remaining, timeout=settings.auto_search_seconds, catch=(ConfigError,),
                   callbacks=[tell_user])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError("\"auto\": no trial of the built-in search completed")
    best = study.best_trial
    point = best.user_attrs["point"]
    note(f"\"auto\" chose {point} (trial {best.number}, {objective} {best.value:.4f}); training it with every baseline")
    summary = {"objective": objective, "space": space.to_json(), "best": {"number": best.number, "params": point,
                                                                          "value": best.value},
               "trials": [trial_row(t) for t in study.trials], "importance": importances(study)}
    return final_config(base, point, objective), summary
