"""Sweeps: hyperparameter searches run as Optuna studies whose trials are training jobs.

The study lives in Optuna's RDB storage on the service's own database (its tables beside ours;
the study is named by the sweep's id). Nothing long-running drives a sweep: `advance` is called
when the sweep is created, whenever one of its jobs ends (by the worker that ran it), on cancel, and
by the workers' periodic recovery pass, and each call moves the sweep as far as it can:

- trials whose job ended without telling the study (failed, cancelled before it ran, worker gave
  up) are told failed; a trial the pruner stopped was told `pruned` by its worker, and its job
  ends `cancelled` with an event that says so;
- while fewer than `n_trials` were created and the time budget lasts, new trials are asked from
  the study (TPE) and queued as trial jobs, at most `max_parallel` at once;
- when no trial is left running, the best trial's settings become the final job: a normal
  training job (every baseline with its tuning budget, the test split read once) that registers
  the version, with the sweep's evidence (every trial, Optuna's importances) in its evaluation;
- when the final job ends, the sweep ends with it.

One process at a time moves a sweep: `advance` first takes a short lease on the sweep row (an
atomic UPDATE, which works alike on SQLite, where SELECT ... FOR UPDATE locks nothing, and on
PostgreSQL), so two workers finishing trials at once do not both queue the next one. A call that
finds the lease taken does nothing: the holder, or the next periodic pass, sees what it would have.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any, Callable

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.db import normalise_url, session_scope
from app.errors import Conflict, InvalidContent, NotFound
from app.ids import new_id
from app.jobs import lifecycle, states
from app.jobs.states import DatasetStatus
from app.models import Sweep, SweepEvent, TrainingJob, teacher_names
from app.services.access import EVERYONE, Access
from app.services.datasets import get_dataset
from app.services import jobs
from app.services.jobs import (check_architecture, default_model_name, resolve_hyperparameters, resolve_split,
                               with_code_size, within_caps)
from app.services.registry import check_model_name
from app.settings import Settings

log = logging.getLogger("cube.sweeps")
Enqueue = Callable[..., None]

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
SWEEP_STATES = (RUNNING, SUCCEEDED, FAILED, CANCELLED)


# ---- the study ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _storage(url: str, pid: int):
    """One Optuna storage per database and process (a forked worker opens its own connections)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = normalise_url(url)
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def storage(settings: Settings):
    return _storage(settings.database, os.getpid())


def load_study(settings: Settings, sweep: Sweep):
    import optuna

    from cube.sweep import make_pruner

    study = optuna.load_study(study_name=sweep.id, storage=storage(settings), pruner=make_pruner(sweep.pruner))
    # Each call draws with a seed that moves on with the trials, so no two asks replay one point.
    study.sampler = optuna.samplers.TPESampler(seed=sweep.seed + len(study.get_trials(deepcopy=False)))
    return study


def optuna_trial(settings: Settings, job: TrainingJob, sweep: Sweep):
    """The Optuna trial a trial job runs (to report epochs to the pruner)."""
    import optuna

    rdb = storage(settings)
    trial_id = rdb.get_trial_id_from_study_id_trial_number(rdb.get_study_id_from_name(sweep.id), job.trial_number)
    return optuna.trial.Trial(load_study(settings, sweep), trial_id)


def tell(settings: Settings, sweep: Sweep, number: int, *, value: float | None = None, state: str = "complete") -> bool:
    """Finish trial `number` (complete with a value, pruned, or failed) unless it already is."""
    return _finish(load_study(settings, sweep), number, value=value, state=state)


def _finish(study, number: int, *, value: float | None = None, state: str = "complete") -> bool:
    import optuna

    if study.get_trials(deepcopy=False)[number].state.is_finished():
        return False
    states_ = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
               "fail": optuna.trial.TrialState.FAIL}
    study.tell(number, value if state == "complete" else None, state=states_[state])
    return True


# ---- create ---------------------------------------------------------------------------------

