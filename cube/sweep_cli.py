"""`cube sweep`: a hyperparameter search run locally, without the service.

The Optuna study lives in DIR/study.db (SQLite), so running the same command again continues it:
finished trials are kept and only the missing ones run. When the trials are done, the best trial's
settings run once more as a full experiment (`cube train`'s: every baseline with its tuning budget,
the test split read once) into DIR/best, and DIR/sweep.json records every trial and the choice.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cube.commands import ProgressBar, UsageError, build_run_config, load_config_file, load_training_data, positive_int
from cube.config import ConfigError
from cube.search_space import SearchSpaceError, parse_space
from cube.sweep import (OBJECTIVES, PRUNERS, data_digest, final_config, importances, make_objective, make_pruner,
                        trial_row)

STUDY = "sweep"


def open_study(out: Path, space_json: dict[str, Any], digest: str, objective: str, pruner, seed: int):
    """The study in DIR/study.db: new, or the one an earlier run left, if it searched the same space,
    data and objective. Trials an interrupted run left running are marked failed (nothing runs them)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    study = optuna.create_study(study_name=STUDY, storage=storage, load_if_exists=True, direction="maximize", pruner=pruner)
    # A continued sweep must not replay the points its first run drew: the sampler's seed moves on
    # with the trials already there.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    identity = {"space": space_json, "data": digest, "objective": objective}
    if not study.user_attrs:
        for key, value in identity.items():
            study.set_user_attr(key, value)
    else:
        differs = [k for k, v in identity.items() if study.user_attrs.get(k) != v]
        if differs:
            raise UsageError(f"{out} holds a sweep with another {', '.join(differs)}; use a new --out directory")
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study


class TrialTable:
    """The live table of trials on stderr (one line per finished trial when stderr is not a terminal)."""

    def __init__(self, study, objective: str):
        from rich.console import Console

        self.study, self.objective = study, objective
        self.console = Console(stderr=True)
        self.live = None
        self.running = ""

    def __enter__(self) -> "TrialTable":
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self.render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)

    def render(self):
        from rich.table import Table

        table = Table(title=f"sweep: {self.objective}, higher is better")
        for column in ("trial", "state", self.objective, "epochs", "settings"):
            table.add_column(column)
        rows = [trial_row(t) for t in self.study.get_trials(deepcopy=False)]
        done = [r for r in rows if r["state"] == "complete"]
        best = max(done, key=lambda r: r["value"])["number"] if done else None
        for r in rows[-25:]:
            value = "" if r["value"] is None else f"{r['value']:.4f}" + (" *" if r["number"] == best else "")
            table.add_row(str(r["number"]), r["state"], value, str(r["epochs"]), _compact(r["params"]))
        if self.running:
            table.caption = self.running
        return table

    def on_epoch_end(self, report) -> None:
        self.running = (f"running: epoch {report.epoch}/{report.n_epochs}, "
                        f"val {self.objective} {report.val[OBJECTIVES[self.objective]]:.4f}")
        if self.live is not None:
            self.live.update(self.render())

    def on_trial_end(self, study, trial) -> None:
        self.running = ""
        if self.live is not None:
            self.live.update(self.render())
        else:
            r = trial_row(trial)
            value = "" if r["value"] is None else f" {self.objective} {r['value']:.4f}"
            print(f"trial {r['number']}: {r['state']}{value} after {r['epochs']} epoch(s); {_compact(r['params'])}",
                  file=sys.stderr)


def _compact(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={json.dumps(v)}" for k, v in params.items())


def cmd_sweep(args: argparse.Namespace) -> int:
    import optuna

    from cube.experiment import run_experiment
    from cube.pairs import concat_pairs, split_pairs
    from cube.report import text_table

    try:
        space = parse_space(load_config_file(args.space))
        pruner = make_pruner({"kind": args.pruner})
    except (SearchSpaceError, ConfigError) as exc:
        raise UsageError(f"{args.space}: {exc}") from None
    base = build_run_config(args.arch, args.config, args.set or [])
    data = concat_pairs([load_training_data(path, args) for path in args.data])
    split = split_pairs(data, base.split)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    study = open_study(out, space.to_json(), data_digest(data), args.objective, pruner, args.seed)
    finished = [t for t in study.trials if t.state.is_finished()]
    remaining = max(0, args.trials - len(finished))
    print(f"sweep in {out}: {len(finished)} trial(s) already finished, {remaining} to run", file=sys.stderr)

    table = TrialTable(study, args.objective)

    with table:
        study.optimize(make_objective(data, split, space, base, args.objective, callbacks=[table]), n_trials=remaining, timeout=args.timeout, catch=(ConfigError,),
                       callbacks=[table.on_trial_end])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        print("error: no trial completed (see the states above); nothing to choose", file=sys.stderr)
        return 1
    best = study.best_trial
    point = best.user_attrs["point"]
    print(f"best: trial {best.number}, {args.objective} {best.value:.4f}: {_compact(point)}; "
          f"training it with every baseline", file=sys.stderr)
    result = run_experiment(data, final_config(base, point, args.objective), out / "best", callbacks=[ProgressBar()],
                            log=lambda m: print(m, file=sys.stderr))
    summary = {
        "objective": args.objective, "direction": "maximize", "space": space.to_json(),
        "trials": [trial_row(t) for t in study.trials],
        "best": {"number": best.number, "params": point, "value": best.value},
        "importance": importances(study),
        "final": {"dir": "best", "note": "the best trial's settings trained again on the same split, beside every "
                                         "baseline; the test split is read once, here",
                  "methods": result.report["methods"]},
    }
    (out / "sweep.json").write_text(json.dumps(summary, indent=2))
    print(text_table(result.report))
    print(f"\nsweep: {out / 'sweep.json'}\nmodel: {out / 'best' / 'model'}\nreport: {out / 'best' / 'report.json'}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    from cube.commands import add_teacher_options

    p = sub.add_parser("sweep", help="search hyperparameters (Optuna) and train the best settings with every baseline")
    p.add_argument("--data", required=True, action="append", help="pair data, as for `cube train` (repeatable)")
    p.add_argument("--space", required=True, help="search space: TOML or JSON (see docs/sweeps.md)")
    p.add_argument("--trials", required=True, type=positive_int, help="number of trials in all (a rerun continues)")
    p.add_argument("--out", required=True, help="directory: study.db, sweep.json, best/ (model and report)")
    p.add_argument("--objective", choices=list(OBJECTIVES), default="val_mrr", help="validation metric to maximise")
    p.add_argument("--pruner", choices=list(PRUNERS), default="halving",
                   help="stop poor trials early (default: halving, asynchronous successive halving)")
    p.add_argument("--timeout", type=positive_int, default=None, help="start no trial after this many seconds")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--arch", choices=["cube", "linear", "mlp", "resmlp"], default=None,
                   help="architecture when the space does not choose one (default: cube)")
    p.add_argument("--config", help="base settings: JSON or TOML with sections arch, model, train, split")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one base setting (repeatable)")
    add_teacher_options(p)
    p.set_defaults(func=cmd_sweep)