def create_sweep(session: Session, settings: Settings, enqueue: Enqueue, body, access: Access = EVERYONE) -> Sweep:
    import optuna

    from cube.config import ConfigError
    from cube.search_space import SearchSpaceError, check_size, parse_space
    from cube.sweep import make_pruner

    dataset = get_dataset(session, body.dataset_id, access=access)
    if dataset.status != DatasetStatus.READY:  # trials are queued at once: the data must be there
        raise Conflict(f"dataset {dataset.id} is {dataset.status}; a sweep needs it ready"
                       + (f" ({dataset.error})" if dataset.error else ""), param="dataset_id", code="dataset_not_ready")
    if len(teacher_names(dataset.target_teacher)) > 1:
        raise InvalidContent(f"dataset {dataset.id} has several target teachers: sweeps search single-head models; "
                             "train its multi-head model as a job, or sweep on one teacher's dataset",
                             param="dataset_id", code="sweep_not_supported")
    try:
        space = parse_space(body.search_space)
    except SearchSpaceError as exc:
        raise InvalidContent(exc.message, param=f"search_space.{exc.key}" if exc.key else "search_space",
                             code="invalid_search_space") from None
    try:  # the objective is one of the schema's; the pruner's own options are checked here
        make_pruner(body.pruner_settings)
    except ConfigError as exc:
        raise InvalidContent(str(exc), param="pruner", code="invalid_sweep") from None
    shape = with_code_size(body, dataset, body.architecture.model_extra or {})
    hyper = resolve_hyperparameters(body.hyperparameters, dataset.num_pairs)
    check_architecture(body.architecture.kind, shape, dataset, body.mode, batch_size=hyper["batch_size"])

    try:
        check_size(space, within_caps(dataset, body.mode, body.architecture.kind, shape), hyper["batch_size"])
    except SearchSpaceError as exc:
        raise InvalidContent(exc.message, param=f"search_space.{exc.key}", code="invalid_search_space") from None
    hyper["seed"], hyper["device"] = body.seed, body.device
    sweep = Sweep(
        id=new_id("sweep"), dataset_id=dataset.id, mode=body.mode,
        model_name=check_model_name(session, body.model or default_model_name(dataset), access),
        base={"arch": body.architecture.kind, "model": shape, "hyperparameters": hyper, "split": resolve_split(body),
              "promotion": body.promotion.model_dump(), "description": body.description, "tags": body.tags},
        search_space=space.to_json(), objective=body.objective, n_trials=body.n_trials, max_parallel=body.max_parallel,
        pruner=body.pruner_settings, time_budget_seconds=body.time_budget_seconds, seed=body.seed,
        device=body.device, status=RUNNING, trials_created=0, metadata_=body.metadata, created_at=time.time(),
        owner_key_id=access.key_id)
    optuna.create_study(study_name=sweep.id, storage=storage(settings), direction="maximize")
    session.add(sweep)
    add_event(session, sweep.id, f"sweep created: {sweep.n_trials} trial(s), at most {sweep.max_parallel} at once, "
                                 f"maximising {sweep.objective}")
    session.commit()
    advance(settings, sweep.id, enqueue)
    session.refresh(sweep)
    return sweep


def add_event(session: Session, sweep_id: str, message: str, *, level: str = "info", data: dict | None = None) -> None:
    session.add(SweepEvent(id=new_id("event"), sweep_id=sweep_id, level=level, message=message, data=data,
                           created_at=time.time()))


# ---- advance --------------------------------------------------------------------------------

def base_run(sweep: Sweep):
    from cube.config import RunConfig, SplitConfig, TrainConfig

    split = {k: v for k, v in sweep.base["split"].items() if k != "split_by"}
    return RunConfig(arch=sweep.base["arch"], mode=sweep.mode, model=dict(sweep.base["model"]),
                     train=TrainConfig.from_dict(dict(sweep.base["hyperparameters"])), split=SplitConfig.from_dict(split))


def _job(sweep: Sweep, run, role: str, number: int | None, status: str) -> TrainingJob:
    """A training job of the sweep for `run` (a RunConfig)."""
    hyper = run.train.to_dict()
    base = sweep.base
    final = role == "final"
    return TrainingJob(
        id=new_id("job"), dataset_id=sweep.dataset_id, model_name=sweep.model_name, mode=sweep.mode, arch=run.arch,
        model_config_=dict(run.model), hyperparameters=hyper, split=base["split"], seed=sweep.seed, device=sweep.device,
        status=status, attempt=0, epoch=0, n_epochs=hyper["n_epochs"], step=0, created_at=time.time(),
        metadata_={"sweep_id": sweep.id, **({"trial": number} if number is not None else {})},
        promotion=base["promotion"] if final else None, description=base["description"] if final else None,
        tags=base["tags"] if final else None, owner_key_id=sweep.owner_key_id,
        sweep_id=sweep.id, sweep_role=role, trial_number=number)


ADVANCE_LEASE_SECONDS = 120  # longer than any one advance; a holder that died delays the sweep this long


def advance(settings: Settings, sweep_id: str, enqueue: Enqueue) -> None:
    """Move the sweep as far as it can go now (see the module's docstring). Safe to call any time."""
    now = time.time()
    with session_scope(settings.database) as session:
        leased = session.execute(update(Sweep).where(
            Sweep.id == sweep_id, Sweep.status == RUNNING,
            or_(Sweep.advancing_until.is_(None), Sweep.advancing_until < now)).values(
            advancing_until=now + ADVANCE_LEASE_SECONDS)).rowcount == 1
    if not leased:
        return
    try:
        to_send = _advance(settings, sweep_id)
    finally:
        with session_scope(settings.database) as session:
            session.execute(update(Sweep).where(Sweep.id == sweep_id).values(advancing_until=None))
    with session_scope(settings.database) as session:
        for job in to_send:
            lifecycle.send(session, enqueue, job.id, job.device)


def _advance(settings: Settings, sweep_id: str) -> list[TrainingJob]:
    """The decisions of one `advance`, under its lease; returns the jobs to send once committed."""
    to_send: list[TrainingJob] = []
    with session_scope(settings.database) as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep.status != RUNNING:  # cancelled since the lease was taken
            return []
        sweep_jobs = list(session.scalars(select(TrainingJob).where(TrainingJob.sweep_id == sweep.id)))
        trials = [j for j in sweep_jobs if j.sweep_role == "trial"]
        study = load_study(settings, sweep)  # once: every step below reads or writes the same study
        _reconcile(session, sweep, study, trials)
        final = next((j for j in sweep_jobs if j.sweep_role == "final"), None)
        if final is not None:
            if final.status in states.TERMINAL:
                _end_with_final(session, sweep, final)
            return []
        running = [j for j in trials if j.status not in states.TERMINAL]
        out_of_time = (sweep.time_budget_seconds is not None
                       and time.time() > sweep.created_at + sweep.time_budget_seconds)
        wanted = 0 if out_of_time else min(sweep.n_trials - sweep.trials_created, sweep.max_parallel - len(running))
        if wanted > 0:
            to_send = _ask(session, sweep, study, wanted)
        elif not running:
            if out_of_time and sweep.trials_created < sweep.n_trials:
                add_event(session, sweep.id, f"time budget of {sweep.time_budget_seconds:g} s spent after "
                                             f"{sweep.trials_created} trial(s)")
            to_send = _choose(session, sweep, study, trials)
    return to_send


def _reconcile(session: Session, sweep: Sweep, study, trials: list[TrainingJob]) -> None:
    """A trial whose job ended without a result (failed, cancelled before it ran, given up) is failed
    in the study, so the study never waits on a job that will not report; so is a trial asked by an
    `advance` that died before its job was committed."""
    for job in trials:
        if job.status in (states.FAILED, states.CANCELLED) and _finish(study, job.trial_number, state="fail"):
            add_event(session, sweep.id, f"trial {job.trial_number} ({job.id}) {job.status}: "
                                         f"{job.error_message or 'no result'}", level="warning")
    numbers = {job.trial_number for job in trials}
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished() and t.number not in numbers and _finish(study, t.number, state="fail"):
            add_event(session, sweep.id, f"trial {t.number} had no job (its advance stopped); failed", level="warning")


def _ask(session: Session, sweep: Sweep, study, n: int) -> list[TrainingJob]:
    import optuna

    from cube.config import ConfigError
    from cube.search_space import parse_space
    from cube.sweep import draw

    space, base = parse_space(sweep.search_space), base_run(sweep)
    # Every ask before any write of ours: on SQLite a write here would hold the file's lock, and
    # Optuna's own connection would wait on it.
    drawn = []
    for _ in range(n):
        trial = study.ask()
        sweep.trials_created += 1
        try:
            drawn.append((trial.number, draw(trial, space, base, sweep.objective), trial.user_attrs["point"]))
        except ConfigError as exc:  # a combination the configuration refuses: a failed trial, not a failed sweep
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            add_event(session, sweep.id, f"trial {trial.number}: {exc}", level="warning")
    created = []
    for number, run, point in drawn:
        job = _job(sweep, run, "trial", number, states.QUEUED)
        session.add(job)
        session.flush()  # the event's foreign key needs the job row first
        lifecycle.add_event(session, job.id, f"trial {number} of sweep {sweep.id}: {point}")
        add_event(session, sweep.id, f"trial {number} queued as {job.id}", data={"point": point})
        created.append(job)
    return created


def _choose(session: Session, sweep: Sweep, study, trials: list[TrainingJob]) -> list[TrainingJob]:
    """Every trial has ended: queue the final job with the best trial's settings, or fail the sweep."""
    import optuna

    from cube.sweep import final_config, importances

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        _end(session, sweep, FAILED, code="no_trial_completed",
             message=f"none of the {sweep.trials_created} trial(s) completed; nothing to choose")
        return []
    best = study.best_trial
    point = best.user_attrs["point"]
    job_of = {j.trial_number: j.id for j in trials}
    sweep.best = {"number": best.number, "params": point, "value": best.value, "job_id": job_of.get(best.number)}
    sweep.importance = importances(study)
    final = _job(sweep, final_config(base_run(sweep), point, sweep.objective), "final", None, states.QUEUED)
    session.add(final)
    session.flush()
    sweep.final_job_id = final.id
    lifecycle.add_event(session, final.id, f"the final job of sweep {sweep.id}: trial {best.number}'s settings with "
                                           "every baseline")
    add_event(session, sweep.id, f"best: trial {best.number}, {sweep.objective} {best.value:.4f}; training it with "
                                 f"every baseline as {final.id}", data=sweep.best)
    return [final]


def _end_with_final(session: Session, sweep: Sweep, final: TrainingJob) -> None:
    if final.status == states.SUCCEEDED:
        sweep.model_version_id = final.model_version_id
        _end(session, sweep, SUCCEEDED, message=f"succeeded: model {sweep.model_name}, version id {final.model_version_id}")
    elif final.status == states.CANCELLED:
        _end(session, sweep, CANCELLED, message="the final job was cancelled")
    else:
        _end(session, sweep, FAILED, code=final.error_code or "final_job_failed",
             message=f"the final job failed: {final.error_message}")


def _end(session: Session, sweep: Sweep, status: str, *, message: str, code: str | None = None) -> None:
    sweep.status, sweep.finished_at = status, time.time()
    if code:
        sweep.error_code, sweep.error_message = code, message
    add_event(session, sweep.id, message, level="error" if status == FAILED else "info")


def advance_open(settings: Settings, enqueue: Enqueue) -> None:
    """Advance every running sweep (the workers' periodic pass: catches an end nobody reported)."""
    with session_scope(settings.database) as session:
        ids = list(session.scalars(select(Sweep.id).where(Sweep.status == RUNNING)))
    for sweep_id in ids:
        try:
            advance(settings, sweep_id, enqueue)
        except Exception:  # one broken sweep must not stop the others
            log.exception("could not advance sweep %s", sweep_id)


# ---- read and cancel ------------------------------------------------------------------------

def get_sweep(session: Session, sweep_id: str, access: Access = EVERYONE) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or not access.can_see(sweep.owner_key_id):
        raise NotFound(f"no sweep {sweep_id!r}", param="sweep_id")
    return sweep


def list_sweeps(session: Session, after: str | None, limit: int, status: str | None,
                access: Access = EVERYONE) -> tuple[list[Sweep], bool]:
    return jobs.newest_first(session, Sweep, "sweep", after, limit, access, status, SWEEP_STATES)


def trials(settings: Settings, session: Session, sweep: Sweep) -> list[dict[str, Any]]:
    """Every trial: its number, settings, state, objective value, each epoch's validation score, job."""
    from cube.sweep import trial_row

    job_of = {j.trial_number: j for j in session.scalars(select(TrainingJob).where(
        TrainingJob.sweep_id == sweep.id, TrainingJob.sweep_role == "trial"))}
    rows = []
    for t in load_study(settings, sweep).get_trials(deepcopy=False):
        job = job_of.get(t.number)
        rows.append({**trial_row(t), "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                     "job_id": job.id if job else None, "job_status": job.status if job else None,
                     "started_at": job.started_at if job else None, "finished_at": job.finished_at if job else None})
    return rows


def evidence(settings: Settings, sweep_id: str) -> dict[str, Any]:
    """What the final version's evaluation records about the search that chose it."""
    with session_scope(settings.database) as session:
        sweep = session.get(Sweep, sweep_id)
        return {"sweep_id": sweep.id, "objective": sweep.objective, "search_space": sweep.search_space,
                "best": sweep.best, "importance": sweep.importance,
                "trials": [{k: r[k] for k in ("number", "params", "value", "state", "epochs")}
                           for r in trials(settings, session, sweep)],
                "final": "the best trial's settings trained again on the same split beside every baseline "
                         "(learning rate re-checked on validation like theirs); the test split is read once, here"}


def cancel_sweep(session: Session, settings: Settings, sweep: Sweep) -> Sweep:
    """Idempotent while running or cancelled: the sweep ends now, and its queued and running jobs are
    cancelled (a running one stops after its epoch). 409 once it succeeded or failed."""
    if sweep.status == CANCELLED:
        return sweep
    if sweep.status != RUNNING:
        raise Conflict(f"sweep {sweep.id} already {sweep.status}", code="illegal_state", param="sweep_id")
    _end(session, sweep, CANCELLED, message="cancelled")
    session.commit()
    for job in session.scalars(select(TrainingJob).where(TrainingJob.sweep_id == sweep.id,
                                                         TrainingJob.status.in_(states.ACTIVE))):
        lifecycle.cancel(session, job)
    session.refresh(sweep)
    return sweep


def list_events(session: Session, sweep: Sweep, after: str | None, limit: int) -> tuple[list[SweepEvent], bool]:
    return jobs.list_events(session, sweep, after, limit, SweepEvent, SweepEvent.sweep_id)
